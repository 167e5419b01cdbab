package mxroute

import (
	"math/rand/v2"
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func mxs(spec string) []*dns.MX {
	var out []*dns.MX
	for _, f := range strings.Fields(spec) {
		var mx dns.MX
		pref, host, _ := strings.Cut(f, ":")
		for _, c := range pref {
			mx.Preference = mx.Preference*10 + uint16(c-'0')
		}
		mx.Mx = host
		out = append(out, &mx)
	}
	return out
}

func names(hosts []Host) string {
	var s []string
	for _, h := range hosts {
		s = append(s, h.Name)
	}
	return strings.Join(s, " ")
}

func TestIsNullMX(t *testing.T) {
	tests := []struct {
		spec string
		want bool
	}{
		{"0:.", true},
		{"10:.", true},        // not the RFC 7505 form, same meaning
		{"0:. 0:.", true},     // duplicated
		{"0:. 10:mx.", false}, // misconfigured: the real MX is used
		{"10:mx.", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := isNullMX(mxs(tt.spec)); got != tt.want {
			t.Errorf("%q: %v, want %v", tt.spec, got, tt.want)
		}
	}
}

func TestOrderMX(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	got := orderMX(mxs("30:c. 10:A. 20:b. 0:. 20:a."), rng)
	// "." is dropped; "a" at 10 and 20 is kept once, at 10.
	if names(got) != "a b c" || got[0].Pref != 10 || got[1].Pref != 20 {
		t.Errorf("got %+v", got)
	}
	// Equal preferences come out in every order; others keep theirs.
	seen := map[string]bool{}
	for range 200 {
		h := names(orderMX(mxs("20:z. 10:x. 10:y. 10:w."), rng))
		if !strings.HasSuffix(h, " z") {
			t.Fatalf("order %s", h)
		}
		seen[h] = true
	}
	if len(seen) != 6 {
		t.Errorf("%d orders of 3 equal hosts seen, want 6: %v", len(seen), seen)
	}
	// Without Rand, the global source shuffles.
	seen = map[string]bool{}
	for range 200 {
		seen[names(orderMX(mxs("10:x. 10:y."), nil))] = true
	}
	if len(seen) != 2 {
		t.Errorf("nil Rand: orders %v", seen)
	}
}

func TestDropSelf(t *testing.T) {
	hosts := func() []Host {
		return []Host{
			{Name: "a", Pref: 10, Addrs: []net.IP{net.IPv4(192, 0, 2, 1)}},
			{Name: "b", Pref: 20},
			{Name: "c", Pref: 20, Addrs: []net.IP{net.IPv4(192, 0, 2, 3)}},
			{Name: "d", Pref: 30},
		}
	}
	tests := []struct {
		name string
		self func(string, net.IP) bool
		want string
		code string
	}{
		{"nil", nil, "a b c d", ""},
		{"none", func(string, net.IP) bool { return false }, "a b c d", ""},
		{"by name, mid", func(h string, _ net.IP) bool { return h == "c" }, "a", ""},
		{"by address, mid", func(_ string, ip net.IP) bool { return ip.Equal(net.IPv4(192, 0, 2, 3)) }, "a", ""},
		{"last", func(h string, _ net.IP) bool { return h == "d" }, "a b c", ""},
		{"best", func(h string, _ net.IP) bool { return h == "a" }, "", "5.4.6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := dropSelf(hosts(), tt.self, "example.org")
			if tt.code != "" {
				if e, ok := err.(*Error); !ok || e.Code != tt.code || e.Temporary {
					t.Fatalf("error %v, want %s", err, tt.code)
				}
				return
			}
			if err != nil || names(got) != tt.want {
				t.Errorf("got %q %v, want %q", names(got), err, tt.want)
			}
		})
	}
}

func TestLimitAddrs(t *testing.T) {
	ips := func(n int) []net.IP {
		var out []net.IP
		for i := range n {
			out = append(out, net.IPv4(192, 0, 2, byte(i)))
		}
		return out
	}
	hosts := func() []Host {
		return []Host{{Name: "a", Addrs: ips(2)}, {Name: "b", Addrs: ips(2)}, {Name: "c", Addrs: ips(2)}}
	}
	tests := []struct {
		max    int
		counts string
	}{
		{0, "2 2 1"}, // DefaultMaxAddrs
		{1, "1"},
		{4, "2 2"},
		{5, "2 2 1"},
		{100, "2 2 2"},
		{-1, "2 2 2"},
	}
	for _, tt := range tests {
		var counts []string
		for _, h := range limitAddrs(hosts(), tt.max) {
			counts = append(counts, strings.Repeat("x", len(h.Addrs)))
		}
		got := strings.NewReplacer("xx", "2", "x", "1").Replace(strings.Join(counts, " "))
		if got != tt.counts {
			t.Errorf("max %d: %q, want %q", tt.max, got, tt.counts)
		}
	}
}
