package resolver

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/internal/fakeclock"
	"github.com/mxedge/mxedge/resolver/dnstest"
)

// clock is a fake clock for the cache.
type clock = fakeclock.Clock

func newClock() *clock { return fakeclock.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)) }

// zone is the test data of most tests.
var zone = []string{
	"example.org. 300 IN SOA ns.example.org. hostmaster.example.org. 1 3600 600 86400 30",
	"example.org. 300 IN MX 10 mx1.example.org.",
	"example.org. 300 IN MX 20 mx2.example.org.",
	"example.org. 300 IN TXT \"v=spf1 -all\"",
	"mx1.example.org. 300 IN A 127.0.0.2",
	"mx1.example.org. 300 IN AAAA 2001:db8::2",
	"mx2.example.org. 100 IN A 127.0.0.3",
	"v6only.example.org. 300 IN AAAA 2001:db8::6",
	"_25._tcp.mx1.example.org. 300 IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	"alias.example.org. 60 IN CNAME alias2.example.org.",
	"alias2.example.org. 120 IN CNAME mx1.example.org.",
	"dangling.example.org. 60 IN CNAME gone.example.org.",
	"loop1.example.org. 60 IN CNAME loop2.example.org.",
	"loop2.example.org. 60 IN CNAME loop1.example.org.",
}

// startDNS starts a test DNS server on 127.0.0.53 with zone.
func startDNS(t *testing.T) *dnstest.Server {
	t.Helper()
	s, err := dnstest.Start("127.0.0.53:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Add(zone...); err != nil {
		t.Fatal(err)
	}
	return s
}

// newResolver returns a resolver asking servers, with a fake clock.
func newResolver(clk *clock, cacheSize int, servers ...string) *Resolver {
	return New(Config{Servers: servers, Timeout: 300 * time.Millisecond, Attempts: 1, Now: clk.Now, CacheSize: cacheSize})
}

func TestLookupMX(t *testing.T) {
	s := startDNS(t)
	r := newResolver(newClock(), 0, s.Addr())
	mxs, res, err := r.LookupMX(context.Background(), "Example.org")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mx := range mxs {
		got = append(got, mx.Mx)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"mx1.example.org.", "mx2.example.org."}) {
		t.Errorf("MX = %v", got)
	}
	if res.Status != StatusAnswer || res.Name != "example.org." || res.TTL != 300 || res.Server != s.Addr() || len(res.CNAMEs) != 0 {
		t.Errorf("Result = %+v", res)
	}
}

func TestLookupIP(t *testing.T) {
	s := startDNS(t)
	s.Add("broken6.example.org. 300 IN A 127.0.0.7")
	s.SetRcode("broken6.example.org.", dns.TypeAAAA, dns.RcodeServerFailure)
	s.SetRcode("broken4.example.org.", dns.TypeA, dns.RcodeServerFailure)
	r := newResolver(newClock(), 0, s.Addr())
	tests := []struct {
		host string
		want []string
		kind error // nil: no error
	}{
		{"mx1.example.org", []string{"127.0.0.2", "2001:db8::2"}, nil},
		{"mx2.example.org", []string{"127.0.0.3"}, nil},
		{"v6only.example.org", []string{"2001:db8::6"}, nil},
		{"alias.example.org", []string{"127.0.0.2", "2001:db8::2"}, nil},
		{"broken6.example.org", []string{"127.0.0.7"}, nil}, // AAAA SERVFAIL does not matter
		{"broken4.example.org", nil, ErrTemporary},          // A SERVFAIL, AAAA NXDOMAIN: unknown
		{"example.org", nil, ErrNoRecords},
		{"nope.example.org", nil, ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			ips, _, err := r.LookupIP(context.Background(), tt.host)
			var got []string
			for _, ip := range ips {
				got = append(got, ip.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("addresses %v, want %v", got, tt.want)
			}
			if tt.kind == nil && err != nil || tt.kind != nil && !errors.Is(err, tt.kind) {
				t.Errorf("error %v, want kind %v", err, tt.kind)
			}
		})
	}
}

func TestLookupCNAME(t *testing.T) {
	s := startDNS(t)
	r := newResolver(newClock(), 0, s.Addr())
	tests := []struct {
		name   string
		canon  string
		cnames []string
		status Status
		kind   error
	}{
		{"alias.example.org", "mx1.example.org.", []string{"alias.example.org.", "alias2.example.org."}, StatusAnswer, nil},
		{"mx1.example.org", "mx1.example.org.", nil, StatusNODATA, nil},
		{"dangling.example.org", "gone.example.org.", []string{"dangling.example.org."}, StatusNXDOMAIN, ErrNotExist},
		{"nope.example.org", "nope.example.org.", nil, StatusNXDOMAIN, ErrNotExist},
		{"loop1.example.org", "", nil, StatusUnknown, ErrTemporary},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			canon, res, err := r.LookupCNAME(context.Background(), tt.name)
			if tt.kind == nil && err != nil || tt.kind != nil && !errors.Is(err, tt.kind) {
				t.Fatalf("error %v, want kind %v", err, tt.kind)
			}
			if tt.kind == ErrTemporary {
				return
			}
			if canon != tt.canon || !slices.Equal(res.CNAMEs, tt.cnames) || res.Status != tt.status {
				t.Errorf("got %q %v %v, want %q %v %v", canon, res.CNAMEs, res.Status, tt.canon, tt.cnames, tt.status)
			}
		})
	}
}

// A CNAME chain in the answer is followed: the MX of an alias, the TTL the
// smallest of the chain.
func TestCNAMEInAnswer(t *testing.T) {
	s := startDNS(t)
	r := newResolver(newClock(), 0, s.Addr())
	ips, res, err := r.LookupIP(context.Background(), "alias.example.org")
	if err != nil || len(ips) != 2 {
		t.Fatalf("%v %v", ips, err)
	}
	if res.Name != "mx1.example.org." || !slices.Equal(res.CNAMEs, []string{"alias.example.org.", "alias2.example.org."}) || res.TTL != 60 {
		t.Errorf("Result %+v", res)
	}
	_, res, err = r.LookupMX(context.Background(), "alias.example.org")
	if !errors.Is(err, ErrNoRecords) || res.Name != "mx1.example.org." {
		t.Errorf("MX of alias: %+v %v, want NODATA for mx1.example.org.", res, err)
	}
}

func TestLookupTLSAAndTXT(t *testing.T) {
	s := startDNS(t)
	r := newResolver(newClock(), 0, s.Addr())
	tlsa, _, err := r.LookupTLSA(context.Background(), 25, "tcp", "mx1.example.org")
	if err != nil || len(tlsa) != 1 || tlsa[0].Usage != 3 || tlsa[0].Selector != 1 || tlsa[0].MatchingType != 1 {
		t.Errorf("TLSA: %v %v", tlsa, err)
	}
	if _, _, err := r.LookupTLSA(context.Background(), 25, "tcp", "mx2.example.org"); !errors.Is(err, ErrNotExist) {
		t.Errorf("TLSA of mx2: %v, want NXDOMAIN", err)
	}
	rrs, _, err := r.Lookup(context.Background(), "example.org", dns.TypeTXT)
	if err != nil || len(rrs) != 1 || rrs[0].(*dns.TXT).Txt[0] != "v=spf1 -all" {
		t.Errorf("TXT: %v %v", rrs, err)
	}
	msg, err := r.Query(context.Background(), "nope.example.org", dns.TypeTXT)
	if !errors.Is(err, ErrNotExist) || msg == nil || msg.Rcode != dns.RcodeNameError || len(msg.Ns) != 1 {
		t.Errorf("Query NXDOMAIN: %v %v", msg, err)
	}
}

func TestClassification(t *testing.T) {
	s := startDNS(t)
	s.SetRcode("servfail.example.org.", dns.TypeMX, dns.RcodeServerFailure)
	s.SetRcode("refused.example.org.", dns.TypeMX, dns.RcodeRefused)
	s.SetRcode("notimp.example.org.", dns.TypeMX, dns.RcodeNotImplemented)
	r := newResolver(newClock(), 0, s.Addr())
	tests := []struct {
		name      string
		kind      error
		rcode     int
		status    Status
		notFound  bool
		temporary bool
	}{
		{"example.org", nil, 0, StatusAnswer, false, false},
		{"nope.example.org", ErrNotExist, dns.RcodeNameError, StatusNXDOMAIN, true, false},
		{"mx1.example.org", ErrNoRecords, dns.RcodeSuccess, StatusNODATA, true, false},
		{"dangling.example.org", ErrNotExist, dns.RcodeNameError, StatusNXDOMAIN, true, false},
		{"servfail.example.org", ErrTemporary, dns.RcodeServerFailure, StatusUnknown, false, true},
		{"refused.example.org", ErrTemporary, dns.RcodeRefused, StatusUnknown, false, true},
		{"notimp.example.org", ErrTemporary, dns.RcodeNotImplemented, StatusUnknown, false, true},
		{"loop1.example.org", ErrTemporary, dns.RcodeServerFailure, StatusUnknown, false, true},
		{strings.Repeat("a", 64) + ".example.org", ErrInvalid, -1, StatusUnknown, false, false},
		{"", ErrInvalid, -1, StatusUnknown, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, res, err := r.LookupMX(context.Background(), tt.name)
			if tt.kind == nil {
				if err != nil {
					t.Fatal(err)
				}
			} else if !errors.Is(err, tt.kind) {
				t.Fatalf("error %v, want kind %v", err, tt.kind)
			}
			if IsNotFound(err) != tt.notFound || IsTemporary(err) != tt.temporary {
				t.Errorf("IsNotFound %v IsTemporary %v, want %v %v", IsNotFound(err), IsTemporary(err), tt.notFound, tt.temporary)
			}
			if res.Status != tt.status {
				t.Errorf("status %v, want %v", res.Status, tt.status)
			}
			var e *Error
			if err != nil {
				if !errors.As(err, &e) {
					t.Fatalf("%T is not *Error", err)
				}
				if e.Rcode != tt.rcode || e.IsNotFound() != tt.notFound || e.IsTemporary() != tt.temporary || e.Name != tt.name || e.Type != dns.TypeMX {
					t.Errorf("Error %+v", e)
				}
			}
		})
	}
}

// A truncated UDP answer is asked again over TCP.
func TestTruncatedRetriesOverTCP(t *testing.T) {
	s := startDNS(t)
	s.SetTruncate("example.org.", true)
	r := newResolver(newClock(), 0, s.Addr())
	mxs, _, err := r.LookupMX(context.Background(), "example.org")
	if err != nil || len(mxs) != 2 {
		t.Fatalf("%v %v", mxs, err)
	}
	if n := s.Count("example.org.", dns.TypeMX); n != 2 {
		t.Errorf("%d queries, want 2 (UDP, then TCP)", n)
	}
}

// silentServer is a UDP listener that never answers.
func silentServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.54:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

func TestNextServer(t *testing.T) {
	failing := startDNS(t)
	failing.SetRcode("example.org.", dns.TypeANY, dns.RcodeServerFailure)
	good := startDNS(t)
	silent := silentServer(t)

	tests := []struct {
		name    string
		servers []string
		minTime time.Duration
	}{
		{"after timeout", []string{silent, good.Addr()}, 300 * time.Millisecond},
		{"after SERVFAIL", []string{failing.Addr(), good.Addr()}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newResolver(newClock(), 0, tt.servers...)
			t0 := time.Now()
			_, res, err := r.LookupMX(context.Background(), "example.org")
			if err != nil {
				t.Fatal(err)
			}
			if res.Server != good.Addr() {
				t.Errorf("answer from %s, want %s", res.Server, good.Addr())
			}
			if d := time.Since(t0); d < tt.minTime {
				t.Errorf("answer after %v, want at least the timeout %v", d, tt.minTime)
			}
		})
	}
}

func TestAllServersFail(t *testing.T) {
	silent := silentServer(t)
	r := New(Config{Servers: []string{silent}, Timeout: 100 * time.Millisecond, Attempts: 2})
	t0 := time.Now()
	_, _, err := r.LookupMX(context.Background(), "example.org")
	var ne net.Error
	if !IsTemporary(err) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("error %v, want a temporary timeout", err)
	}
	if d := time.Since(t0); d < 200*time.Millisecond || d > 2*time.Second {
		t.Errorf("failed after %v, want 2 attempts of 100ms", d)
	}
}

// The caller's context bounds the lookup, also while waiting for a slow
// server.
func TestContextDeadline(t *testing.T) {
	s := startDNS(t)
	s.SetDelay(2 * time.Second)
	r := New(Config{Servers: []string{s.Addr()}, Timeout: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, _, err := r.LookupMX(ctx, "example.org")
	if !IsTemporary(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want temporary, deadline exceeded", err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("returned after %v", d)
	}
}

func TestCache(t *testing.T) {
	s := startDNS(t)
	clk := newClock()
	r := newResolver(clk, 0, s.Addr())
	ctx := context.Background()
	lookup := func() Result {
		t.Helper()
		_, res, err := r.LookupMX(ctx, "example.org")
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	lookup()
	clk.Advance(100 * time.Second)
	if res := lookup(); res.TTL != 200 {
		t.Errorf("cached TTL %d, want 200", res.TTL)
	}
	if n := s.Count("example.org.", dns.TypeMX); n != 1 {
		t.Fatalf("%d queries, want 1 (cache hit)", n)
	}
	// A changed answer is seen only after the TTL.
	s.Remove("example.org.", dns.TypeMX)
	s.Add("example.org. 300 IN MX 5 new.example.org.")
	clk.Advance(199 * time.Second)
	if mxs, _, _ := r.LookupMX(ctx, "example.org"); len(mxs) != 2 {
		t.Errorf("before expiry: %v", mxs)
	}
	clk.Advance(time.Second)
	if mxs, _, _ := r.LookupMX(ctx, "example.org"); len(mxs) != 1 || mxs[0].Mx != "new.example.org." {
		t.Errorf("after expiry: %v", mxs)
	}
	if n := s.Count("example.org.", dns.TypeMX); n != 2 {
		t.Errorf("%d queries, want 2", n)
	}
	// Records handed out are copies: changing them does not change the cache.
	mxs, _, _ := r.LookupMX(ctx, "example.org")
	mxs[0].Mx = "changed."
	if mxs, _, _ := r.LookupMX(ctx, "example.org"); mxs[0].Mx != "new.example.org." {
		t.Errorf("cache changed through a returned record: %v", mxs)
	}
}

// Negative answers are cached for min(SOA TTL, SOA MINIMUM) = 30 s.
func TestNegativeCache(t *testing.T) {
	for _, tt := range []struct {
		name string
		kind error
	}{
		{"nope.example.org.", ErrNotExist},
		{"mx1.example.org.", ErrNoRecords},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := startDNS(t)
			clk := newClock()
			r := newResolver(clk, 0, s.Addr())
			for i, step := range []time.Duration{0, 29 * time.Second, time.Second} {
				clk.Advance(step)
				_, res, err := r.LookupMX(context.Background(), tt.name)
				if !errors.Is(err, tt.kind) {
					t.Fatalf("error %v, want %v", err, tt.kind)
				}
				if i == 0 && res.TTL != 30 {
					t.Errorf("negative TTL %d, want 30", res.TTL)
				}
			}
			if n := s.Count(tt.name, dns.TypeMX); n != 2 {
				t.Errorf("%d queries, want 2 (asked, cached for 30s, asked)", n)
			}
		})
	}
}

// Temporary failures are not cached.
func TestFailureNotCached(t *testing.T) {
	s := startDNS(t)
	s.SetRcode("example.org.", dns.TypeMX, dns.RcodeServerFailure)
	r := newResolver(newClock(), 0, s.Addr())
	if _, _, err := r.LookupMX(context.Background(), "example.org"); !IsTemporary(err) {
		t.Fatalf("error %v", err)
	}
	s.SetRcode("example.org.", dns.TypeMX, dns.RcodeSuccess)
	if _, _, err := r.LookupMX(context.Background(), "example.org"); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestCacheBounded(t *testing.T) {
	s := startDNS(t)
	r := newResolver(newClock(), 2, s.Addr())
	for _, n := range []string{"mx1.example.org", "mx2.example.org", "v6only.example.org"} {
		r.Lookup(context.Background(), n, dns.TypeAAAA)
	}
	if n := r.cache.len(); n != 2 {
		t.Errorf("cache holds %d answers, want 2", n)
	}
	// The oldest went: asking it again queries the server.
	r.Lookup(context.Background(), "mx1.example.org", dns.TypeAAAA)
	if n := s.Count("mx1.example.org.", dns.TypeAAAA); n != 2 {
		t.Errorf("%d queries for the evicted answer, want 2", n)
	}
}

func TestAuthentic(t *testing.T) {
	s := startDNS(t)
	r := newResolver(newClock(), -1, s.Addr())
	_, res, _ := r.LookupMX(context.Background(), "example.org")
	if res.Authentic {
		t.Error("Authentic without AD")
	}
	s.SetAD(true) // dnstest sets AD only if the query had DO: this tests both
	_, res, _ = r.LookupMX(context.Background(), "example.org")
	if !res.Authentic {
		t.Error("AD not surfaced")
	}
	_, res, _ = r.LookupTLSA(context.Background(), 25, "tcp", "mx1.example.org")
	if !res.Authentic {
		t.Error("AD not surfaced for TLSA")
	}
}

// 50 concurrent identical lookups make one query, and share its answer;
// the cache is off, so this is the coalescing.
func TestCoalescing(t *testing.T) {
	s := startDNS(t)
	s.SetDelay(200 * time.Millisecond)
	r := newResolver(newClock(), -1, s.Addr())
	r.timeout = 5 * time.Second
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			mxs, _, err := r.LookupMX(context.Background(), "example.org")
			if err == nil && len(mxs) != 2 {
				err = errors.New("wrong answer")
			}
			errs <- err
		}()
	}
	// One caller that gives up early does not fail the others.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	close(start)
	if _, _, err := r.LookupMX(ctx, "example.org"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("impatient caller: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Count("example.org.", dns.TypeMX); n != 1 {
		t.Errorf("%d queries, want 1", n)
	}
}

// A caller that gives up makes the next caller start a new query instead
// of joining the late one.
func TestCoalescingAbandoned(t *testing.T) {
	s := startDNS(t)
	s.SetDelay(300 * time.Millisecond)
	r := newResolver(newClock(), -1, s.Addr())
	r.timeout = 5 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := r.LookupMX(ctx, "example.org"); !IsTemporary(err) {
		t.Fatalf("error %v", err)
	}
	s.SetDelay(0)
	if _, _, err := r.LookupMX(context.Background(), "example.org"); err != nil {
		t.Fatalf("after abandoned flight: %v", err)
	}
}

func TestServersConfig(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver 192.0.2.1\nnameserver 2001:db8::1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		cfg  Config
		want []string
	}{
		{Config{Servers: []string{"127.0.0.53:5353", "192.0.2.9", "2001:db8::9", "[2001:db8::8]"}},
			[]string{"127.0.0.53:5353", "192.0.2.9:53", "[2001:db8::9]:53", "[2001:db8::8]:53"}},
		{Config{ResolvConf: conf}, []string{"192.0.2.1:53", "[2001:db8::1]:53"}},
		{Config{ResolvConf: filepath.Join(dir, "missing")}, []string{"127.0.0.1:53"}},
	}
	for _, tt := range tests {
		if got := New(tt.cfg).Servers(); !slices.Equal(got, tt.want) {
			t.Errorf("%+v: servers %v, want %v", tt.cfg, got, tt.want)
		}
	}
}

// Exchanges in flight are bounded (each is a socket): with one slot and
// every answer 150 ms late, three different lookups at once take three
// answers' time; a lookup whose context ends while it waits for a slot
// fails temporarily.
func TestMaxInFlight(t *testing.T) {
	s := startDNS(t)
	s.SetDelay(150 * time.Millisecond)
	r := New(Config{Servers: []string{s.Addr()}, Timeout: 2 * time.Second, Attempts: 1, CacheSize: -1, MaxInFlight: 1})
	t0 := time.Now()
	var wg sync.WaitGroup
	for _, name := range []string{"mx1.example.org", "mx2.example.org", "example.org"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.Lookup(context.Background(), name, dns.TypeA)
		}()
	}
	wg.Wait()
	if d := time.Since(t0); d < 450*time.Millisecond {
		t.Errorf("3 lookups through 1 slot took %v, want >= 450ms", d)
	}
	go r.Lookup(context.Background(), "mx1.example.org", dns.TypeAAAA) // holds the slot
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := r.Lookup(ctx, "mx2.example.org", dns.TypeAAAA); !IsTemporary(err) {
		t.Errorf("waiting for a slot past the deadline: %v", err)
	}
}
