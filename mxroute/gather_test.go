package mxroute

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/resolver"
	"github.com/mxedge/mxedge/resolver/dnstest"
)

var zone = []string{
	"example.org. 300 IN MX 10 mx1.example.org.",
	"example.org. 300 IN MX 30 mx3.example.org.",
	"example.org. 300 IN MX 20 mx2.example.org.",
	"mx1.example.org. 300 IN A 127.0.0.2",
	"mx2.example.org. 300 IN A 127.0.0.3",
	"mx2.example.org. 300 IN AAAA ::1",
	"mx3.example.org. 300 IN A 127.0.0.4",

	"pair.example. 300 IN MX 10 a.pair.example.",
	"pair.example. 300 IN MX 10 b.pair.example.",
	"a.pair.example. 300 IN A 127.0.0.2",
	"b.pair.example. 300 IN A 127.0.0.3",

	"nomx.example. 300 IN A 127.0.0.5",
	"nomx.example. 300 IN AAAA 2001:db8::5",
	"noaddr.example. 300 IN TXT \"exists\"",

	"servfail.example. 300 IN A 127.0.0.6", // never used: its MX lookup fails

	"null.example. 300 IN MX 0 .",
	"alias.example. 300 IN CNAME example.org.",
	"aliasnomx.example. 300 IN CNAME nomx.example.",
	"dangling.example. 300 IN CNAME gone.example.",

	"selfbest.example. 300 IN MX 10 me.example.",
	"selfbest.example. 300 IN MX 20 mx2.example.org.",
	"me.example. 300 IN A 127.0.0.9",
	"selfmid.example. 300 IN MX 10 mx1.example.org.",
	"selfmid.example. 300 IN MX 20 me.example.",
	"selfmid.example. 300 IN MX 20 mx2.example.org.",
	"selfmid.example. 300 IN MX 30 mx3.example.org.",
	"selfip.example. 300 IN MX 10 alias-of-me.example.",
	"selfip.example. 300 IN MX 20 mx2.example.org.",
	"alias-of-me.example. 300 IN A 127.0.0.9",
	"selftie.example. 300 IN MX 10 me.example.",
	"selftie.example. 300 IN MX 10 mx1.example.org.",
	"selfimplicit.example. 300 IN A 127.0.0.9",

	"many.example. 300 IN MX 10 multi1.many.example.",
	"many.example. 300 IN MX 20 multi2.many.example.",
	"many.example. 300 IN MX 30 mx1.example.org.",
	"multi1.many.example. 300 IN A 127.0.1.1",
	"multi1.many.example. 300 IN A 127.0.1.2",
	"multi1.many.example. 300 IN A 127.0.1.3",
	"multi2.many.example. 300 IN A 127.0.2.1",
	"multi2.many.example. 300 IN A 127.0.2.2",
	"multi2.many.example. 300 IN A 127.0.2.3",

	"badmx.example. 300 IN MX 10 nohost.example.",
	"badmx.example. 300 IN MX 20 mx1.example.org.",
	"allbad.example. 300 IN MX 10 nohost.example.",
	"allbad.example. 300 IN MX 20 noaddr.example.",
	"tempmx.example. 300 IN MX 10 broken.example.",
	"tempmx.example. 300 IN MX 20 mx1.example.org.",
	"alltemp.example. 300 IN MX 10 broken.example.",
	"alltemp.example. 300 IN MX 20 nohost.example.",
	"dupmx.example. 300 IN MX 20 mx1.example.org.",
	"dupmx.example. 300 IN MX 10 MX1.example.org.",
}

// setup starts a test DNS server with zone and returns a resolver for it.
func setup(t *testing.T) (*dnstest.Server, *resolver.Resolver) {
	t.Helper()
	s, err := dnstest.Start("127.0.0.53:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Add(zone...); err != nil {
		t.Fatal(err)
	}
	s.SetRcode("servfail.example.", dns.TypeMX, dns.RcodeServerFailure)
	s.SetRcode("broken.example.", dns.TypeANY, dns.RcodeServerFailure)
	return s, resolver.New(resolver.Config{Servers: []string{s.Addr()}, Timeout: time.Second, Attempts: 1})
}

// self is this relay in the tests: me.example, 127.0.0.9.
func self(host string, ip net.IP) bool {
	return host == "me.example" || ip.Equal(net.IPv4(127, 0, 0, 9))
}

// describe is a route as "host/pref/addr,addr host/pref/addr".
func describe(r *Route) string {
	var parts []string
	for _, h := range r.Hosts {
		var addrs []string
		for _, ip := range h.Addrs {
			addrs = append(addrs, ip.String())
		}
		parts = append(parts, fmt.Sprintf("%s/%d/%s", h.Name, h.Pref, strings.Join(addrs, ",")))
	}
	return strings.Join(parts, " ")
}

func TestGather(t *testing.T) {
	_, r := setup(t)
	tests := []struct {
		domain    string
		want      string // describe(route)
		implicit  bool
		canonical string
		code      string // error: enhanced code
		temporary bool
	}{
		// Preference order, whatever the order in DNS.
		{domain: "example.org", want: "mx1.example.org/10/127.0.0.2 mx2.example.org/20/127.0.0.3,::1 mx3.example.org/30/127.0.0.4"},
		{domain: "Example.ORG.", want: "mx1.example.org/10/127.0.0.2 mx2.example.org/20/127.0.0.3,::1 mx3.example.org/30/127.0.0.4"},
		// No MX (NODATA): the domain's own addresses.
		{domain: "nomx.example", want: "nomx.example/0/127.0.0.5,2001:db8::5", implicit: true},
		{domain: "noaddr.example", code: "5.1.2"},
		// NXDOMAIN: permanent, no fallback.
		{domain: "nx.example", code: "5.1.2"},
		{domain: "dangling.example", code: "5.1.2"},
		// SERVFAIL: temporary, no fallback to the A record.
		{domain: "servfail.example", code: "4.4.3", temporary: true},
		// Null MX.
		{domain: "null.example", code: "5.1.10"},
		// CNAME followed.
		{domain: "alias.example", canonical: "example.org",
			want: "mx1.example.org/10/127.0.0.2 mx2.example.org/20/127.0.0.3,::1 mx3.example.org/30/127.0.0.4"},
		{domain: "aliasnomx.example", canonical: "nomx.example", want: "nomx.example/0/127.0.0.5,2001:db8::5", implicit: true},
		// This relay among the MX hosts.
		{domain: "selfbest.example", code: "5.4.6"},
		{domain: "selftie.example", code: "5.4.6"},
		{domain: "selfip.example", code: "5.4.6"},
		{domain: "selfimplicit.example", code: "5.4.6"},
		{domain: "selfmid.example", want: "mx1.example.org/10/127.0.0.2"},
		// Address limit, in preference order.
		{domain: "many.example", want: "multi1.many.example/10/127.0.1.1,127.0.1.2,127.0.1.3 multi2.many.example/20/127.0.2.1,127.0.2.2"},
		// Hosts without address skipped; all without: permanent.
		{domain: "badmx.example", want: "mx1.example.org/20/127.0.0.2"},
		{domain: "allbad.example", code: "5.4.4"},
		// A host failing temporarily is skipped; all failing, temporary.
		{domain: "tempmx.example", want: "mx1.example.org/20/127.0.0.2"},
		{domain: "alltemp.example", code: "4.4.3", temporary: true},
		// A host listed twice keeps its best preference.
		{domain: "dupmx.example", want: "mx1.example.org/10/127.0.0.2"},
		{domain: "", code: "5.1.2"},
	}
	for _, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			route, err := Gather(context.Background(), r, tt.domain, Options{Self: self, Rand: rand.New(rand.NewPCG(1, 2))})
			if tt.code != "" {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("route %v, error %v; want error %s", route, err, tt.code)
				}
				if e.Code != tt.code || e.Temporary != tt.temporary || route != nil {
					t.Fatalf("error %v (temporary %v), want %s (temporary %v)", e, e.Temporary, tt.code, tt.temporary)
				}
				if e.Temporary != (e.Code[0] == '4') {
					t.Errorf("Temporary %v with code %s", e.Temporary, e.Code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := describe(route); got != tt.want {
				t.Errorf("route\n %s\nwant\n %s", got, tt.want)
			}
			if route.ImplicitMX != tt.implicit {
				t.Errorf("ImplicitMX %v", route.ImplicitMX)
			}
			canon := tt.canonical
			if canon == "" {
				canon = strings.ToLower(strings.TrimSuffix(tt.domain, "."))
			}
			if route.Canonical != canon || route.Domain != strings.ToLower(strings.TrimSuffix(tt.domain, ".")) {
				t.Errorf("Domain %q Canonical %q", route.Domain, route.Canonical)
			}
		})
	}
}

// No address records are asked when the MX lookup fails or says NXDOMAIN.
func TestNoAddressFallback(t *testing.T) {
	s, r := setup(t)
	for _, d := range []string{"servfail.example", "nx.example"} {
		if _, err := Gather(context.Background(), r, d, Options{}); err == nil {
			t.Fatalf("%s: no error", d)
		}
		if n := s.Count(d, dns.TypeA) + s.Count(d, dns.TypeAAAA); n != 0 {
			t.Errorf("%s: %d address queries, want none", d, n)
		}
	}
}

// Two MX of equal preference: each comes first about half of the time.
func TestEqualPreferenceSpread(t *testing.T) {
	_, r := setup(t)
	rng := rand.New(rand.NewPCG(42, 4242))
	const runs = 1000
	first := map[string]int{}
	for range runs {
		route, err := Gather(context.Background(), r, "pair.example", Options{Rand: rng})
		if err != nil {
			t.Fatal(err)
		}
		if len(route.Hosts) != 2 {
			t.Fatalf("route %s", describe(route))
		}
		first[route.Hosts[0].Name]++
	}
	for _, h := range []string{"a.pair.example", "b.pair.example"} {
		if n := first[h]; n < runs*40/100 || n > runs*60/100 {
			t.Errorf("%s first in %d of %d runs, want 40-60%%", h, n, runs)
		}
	}
}

func TestAuthentic(t *testing.T) {
	s, r := setup(t)
	route, err := Gather(context.Background(), r, "example.org", Options{})
	if err != nil || route.Authentic || route.Hosts[0].Authentic {
		t.Fatalf("without AD: %+v %v", route, err)
	}
	s.SetAD(true)
	r = resolver.New(resolver.Config{Servers: []string{s.Addr()}})
	route, err = Gather(context.Background(), r, "example.org", Options{})
	if err != nil || !route.Authentic || !route.Hosts[0].Authentic {
		t.Fatalf("with AD: %+v %v", route, err)
	}
}

// fake is a Resolver that fails every lookup with err, or cancels.
type fake struct {
	cname, mx, ip error
	mxs           []*dns.MX
}

func (f fake) LookupCNAME(ctx context.Context, name string) (string, resolver.Result, error) {
	return name, resolver.Result{}, f.cname
}

func (f fake) LookupMX(ctx context.Context, name string) ([]*dns.MX, resolver.Result, error) {
	return f.mxs, resolver.Result{}, f.mx
}

func (f fake) LookupIP(ctx context.Context, host string) ([]net.IP, resolver.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, resolver.Result{}, err
	}
	if f.ip != nil {
		return nil, resolver.Result{}, f.ip
	}
	return []net.IP{net.IPv4(192, 0, 2, 1)}, resolver.Result{}, nil
}

// The error contract with a resolver that is not *resolver.Resolver: an
// unknown error is temporary; the sentinels are understood wrapped.
func TestGatherFake(t *testing.T) {
	mx := []*dns.MX{{Mx: "mx.example.", Preference: 10}}
	odd := errors.New("something odd")
	tests := []struct {
		name      string
		r         fake
		code      string
		temporary bool
	}{
		{"unknown CNAME error", fake{cname: odd}, "4.4.3", true},
		{"unknown MX error", fake{mx: odd}, "4.4.3", true},
		{"wrapped NXDOMAIN", fake{mx: fmt.Errorf("x: %w", resolver.ErrNotExist)}, "5.1.2", false},
		{"CNAME NXDOMAIN, then MX NXDOMAIN", fake{cname: resolver.ErrNotExist, mx: resolver.ErrNotExist}, "5.1.2", false},
		{"invalid", fake{cname: resolver.ErrInvalid}, "5.1.2", false},
		{"address timeout", fake{mxs: mx, ip: context.DeadlineExceeded}, "4.4.3", true},
		{"no MX, address NODATA", fake{mx: resolver.ErrNoRecords, ip: resolver.ErrNoRecords}, "5.1.2", false},
		{"ok", fake{mxs: mx}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			route, err := Gather(context.Background(), tt.r, "example.com", Options{})
			if tt.code == "" {
				if err != nil || describe(route) != "mx.example/10/192.0.2.1" {
					t.Fatalf("%v %v", route, err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != tt.code || e.Temporary != tt.temporary {
				t.Fatalf("error %v, want %s temporary %v", err, tt.code, tt.temporary)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var e *Error
	if _, err := Gather(ctx, fake{mxs: mx}, "example.com", Options{}); !errors.As(err, &e) || !e.Temporary {
		t.Errorf("cancelled: %v, want temporary", err)
	}
}
