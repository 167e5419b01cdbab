package dane

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/resolver"
	"github.com/mxedge/mxedge/resolver/dnstest"
)

func TestLookup(t *testing.T) {
	s, err := dnstest.Start("127.0.0.53:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	leaf := newLeaf(t, nil, "mx.example.org")
	rec := tlsa(3, 1, 1, leaf.cert)
	err = s.Add(
		"example.org. 300 IN SOA ns.example.org. hostmaster.example.org. 1 3600 600 86400 30",
		rec.String(),
		"_25._tcp.mx.example.org. 300 IN TLSA 0 0 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"_25._tcp.nodata.example.org. 300 IN TXT \"not TLSA\"",
		"_25._tcp.broken.example.org. 300 IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	)
	if err != nil {
		t.Fatal(err)
	}
	s.SetRcode("_25._tcp.broken.example.org.", dns.TypeTLSA, dns.RcodeServerFailure)
	r := resolver.New(resolver.Config{Servers: []string{s.Addr()}, CacheSize: -1, Timeout: 2 * time.Second})
	ctx := context.Background()

	s.SetAD(true)
	recs, err := Lookup(ctx, r, "mx.example.org", 25)
	if err != nil || len(recs) != 2 {
		t.Fatalf("authentic: %v, %v", recs, err)
	}
	if u := Usable(recs); len(u) != 1 || u[0].Certificate != rec.Certificate {
		t.Fatalf("usable: %v", u)
	}
	if err := Verify(state(leaf), recs, nil); err != nil {
		t.Fatalf("verify with the records looked up: %v", err)
	}
	for _, host := range []string{"nx.example.org", "nodata.example.org"} {
		if recs, err := Lookup(ctx, r, host, 25); recs != nil || err != nil {
			t.Errorf("%s: %v, %v; want nothing", host, recs, err)
		}
	}
	if recs, err := Lookup(ctx, r, "broken.example.org", 25); recs != nil || err == nil || !resolver.IsTemporary(err) {
		t.Fatalf("SERVFAIL: %v, %v; want a temporary error", recs, err)
	}
	if recs, err := Lookup(ctx, r, "mx.example.org", 587); recs != nil || err != nil {
		t.Fatalf("other port: %v, %v", recs, err)
	}

	// Without the AD bit the records do not count (RFC 7672 section 2.1.1).
	s.SetAD(false)
	if recs, err := Lookup(ctx, r, "mx.example.org", 25); recs != nil || err != nil {
		t.Fatalf("not authentic: %v, %v; want nothing", recs, err)
	}
	if recs, err := Lookup(ctx, r, "broken.example.org", 25); err == nil || !resolver.IsTemporary(err) {
		t.Fatalf("SERVFAIL, not authentic: %v, %v", recs, err)
	}
}
