package dane

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/miekg/dns"
)

// FuzzVerify matches hostile TLSA records (any usage, selector, matching
// type and data, as a DNS answer could carry) against a fixed chain: no
// panic, Usable keeps only what RFC 7672 allows, and Verify accepts only
// when a record's data really is the chain's leaf or CA (no match by
// accident, e.g. on an empty or truncated digest).
func FuzzVerify(f *testing.F) {
	ca := newCA(f, "Fuzz CA", nil)
	leaf := newLeaf(f, ca, "mx.example.org")
	cs := state(leaf, ca)
	var genuine [][]byte
	for _, c := range []*issued{leaf, ca} {
		for _, sel := range []uint8{0, 1} {
			for _, mt := range []uint8{0, 1, 2} {
				r := tlsa(UsageDANEEE, sel, mt, c.cert)
				b, _ := hex.DecodeString(r.Certificate)
				genuine = append(genuine, b)
				f.Add(uint8(UsageDANEEE), sel, mt, b)
				f.Add(uint8(UsageDANETA), sel, mt, b)
			}
		}
	}
	f.Add(uint8(3), uint8(1), uint8(1), []byte{})
	f.Add(uint8(0), uint8(0), uint8(0), []byte{0})
	f.Fuzz(func(t *testing.T, usage, selector, mtype uint8, data []byte) {
		r := &dns.TLSA{Hdr: dns.RR_Header{Name: "_25._tcp.mx.example.org.", Rrtype: dns.TypeTLSA, Class: dns.ClassINET},
			Usage: usage, Selector: selector, MatchingType: mtype, Certificate: hex.EncodeToString(data)}
		us := Usable([]*dns.TLSA{r, nil})
		for _, u := range us {
			if u == nil || u.Usage != UsageDANETA && u.Usage != UsageDANEEE || u.Selector > 1 || u.MatchingType > 2 {
				t.Fatalf("Usable kept %v", u)
			}
		}
		if Verify(cs, us, []string{"mx.example.org"}) != nil {
			return
		}
		for _, g := range genuine {
			if bytes.Equal(g, data) {
				return
			}
		}
		t.Fatalf("verified with a record that is none of the chain's: %v", r)
	})
}
