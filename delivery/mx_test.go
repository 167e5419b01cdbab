package delivery

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/internal/smtptest"
	"github.com/mxedge/mxedge/queue"
	"github.com/mxedge/mxedge/resolver"
	"github.com/mxedge/mxedge/resolver/dnstest"
)

// The MX walk against an in-process DNS server (127.0.0.53) and SMTP
// servers on 127.0.0.2, .3 and .4, all on one port that stands in for 25
// (delivery.mx_port).

// mxZone: example.org has three MX hosts of different preference, one on
// each server; pair.example two of equal preference.
var mxZone = []string{
	"example.org. 300 IN MX 20 mx2.example.org.",
	"example.org. 300 IN MX 10 mx1.example.org.",
	"example.org. 300 IN MX 30 mx3.example.org.",
	"mx1.example.org. 300 IN A 127.0.0.2",
	"mx2.example.org. 300 IN A 127.0.0.3",
	"mx3.example.org. 300 IN A 127.0.0.4",

	"pair.example. 300 IN MX 10 a.pair.example.",
	"pair.example. 300 IN MX 10 b.pair.example.",
	"a.pair.example. 300 IN A 127.0.0.2",
	"b.pair.example. 300 IN A 127.0.0.3",

	"nomx.example. 300 IN A 127.0.0.4",
	"null.example. 300 IN MX 0 .",
	"null.example. 300 IN A 127.0.0.4",
	"servfail.example. 300 IN A 127.0.0.4",
	"alias.example. 300 IN CNAME example.org.",

	"selfname.example. 300 IN MX 10 relay.mxedge.test.",
	"selfname.example. 300 IN MX 20 mx3.example.org.",
	"relay.mxedge.test. 300 IN A 127.0.0.9",
	"selfaddr.example. 300 IN MX 10 other-name.example.",
	"other-name.example. 300 IN A 127.0.0.9",
	"selfmid.example. 300 IN MX 10 mx1.example.org.",
	"selfmid.example. 300 IN MX 20 relay.mxedge.test.",
	"selfmid.example. 300 IN MX 30 mx3.example.org.",
}

// mxEnv is a test DNS server and a Deliverer that uses it.
type mxEnv struct {
	dns  *dnstest.Server
	d    *Deliverer
	port int
	o    Options
}

// newMXEnv starts the DNS server with zone and returns a Deliverer that
// delivers by MX to port. change edits the configuration first.
func newMXEnv(t *testing.T, zone []string, port int, change ...func(*Options)) *mxEnv {
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
	r := resolver.New(resolver.Config{Servers: []string{s.Addr()}, Timeout: time.Second, Attempts: 1})
	o := testOptions(func(o *Options) {
		o.MXPort = port
		self, err := SelfFunc(context.Background(), o.Hostname, []string{net.JoinHostPort("127.0.0.9", strconv.Itoa(port))}, port)
		if err != nil {
			t.Fatal(err)
		}
		o.Self = self
		o.Resolver = r
	})
	for _, c := range change {
		c(&o)
	}
	d := New(o)
	t.Cleanup(func() { d.Close() })
	return &mxEnv{dns: s, d: d, port: port, o: o}
}

// startMXServers starts smtptest servers on 127.0.0.2, .3 and .4, all on
// the same port, and returns them and the port. They are closed when the
// test ends; a test closes one earlier to take that host down.
func startMXServers(t *testing.T) ([]*smtptest.Server, int) {
	t.Helper()
	for try := 0; try < 20; try++ {
		first, err := smtptest.Start("127.0.0.2:0")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(first.Addr())
		servers := []*smtptest.Server{first}
		for _, ip := range []string{"127.0.0.3", "127.0.0.4"} {
			s, err := smtptest.Start(net.JoinHostPort(ip, port))
			if err != nil {
				break
			}
			servers = append(servers, s)
		}
		if len(servers) == 3 {
			for _, s := range servers {
				t.Cleanup(s.Close)
			}
			p, _ := strconv.Atoi(port)
			return servers, p
		}
		for _, s := range servers {
			s.Close()
		}
	}
	t.Fatal("no port free on 127.0.0.2, .3 and .4")
	return nil, 0
}

func (e *mxEnv) deliver(t *testing.T, rcpts ...string) []queue.Result {
	t.Helper()
	return e.d.Deliver(context.Background(), spooled(t, "sender@src.test", "Subject: mx\r\n\r\nbody\r\n", rcpts...))
}

func TestMXPreferenceOrder(t *testing.T) {
	servers, port := startMXServers(t)
	e := newMXEnv(t, mxZone, port)
	rs := e.deliver(t, "alice@example.org")
	if rs[0].Code != 250 || !strings.HasPrefix(rs[0].Relay, "mx1.example.org:"+strconv.Itoa(port)+" [127.0.0.2:") {
		t.Fatalf("all up: %+v, want 250 from mx1 (preference 10)", rs[0])
	}
	// The most preferred host down: the next one, in order.
	servers[0].Close()
	e.d.Close() // no cached connection to mx1 left
	rs = e.deliver(t, "alice@example.org")
	if rs[0].Code != 250 || !strings.HasPrefix(rs[0].Relay, "mx2.example.org:") {
		t.Fatalf("mx1 down: %+v, want 250 from mx2 (preference 20)", rs[0])
	}
	if n := len(servers[2].Messages()); n != 0 {
		t.Errorf("mx3 (preference 30) got %d messages", n)
	}
	// The same domain through a CNAME (RFC 5321 section 5.1).
	rs = e.deliver(t, "bob@alias.example")
	if rs[0].Code != 250 || !strings.HasPrefix(rs[0].Relay, "mx2.example.org:") {
		t.Fatalf("CNAME: %+v", rs[0])
	}
	if m := servers[1].Messages(); len(m) != 2 || m[1].Rcpts[0] != "<bob@alias.example>" {
		t.Errorf("mx2 messages %+v", m)
	}
}

// Greeting and EHLO failures and 421 move on to the next address.
func TestMXNextOnGreetingEHLOAnd421(t *testing.T) {
	servers, port := startMXServers(t)
	h1, h2 := servers[0], servers[1]
	h1.On(smtptest.Greeting, smtptest.Reply("421 4.3.2 busy"))
	h2.On(smtptest.Greeting, smtptest.Reply("554 5.7.1 go away"))
	e := newMXEnv(t, mxZone, port)
	rs := e.deliver(t, "alice@example.org", "bob@example.org")
	for _, r := range rs {
		if r.Code != 250 || !strings.HasPrefix(r.Relay, "mx3.example.org:") {
			t.Errorf("%+v, want 250 from mx3", r)
		}
	}
	if h1.Conns() != 1 || h2.Conns() != 1 || len(servers[2].Messages()) != 1 {
		t.Errorf("connections mx1 %d mx2 %d, messages at mx3 %d; want 1, 1, 1", h1.Conns(), h2.Conns(), len(servers[2].Messages()))
	}
}

func TestMXDNSOutcomes(t *testing.T) {
	servers, port := startMXServers(t)
	e := newMXEnv(t, mxZone, port)
	for _, tc := range []struct {
		rcpt string
		code int
		enh  string
		at   int // index of the server that must get the message, -1 none
	}{
		// No MX (NODATA): the domain's own address (implicit MX).
		{"a@nomx.example", 250, "", 2},
		// Null MX (RFC 7505): returned at once, even with an A record.
		{"a@null.example", 550, "5.1.10", -1},
		// NXDOMAIN: the domain does not exist.
		{"a@nx.example", 550, "5.1.2", -1},
		// SERVFAIL on MX: deferred, never the A record instead.
		{"a@servfail.example", 0, "4.4.3", -1},
		// This relay is the best MX (by name, by address): mail loop.
		{"a@selfname.example", 550, "5.4.6", -1},
		{"a@selfaddr.example", 550, "5.4.6", -1},
		// This relay is MX 20: only the better MX 10 is used.
		{"a@selfmid.example", 250, "", 0},
	} {
		before := make([]int, 3)
		for i, s := range servers {
			before[i] = len(s.Messages())
		}
		r := e.deliver(t, tc.rcpt)[0]
		if r.Code != tc.code || tc.enh != "" && r.Enhanced != tc.enh {
			t.Errorf("%s: %+v, want %d %s", tc.rcpt, r, tc.code, tc.enh)
		}
		for i, s := range servers {
			want := before[i]
			if i == tc.at {
				want++
			}
			if n := len(s.Messages()); n != want {
				t.Errorf("%s: server %d has %d messages, want %d", tc.rcpt, i, n, want)
			}
		}
	}
	// The deferral names the DNS failure; the null MX says what it is.
	if r := e.deliver(t, "a@servfail.example")[0]; !strings.Contains(r.Text, "MX lookup for servfail.example failed") {
		t.Errorf("servfail text %q", r.Text)
	}
	if r := e.deliver(t, "a@null.example")[0]; !strings.Contains(r.Text, "null MX") {
		t.Errorf("null MX text %q", r.Text)
	}
	if n := e.dns.Count("servfail.example.", dns.TypeA); n != 0 {
		t.Errorf("%d A lookups for a domain whose MX lookup failed", n)
	}
}

// Equal preferences are shuffled (RFC 5321 section 5.1): with a seeded
// generator, 200 messages to pair.example split roughly evenly.
func TestMXEqualPreferenceSpread(t *testing.T) {
	servers, port := startMXServers(t)
	e := newMXEnv(t, mxZone, port, func(o *Options) { o.Rand = rand.New(rand.NewPCG(4, 2)) })
	const n = 200
	for i := range n {
		if r := e.deliver(t, fmt.Sprintf("u%d@pair.example", i))[0]; r.Code != 250 {
			t.Fatalf("%+v", r)
		}
	}
	a, b := len(servers[0].Messages()), len(servers[1].Messages())
	if a+b != n {
		t.Fatalf("%d + %d messages, want %d", a, b, n)
	}
	// Binomial(200, 0.5): 100 +- 7; 70..130 is over 4 standard deviations.
	if a < 70 || b < 70 {
		t.Errorf("spread %d / %d over two MX 10 hosts", a, b)
	}
}

// An address that failed is tried last until the next retry
// (queue.min_backoff), so the next attempt starts elsewhere.
func TestMXFailedAddressTriedLast(t *testing.T) {
	servers, port := startMXServers(t)
	busy := servers[0]
	busy.On(smtptest.Greeting, smtptest.Reply("421 4.7.0 too busy"))
	e := newMXEnv(t, mxZone, port, func(o *Options) { o.Rand = rand.New(rand.NewPCG(1, 1)) })
	clk := newFakeClock()
	e.d.now = clk.Now
	for i := range 20 {
		if r := e.deliver(t, fmt.Sprintf("u%d@pair.example", i))[0]; r.Code != 250 || !strings.HasPrefix(r.Relay, "b.pair.example") {
			t.Fatalf("%+v", r)
		}
	}
	if n := busy.Conns(); n != 1 {
		t.Errorf("the failing MX 10 host was connected %d times in 20 deliveries, want 1", n)
	}
	// After min_backoff it is back in the shuffle.
	clk.Advance(e.d.lim.failedFor)
	for i := range 20 {
		e.deliver(t, fmt.Sprintf("v%d@pair.example", i))
		clk.Advance(e.d.lim.failedFor)
	}
	if n := busy.Conns(); n < 5 {
		t.Errorf("the recovered window: %d connections to a.pair.example in 20 deliveries", n)
	}
}

// Recipients of one destination share transactions of at most
// max_rcpts_per_transaction.
func TestMXRecipientsPerTransaction(t *testing.T) {
	servers, port := startMXServers(t)
	e := newMXEnv(t, mxZone, port, func(o *Options) { o.MaxRcptsPerTransaction = 2 })
	var rcpts []string
	for i := range 5 {
		rcpts = append(rcpts, fmt.Sprintf("u%d@example.org", i))
	}
	rs := e.deliver(t, rcpts...)
	for _, r := range rs {
		if r.Code != 250 {
			t.Errorf("%+v", r)
		}
	}
	msgs := servers[0].Messages()
	if len(rs) != 5 || len(msgs) != 3 || len(msgs[0].Rcpts) != 2 || len(msgs[1].Rcpts) != 2 || len(msgs[2].Rcpts) != 1 {
		t.Errorf("%d results, %d transactions: %+v", len(rs), len(msgs), msgs)
	}
	if servers[0].Conns() != 1 {
		t.Errorf("%d connections, want 1 (reused)", servers[0].Conns())
	}
}

// Outbound connections are bound to delivery.source_address.
func TestSourceAddress(t *testing.T) {
	hop := startServer(t, "127.0.0.6:0")
	d := New(testOptions(func(o *Options) {
		o.Routes = map[string]string{"relay.test": hop.Addr()}
		o.SourceAddress = net.ParseIP("127.0.0.7")
	}))
	defer d.Close()
	if r := d.Deliver(context.Background(), spooled(t, "s@src.test", "x\r\n", "a@relay.test"))[0]; r.Code != 250 {
		t.Fatalf("%+v", r)
	}
	var from []string
	for _, r := range hop.Remotes() {
		ip, _, _ := net.SplitHostPort(r)
		from = append(from, ip)
	}
	if len(from) != 1 || from[0] != "127.0.0.7" {
		t.Errorf("connections from %v, want 127.0.0.7", from)
	}
}

// Every result says how its next hop was chosen (queue.Result.Class, the
// metrics' destination class): a [routes] entry, the MX walk (also when it
// fails), or none.
func TestDestinationClass(t *testing.T) {
	servers, port := startMXServers(t)
	e := newMXEnv(t, mxZone, port, func(o *Options) {
		o.Routes = map[string]string{"routed.example": servers[2].Addr()}
	})
	rs := e.deliver(t, "a@routed.example", "b@example.org", "c@null.example")
	got := map[string]string{}
	for _, r := range rs {
		got[r.Rcpt] = r.Class
	}
	want := map[string]string{"a@routed.example": ClassRoute, "b@example.org": ClassMX, "c@null.example": ClassMX}
	if !maps.Equal(got, want) {
		t.Errorf("classes %v, want %v (results %+v)", got, want, rs)
	}
	if m := servers[2].Messages(); len(m) != 1 || m[0].Rcpts[0] != "<a@routed.example>" {
		t.Errorf("route's server got %+v", m)
	}

	// Without a resolver, a domain without a route has no next hop.
	d := New(testOptions())
	t.Cleanup(func() { d.Close() })
	r := d.Deliver(context.Background(), spooled(t, "s@src.test", "x\r\n", "x@unrouted.example"))
	if len(r) != 1 || r[0].Class != "" || r[0].Code != 451 {
		t.Errorf("no route: %+v, want 451 without class", r)
	}
}
