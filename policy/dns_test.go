package policy

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/resolver"
	"github.com/mxedge/mxedge/resolver/dnstest"
)

// The checks that ask DNS, each case through the in-process DNS server.

func startDNS(t *testing.T, records ...string) (*dnstest.Server, *resolver.Resolver) {
	t.Helper()
	s := dnstest.StartTB(t, records...)
	return s, resolver.New(resolver.Config{Servers: []string{s.Addr()}, Timeout: 300 * time.Millisecond, Attempts: 1, CacheSize: -1})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestLookupReverse(t *testing.T) {
	srv, r := startDNS(t,
		"7.2.0.192.in-addr.arpa. PTR mail.good.test.",
		"mail.good.test. A 192.0.2.7",
		"8.2.0.192.in-addr.arpa. PTR mail.other.test.",
		"mail.other.test. A 192.0.2.99",
		"9.2.0.192.in-addr.arpa. PTR broken.test.",
		"10.2.0.192.in-addr.arpa. PTR nowhere.test.",
		"11.2.0.192.in-addr.arpa. PTR first.test.",
		"11.2.0.192.in-addr.arpa. PTR Second.TEST.",
		"second.test. A 192.0.2.11",
		// IPv6 (2001:db8::25) with its nibble PTR name.
		"5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. PTR v6.good.test.",
		"v6.good.test. AAAA 2001:db8::25",
	)
	srv.SetRcode("broken.test.", dns.TypeANY, dns.RcodeServerFailure)
	srv.SetRcode("12.2.0.192.in-addr.arpa.", dns.TypePTR, dns.RcodeServerFailure)
	for _, tc := range []struct {
		ip   string
		want Reverse
	}{
		{"192.0.2.7", Reverse{"mail.good.test", ReversePass}},
		{"192.0.2.8", Reverse{"mail.other.test", ReverseMismatch}},
		{"192.0.2.9", Reverse{"broken.test", ReverseTempError}},  // forward SERVFAIL
		{"192.0.2.10", Reverse{"nowhere.test", ReverseMismatch}}, // forward NXDOMAIN
		{"192.0.2.11", Reverse{"second.test", ReversePass}},      // the second name confirms
		{"192.0.2.12", Reverse{"", ReverseTempError}},            // PTR SERVFAIL
		{"192.0.2.13", Reverse{"", ReverseNone}},                 // no PTR (NXDOMAIN)
		{"2001:db8::25", Reverse{"v6.good.test", ReversePass}},
		{"::ffff:192.0.2.7", Reverse{"mail.good.test", ReversePass}},
	} {
		if got := LookupReverse(ctx(t), r, netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.ip, got, tc.want)
		}
	}
}

// later runs a connect check as the listener does: CheckConnect before the
// banner, then its Later (if any).
func later(t *testing.T, c ConnectCheck, pc *Conn) Result {
	t.Helper()
	r := c.CheckConnect(ctx(t), pc)
	if r.Later != nil {
		if r.Reply != nil || r.OK {
			t.Fatalf("Later with a decision: %+v", r)
		}
		return r.Later(ctx(t))
	}
	return r
}

func code(r Result) string {
	switch {
	case r.Reply != nil:
		return r.Reply.String()
	case r.Logged != nil:
		return "log " + r.Logged.String()
	case r.OK:
		return "OK"
	}
	return ""
}

func TestIprev(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	for _, tc := range []struct {
		noPTR, mismatch Action
		rev             Reverse
		want            string
	}{
		{ActionReject, ActionLog, Reverse{"a.test", ReversePass}, ""},
		{ActionReject, ActionLog, Reverse{"", ReverseNone}, "550 5.7.25 Client host rejected: cannot find your reverse hostname, [192.0.2.1]"},
		{ActionDefer, ActionLog, Reverse{"", ReverseNone}, "450 4.7.25 Client host rejected: cannot find your reverse hostname, [192.0.2.1]"},
		{ActionReject, ActionLog, Reverse{"", ReverseTempError}, "450 4.7.25 Client host rejected: cannot find your reverse hostname"},
		{ActionOff, ActionOff, Reverse{"", ReverseTempError}, ""},
		{ActionLog, ActionOff, Reverse{"", ReverseNone}, "log 550 5.7.25"},
		{ActionReject, ActionLog, Reverse{"a.test", ReverseMismatch}, "log 550 5.7.25 Client host rejected: cannot find your hostname, [192.0.2.1]"},
		{ActionReject, ActionReject, Reverse{"a.test", ReverseMismatch}, "550 5.7.25 Client host rejected: cannot find your hostname"},
		{ActionOff, ActionDefer, Reverse{"a.test", ReverseMismatch}, "450 4.7.25"},
		{ActionReject, ActionLog, Reverse{}, ""}, // no lookup on this listener
	} {
		pc := &Conn{IP: ip, Reverse: tc.rev}
		got := code(later(t, &Iprev{NoPTR: tc.noPTR, Mismatch: tc.mismatch}, pc))
		if tc.want == "" && got != "" || !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s/%s %+v: %q, want %q", tc.noPTR, tc.mismatch, tc.rev, got, tc.want)
		}
	}
}

func TestDNSBL(t *testing.T) {
	srv, r := startDNS(t,
		// 192.0.2.1: on zen (3) only.
		"1.2.0.192.zen.test. A 127.0.0.4",
		// 192.0.2.2: on bl (2) only: below the threshold.
		"2.2.0.192.bl.test. A 127.0.0.2",
		// 192.0.2.3: on bl (2) and other (1): 3.
		"3.2.0.192.bl.test. A 127.0.0.2",
		"3.2.0.192.other.test. A 127.0.0.10",
		// 192.0.2.4: on zen (3) and on the allow list (-5).
		"4.2.0.192.zen.test. A 127.0.0.2",
		"4.2.0.192.wl.test. A 127.0.10.2",
		// 192.0.2.5: zen answers an address its filter does not take.
		"5.2.0.192.zen.test. A 127.0.0.1",
		// 192.0.2.6: other answers an error code (default filter).
		"6.2.0.192.other.test. A 127.255.255.254",
		"6.2.0.192.bl.test. A 127.0.0.3",
		// 2001:db8::1 on zen, by nibbles.
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.test. A 127.0.0.3",
	)
	var sites []DNSBLSite
	for _, s := range []string{"zen.test=127.0.0.[2..11]*3", "bl.test*2", "other.test", "wl.test=127.0.[0..255].[1;2..3]*-5"} {
		site, err := ParseDNSBLSite(s)
		if err != nil {
			t.Fatal(err)
		}
		sites = append(sites, site)
	}
	check := &DNSBL{Sites: sites, Threshold: 3, Timeout: 2 * time.Second, DNS: r}
	for _, tc := range []struct {
		ip, want, reason string
	}{
		{"192.0.2.1", "554 5.7.1 Service unavailable; client [192.0.2.1] blocked using zen.test", "score=3 zen.test=127.0.0.4*3"},
		{"192.0.2.2", "", ""},
		{"192.0.2.3", "554 5.7.1 Service unavailable; client [192.0.2.3] blocked using bl.test", "score=3 bl.test=127.0.0.2*2 other.test=127.0.0.10*1"},
		{"192.0.2.4", "", ""},
		{"192.0.2.5", "", ""},
		{"192.0.2.6", "", ""},
		{"192.0.2.99", "", ""},
		{"2001:db8::1", "554 5.7.1 Service unavailable; client [2001:db8::1] blocked using zen.test", ""},
	} {
		res := later(t, check, &Conn{IP: netip.MustParseAddr(tc.ip)})
		if got := code(res); got != tc.want {
			t.Errorf("%s: %q, want %q (reason %q)", tc.ip, got, tc.want, res.Reason)
		}
		if tc.reason != "" && res.Reason != tc.reason {
			t.Errorf("%s: reason %q, want %q", tc.ip, res.Reason, tc.reason)
		}
	}
	// Each list's zone was asked once per client, however many entries.
	if n := srv.Count("1.2.0.192.zen.test.", dns.TypeA); n != 1 {
		t.Errorf("zen asked %d times for 192.0.2.1", n)
	}

	// A list that does not answer in time counts 0.
	srv.SetDelay(time.Second)
	check.Timeout = 100 * time.Millisecond
	if res := later(t, check, &Conn{IP: netip.MustParseAddr("192.0.2.1")}); res.Reply != nil || !strings.Contains(res.Reason, "score=0") {
		t.Errorf("timed out lists: %q %q", code(res), res.Reason)
	}
	// The Later's own ctx ending (the listener's stage timeout) counts
	// the lists still out as 0 too.
	check.Timeout = 5 * time.Second
	r0 := check.CheckConnect(ctx(t), &Conn{IP: netip.MustParseAddr("192.0.2.1")})
	lctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if res := r0.Later(lctx); res.Reply != nil || !strings.Contains(res.Reason, "zen.test=timeout") {
		t.Errorf("stage timeout: %q %q", code(res), res.Reason)
	}
}

func TestParseDNSBLSite(t *testing.T) {
	for _, bad := range []string{"", "zen.test=127.0.0", "zen.test=127.0.0.[2..300]", "zen.test*x", "zen.test*0", "zen_.test", "zen.test=127.0.0.[5..2]"} {
		if _, err := ParseDNSBLSite(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	s, err := ParseDNSBLSite("ZEN.Test=127.0.0.[2;4..5]*-2")
	if err != nil || s.Domain != "zen.test" || s.Weight != -2 {
		t.Fatalf("%+v %v", s, err)
	}
	for ip, want := range map[string]bool{"127.0.0.2": true, "127.0.0.3": false, "127.0.0.5": true, "127.0.1.2": false} {
		if s.Matches(netip.MustParseAddr(ip)) != want {
			t.Errorf("%s: want %v", ip, want)
		}
	}
}

func TestHelo(t *testing.T) {
	srv, r := startDNS(t, "client.good.test. A 192.0.2.1")
	srv.SetRcode("flaky.test.", dns.TypeANY, dns.RcodeServerFailure)
	h := &Helo{Invalid: ActionReject, IsUs: ActionReject, Unknown: ActionReject, Hostname: "mx.relay.test",
		Domains: map[string]bool{"relay.test": true}, DNS: r, Timeout: time.Second}
	local := netip.MustParseAddrPort("192.0.2.25:25")
	for _, tc := range []struct{ helo, want string }{
		{"client.good.test", ""},
		{"CLIENT.Good.Test", ""},
		{"[192.0.2.1]", ""},
		{"[IPv6:2001:db8::1]", ""},
		{"localhost", "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"},
		{"bad_name.test", "501 5.5.2 <bad_name.test>: Helo command rejected: Invalid name"},
		{"192.0.2.1", "501 5.5.2 <192.0.2.1>: Helo command rejected: Invalid name"},
		{"[192.0.2.300]", "501 5.5.2 <[192.0.2.300]>: Helo command rejected: Invalid ip address"},
		{"[2001:db8::1]", "501 5.5.2 <[2001:db8::1]>: Helo command rejected: Invalid ip address"},
		{"mx.relay.test", "550 5.7.1 <mx.relay.test>: Helo command rejected: you are not me"},
		{"Relay.Test", "550 5.7.1 <Relay.Test>: Helo command rejected: you are not me"},
		{"[192.0.2.25]", "550 5.7.1 <[192.0.2.25]>: Helo command rejected: you are not me"},
		{"nowhere.test", "550 5.7.1 <nowhere.test>: Helo command rejected: Host not found"},
		{"flaky.test", "450 4.7.1 <flaky.test>: Helo command rejected: Host not found"},
	} {
		if got := code(h.CheckHelo(ctx(t), &Conn{Helo: tc.helo, Local: local})); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.helo, got, tc.want)
		}
	}
	// Documented defaults: unknown HELO only logged; trusted clients not
	// checked.
	h.Unknown = ActionLog
	if got := code(h.CheckHelo(ctx(t), &Conn{Helo: "nowhere.test"})); got != "log 550 5.7.1 <nowhere.test>: Helo command rejected: Host not found" {
		t.Errorf("log mode: %q", got)
	}
	if got := code(h.CheckHelo(ctx(t), &Conn{Helo: "localhost", Trusted: true})); got != "" {
		t.Errorf("trusted: %q", got)
	}
}

func TestSenderDomain(t *testing.T) {
	srv, r := startDNS(t,
		"mx.test. MX 10 mail.mx.test.",
		"aonly.test. A 192.0.2.1",
		"v6only.test. AAAA 2001:db8::1",
		"nomail.test. MX 0 .",
		"txtonly.test. TXT \"v=spf1 -all\"",
		"flakya.test. TXT \"x\"",
	)
	srv.SetRcode("flaky.test.", dns.TypeMX, dns.RcodeServerFailure)
	srv.SetRcode("flakya.test.", dns.TypeA, dns.RcodeServerFailure)
	srv.SetRcode("flakya.test.", dns.TypeAAAA, dns.RcodeServerFailure)
	s := &SenderDomain{Action: ActionReject, DNS: r, Timeout: time.Second}
	for _, tc := range []struct{ from, want string }{
		{"", ""},
		{"a@mx.test", ""},
		{"a@aonly.test", ""},
		{"a@v6only.test", ""},
		{"a@[192.0.2.1]", ""},
		{"a@nowhere.test", "550 5.1.8 <a@nowhere.test>: Sender address rejected: Domain not found"},
		{"a@txtonly.test", "550 5.1.8 <a@txtonly.test>: Sender address rejected: Domain not found"},
		{"a@nomail.test", "550 5.7.27 <a@nomail.test>: Sender address rejected: Domain does not accept mail (nullMX)"},
		{"a@flaky.test", "450 4.1.8 <a@flaky.test>: Sender address rejected: Domain not found"},
		{"a@flakya.test", "450 4.1.8"},
	} {
		got := code(s.CheckMail(ctx(t), &Conn{}, &Txn{From: tc.from}))
		if tc.want == "" && got != "" || !strings.HasPrefix(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.from, got, tc.want)
		}
	}
	s.Action = ActionDefer
	if got := code(s.CheckMail(ctx(t), &Conn{}, &Txn{From: "a@nowhere.test"})); !strings.HasPrefix(got, "450 4.1.8") {
		t.Errorf("defer: %q", got)
	}
}
