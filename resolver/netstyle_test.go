package resolver

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// NetStyle answers as net.Resolver would, and its errors say what the
// libraries that take one test: IsNotFound, IsTemporary.
func TestNetStyle(t *testing.T) {
	s := startDNS(t)
	s.Add(`txt.example.org. 60 IN TXT "v=spf1 " "ip4:192.0.2.1 -all"`,
		"mx.example.org. 60 IN MX 10 a.example.org.",
		"5.2.0.192.in-addr.arpa. 60 IN PTR host.example.org.",
		"host.example.org. 60 IN A 192.0.2.5")
	s.SetRcode("broken.example.org.", dns.TypeTXT, dns.RcodeServerFailure)
	n := NetStyle{DNS: New(Config{Servers: []string{s.Addr()}, Timeout: 300 * time.Millisecond, Attempts: 1, CacheSize: -1})}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if txt, err := n.LookupTXT(ctx, "txt.example.org"); err != nil || len(txt) != 1 || txt[0] != "v=spf1 ip4:192.0.2.1 -all" {
		t.Errorf("TXT: %q %v", txt, err)
	}
	if mx, err := n.LookupMX(ctx, "mx.example.org"); err != nil || len(mx) != 1 || mx[0].Host != "a.example.org." || mx[0].Pref != 10 {
		t.Errorf("MX: %v %v", mx, err)
	}
	if ips, err := n.LookupIPAddr(ctx, "host.example.org"); err != nil || len(ips) != 1 || !ips[0].IP.Equal(net.ParseIP("192.0.2.5")) {
		t.Errorf("IP: %v %v", ips, err)
	}
	if names, err := n.LookupAddr(ctx, "192.0.2.5"); err != nil || len(names) != 1 || names[0] != "host.example.org." {
		t.Errorf("PTR: %v %v", names, err)
	}
	var de *net.DNSError
	if _, err := n.LookupTXT(ctx, "nowhere.example.org"); !errors.As(err, &de) || !de.IsNotFound || de.IsTemporary {
		t.Errorf("NXDOMAIN: %#v", err)
	}
	if _, err := n.LookupTXT(ctx, "host.example.org"); !errors.As(err, &de) || !de.IsNotFound {
		t.Errorf("NODATA: %#v", err)
	}
	if _, err := n.LookupTXT(ctx, "broken.example.org"); !errors.As(err, &de) || de.IsNotFound || !de.Temporary() {
		t.Errorf("SERVFAIL: %#v", err)
	}
}
