package doctor

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/resolver"
	"github.com/mxedge/mxedge/resolver/dnstest"
)

// resolverDNS is how cmd/mxedge hands the relay's resolver to Run.
type resolverDNS struct{ r *resolver.Resolver }

func (d resolverDNS) Lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	rrs, _, err := d.r.Lookup(ctx, name, qtype)
	return rrs, err
}

var green = []string{
	"mx1.example.org. A 192.0.2.10",
	"mx2.example.org. A 192.0.2.20",
	"10.2.0.192.in-addr.arpa. PTR mx1.example.org.",
	"example.org. MX 10 mx1.example.org.",
	"example.org. MX 10 mx2.example.org.",
	`example.org. TXT "v=spf1 ip4:192.0.2.10 ip4:192.0.2.20 -all"`,
	`_dmarc.example.org. TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.org"`,
	`_smtp._tls.example.org. TXT "v=TLSRPTv1; rua=mailto:tlsrpt@example.org"`,
}

func cert(t *testing.T, name string, notAfter time.Time) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

// dkimZone is the selector record of pub as a zone line, split into
// strings of at most 255 characters.
func dkimZone(t *testing.T, name string, pub *rsa.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	v := "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	var parts []string
	for len(v) > 255 {
		parts, v = append(parts, `"`+v[:255]+`"`), v[255:]
	}
	return name + " TXT " + strings.Join(append(parts, `"`+v+`"`), " ")
}

// TestDoctor: through the in-process DNS server, an all-green setup, then
// each failure on its own fails exactly its check(s), with the fix.
func TestDoctor(t *testing.T) {
	now := time.Now()
	const selector = "sel._domainkey.example.org."
	ours, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ourRecord := dkimZone(t, selector, &ours.PublicKey)
	for _, tc := range []struct {
		name   string
		change func(s *dnstest.Server)
		in     func(in *Input)
		fail   []string // check names that fail (or warn); nil: all green
		fix    string   // in the fix of the first failing check
		found  string   // in the found of the first failing check
	}{
		{name: "all green"},
		{name: "no A record", change: func(s *dnstest.Server) { s.Remove("mx1.example.org.", dns.TypeA) },
			fail: []string{"hostname A/AAAA", "hostname resolves back (FCrDNS)"}, fix: "mx1.example.org. A 192.0.2.10"},
		{name: "generic PTR", change: func(s *dnstest.Server) {
			s.Remove("10.2.0.192.in-addr.arpa.", dns.TypePTR)
			s.Add("10.2.0.192.in-addr.arpa. PTR host-192-0-2-10.isp.example.")
		}, fail: []string{"PTR is the hostname", "hostname resolves back (FCrDNS)"}, fix: "10.2.0.192.in-addr.arpa. PTR mx1.example.org."},
		{name: "backup MX 20", change: func(s *dnstest.Server) {
			s.Remove("example.org.", dns.TypeMX)
			s.Add("example.org. MX 10 mx1.example.org.", "example.org. MX 20 mx2.example.org.")
		}, fail: []string{"MX preferences equal"}, fix: "same preference"},
		{name: "MX elsewhere", change: func(s *dnstest.Server) {
			s.Remove("example.org.", dns.TypeMX)
			s.Add("example.org. MX 10 mail.other.example.")
		}, fail: []string{"MX points at this host and its partners"}, fix: "example.org. MX 10 mx1.example.org."},
		{name: "two SPF records", change: func(s *dnstest.Server) { s.Add(`example.org. TXT "v=spf1 -all"`) },
			fail: []string{"SPF: one record"}, fix: `"v=spf1 ip4:192.0.2.10 -all"`},
		{name: "SPF without our IP", change: func(s *dnstest.Server) {
			s.Remove("example.org.", dns.TypeTXT)
			s.Add(`example.org. TXT "v=spf1 ip4:198.51.100.0/24 -all"`)
		}, fail: []string{"SPF authorises our outbound address"}, fix: "ip4:192.0.2.10"},
		{name: "SPF with 11 lookups", change: func(s *dnstest.Server) {
			s.Remove("example.org.", dns.TypeTXT)
			s.Add(`example.org. TXT "v=spf1 ip4:192.0.2.10 include:a.example include:b.example include:c.example include:d.example include:e.example include:f.example include:g.example include:h.example include:i.example include:j.example include:k.example -all"`)
		}, fail: []string{"SPF: at most 10 DNS lookups"}, fix: "flatten"},
		{name: "no DMARC", change: func(s *dnstest.Server) { s.Remove("_dmarc.example.org.", dns.TypeTXT) },
			fail: []string{"DMARC record"}, fix: "_dmarc.example.org. TXT"},
		{name: "no TLS-RPT", change: func(s *dnstest.Server) { s.Remove("_smtp._tls.example.org.", dns.TypeTXT) },
			fail: []string{"TLS-RPT record"}, fix: "v=TLSRPTv1"},
		{name: "certificate for another name", in: func(in *Input) { in.Cert = []*x509.Certificate{cert(t, "www.example.org", now.Add(90*24*time.Hour))} },
			fail: []string{"certificate covers the hostname"}, fix: "subjectAltName"},
		{name: "certificate expiring", in: func(in *Input) { in.Cert = []*x509.Certificate{cert(t, "mx1.example.org", now.Add(5*24*time.Hour))} },
			fail: []string{"certificate valid for 14 days"}, fix: "renew"},
		{name: "DKIM record missing", change: func(s *dnstest.Server) { s.Remove(selector, dns.TypeTXT) },
			fail: []string{"DKIM selector record matches the key"}, fix: "sel._domainkey.example.org. TXT \"v=DKIM1; k=rsa; p="},
		{name: "DKIM record of another, weak key", change: func(s *dnstest.Server) {
			s.Remove(selector, dns.TypeTXT)
			s.Add(dkimZone(t, selector, &weak.PublicKey))
		}, fail: []string{"DKIM selector record matches the key"}, fix: ourRecord, found: "RSA key of 1024 bits"},
		{name: "DKIM record of another key", change: func(s *dnstest.Server) {
			other, _ := rsa.GenerateKey(rand.Reader, 2048)
			s.Remove(selector, dns.TypeTXT)
			s.Add(dkimZone(t, selector, &other.PublicKey))
		}, fail: []string{"DKIM selector record matches the key"}, fix: ourRecord, found: "another key published"},
		{name: "listed on a DNSBL", change: func(s *dnstest.Server) { s.Add("10.2.0.192.bl.example. A 127.0.0.2") },
			fail: []string{"not on bl.example"}, fix: "delisting"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := dnstest.Start("127.0.0.53:0")
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Add(append(green, ourRecord)...); err != nil {
				t.Fatal(err)
			}
			if tc.change != nil {
				tc.change(s)
			}
			in := Input{Hostname: "mx1.example.org", Outbound: []netip.Addr{netip.MustParseAddr("192.0.2.10")},
				RelayDomains: []string{"example.org"}, Partners: []string{"mx2.example.org"},
				Cert: []*x509.Certificate{cert(t, "mx1.example.org", now.Add(90*24*time.Hour))}, DNSBLs: []string{"bl.example*2"}, Now: now,
				DKIM: []DKIMKey{{Domain: "example.org", Selector: "sel", Public: &ours.PublicKey, Record: ourRecord}}}
			if tc.in != nil {
				tc.in(&in)
			}
			r := resolver.New(resolver.Config{Servers: []string{s.Addr()}, Timeout: 2 * time.Second, CacheSize: -1})
			checks := Run(context.Background(), resolverDNS{r}, in)
			var failed []string
			var firstFix, firstFound string
			for _, c := range checks {
				if c.Status != "ok" {
					if firstFix == "" {
						firstFix, firstFound = c.Fix, c.Found
					}
					failed = append(failed, c.Name)
				}
			}
			if strings.Join(failed, ",") != strings.Join(tc.fail, ",") {
				t.Errorf("failed checks %q, want %q\n%+v", failed, tc.fail, checks)
			}
			if !strings.Contains(firstFix, tc.fix) {
				t.Errorf("fix %q does not say %q", firstFix, tc.fix)
			}
			if !strings.Contains(firstFound, tc.found) {
				t.Errorf("found %q does not say %q", firstFound, tc.found)
			}
		})
	}
}
