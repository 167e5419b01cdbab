package verifycache_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxedge/mxedge/delivery"
	"github.com/mxedge/mxedge/internal/probedial"
	"github.com/mxedge/mxedge/policy"
	"github.com/mxedge/mxedge/queue"
	"github.com/mxedge/mxedge/smtpd"
	"github.com/mxedge/mxedge/verifycache"
)

// Stories at the MX listener: smtpd with a real Verifier in front of a
// fake backend, talked to over TCP as a sending MTA would.

var discard = slog.New(slog.DiscardHandler)

// startMX runs an MX listener for relay.test with v (nil: no verification)
// and returns its address and queue.
func startMX(t testing.TB, v policy.Verifier) (string, *queue.Queue) {
	t.Helper()
	q, err := queue.Open(t.TempDir(), queue.Options{Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	chain := (&policy.Chain{}).Add(policy.NewRelay([]string{"relay.test"}))
	if v != nil {
		chain.Add(&policy.Verify{V: v})
	}
	// The test backends tell local parts apart by case, so the listener
	// does too (else "Alice" after "alice" is the same recipient and not
	// verified again).
	// The error limits' sleep (1 s per reply after 10 errors) is off:
	// these stories are about verification, not timing.
	s := smtpd.New(smtpd.Options{Hostname: "mx1.relay.test", Logger: discard,
		CaseSensitive: map[string]bool{"relay.test": true}, ErrorSleep: -1}, q, chain)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.Shutdown(ctx)
		q.Close()
	})
	return ln.Addr().String(), q
}

// openVerifier opens a Verifier for relay.test routed to hop.
func openVerifier(t testing.TB, hop string, edit func(*verifycache.Options)) *verifycache.Verifier {
	t.Helper()
	o := verifycache.Options{
		ProbeSender:      "double-bounce@mx1.relay.test",
		Dialer:           probedial.Dialer(testDeliverer(t, hop)),
		Domains:          map[string]verifycache.Policy{"relay.test": {Mode: verifycache.ModeProbe}},
		NoSync:           true,
		MaintainEvery:    -1,
		CatchAllInterval: -1,
		Logger:           discard,
	}
	if edit != nil {
		edit(&o)
	}
	v, err := verifycache.Open(filepath.Join(t.TempDir(), verifycache.FileName), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

type smtpClient struct {
	t  testing.TB
	nc net.Conn
	tp *textproto.Conn
}

func dialMX(t testing.TB, addr string) *smtpClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &smtpClient{t: t, nc: nc, tp: textproto.NewConn(nc)}
	t.Cleanup(func() { c.tp.Close() })
	if r := c.read(); !strings.HasPrefix(r, "220") {
		t.Fatalf("greeting %q", r)
	}
	return c
}

// read returns one reply as "CODE TEXT", or "EOF" when the server closed
// the connection.
func (c *smtpClient) read() string {
	c.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	code, msg, err := c.tp.ReadResponse(0)
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return "EOF"
	}
	var pe textproto.ProtocolError
	if err != nil && !errors.As(err, &pe) && code == 0 {
		return "EOF: " + err.Error()
	}
	return fmt.Sprintf("%d %s", code, msg)
}

func (c *smtpClient) cmd(line string) string {
	if err := c.tp.PrintfLine("%s", line); err != nil {
		return "EOF: " + err.Error()
	}
	return c.read()
}

func (c *smtpClient) expect(line, want string) string {
	c.t.Helper()
	got := c.cmd(line)
	if !strings.HasPrefix(got, want) {
		c.t.Fatalf("%s: got %q, want %s", line, got, want)
	}
	return got
}

func TestRcptVerifiedAtTheListener(t *testing.T) {
	be := verifycache.StartBackend(t, "127.0.0.3:0", "alice", "bob")
	mx, _ := startMX(t, openVerifier(t, be.Addr(), nil))
	c := dialMX(t, mx)
	c.expect("EHLO sender.src.test", "250")
	c.expect("MAIL FROM:<someone@src.test>", "250")
	c.expect("RCPT TO:<alice@relay.test>", "250")
	got := c.expect("RCPT TO:<nobody@relay.test>", "550 5.1.1")
	if want := "550 5.1.1 <nobody@relay.test>: Recipient address rejected: undeliverable address: " +
		"550 5.1.1 <nobody@relay.test>: Recipient address rejected: User unknown in local recipient table"; got != want {
		t.Errorf("refusal\n got %q\nwant %q", got, want)
	}
	c.expect("RCPT TO:<victim@elsewhere.example>", "554 5.7.1") // relay check first: never probed
	// The local part's case is the backend's business (this one is
	// case-sensitive); the domain's is not.
	c.expect("RCPT TO:<Alice@RELAY.TEST>", "550 5.1.1 <Alice@relay.test>")
	c.expect("RCPT TO:<bob@RELAY.TEST>", "250")
	c.expect("DATA", "354")
	c.expect("Subject: hi\r\n\r\nbody\r\n.", "250 2.0.0 Ok: queued as ")
	c.expect("QUIT", "221")

	cmds := strings.Join(be.Commands(), "\n")
	for _, bad := range []string{"someone@src.test", "elsewhere.example", "DATA"} {
		if strings.Contains(cmds, bad) {
			t.Errorf("backend saw %q (senders and foreign domains are never probed, probes never send DATA):\n%s", bad, cmds)
		}
	}
	if !strings.Contains(cmds, "RCPT TO:<Alice@relay.test>") {
		t.Errorf("no probe of Alice@relay.test:\n%s", cmds)
	}

	// Second session: answered from the cache.
	n := len(be.Commands())
	c = dialMX(t, mx)
	c.expect("EHLO sender.src.test", "250")
	c.expect("MAIL FROM:<someone@src.test>", "250")
	c.expect("RCPT TO:<alice@relay.test>", "250")
	c.expect("RCPT TO:<nobody@relay.test>", "550 5.1.1")
	if len(be.Commands()) != n {
		t.Errorf("cache hits reached the backend: %q", be.Commands()[n:])
	}
}

func TestRcptBackendDown(t *testing.T) {
	be := verifycache.StartBackend(t, "127.0.0.3:0", "alice")
	addr := be.Addr()
	v := openVerifier(t, addr, nil)
	mx, q := startMX(t, v)
	c := dialMX(t, mx)
	c.expect("EHLO sender.src.test", "250")
	c.expect("MAIL FROM:<someone@src.test>", "250")
	c.expect("RCPT TO:<alice@relay.test>", "250")
	c.expect("RSET", "250")
	be.Close() // the backend goes down

	c.expect("MAIL FROM:<someone@src.test>", "250")
	c.expect("RCPT TO:<alice@relay.test>", "250") // known: accepted and queued
	got := c.expect("RCPT TO:<carol@relay.test>", "450 4.1.1")
	if got != "450 4.1.1 <carol@relay.test>: Recipient address rejected: unverified address: try again later" {
		t.Errorf("got %q", got)
	}
	c.expect("DATA", "354")
	c.expect("Subject: during the outage\r\n\r\nbody\r\n.", "250 2.0.0 Ok: queued as ")
	st, err := q.Stats()
	if err != nil || st.Messages != 1 || st.Pending != 1 {
		t.Errorf("queue: %+v, %v", st, err)
	}
}

// 500 random recipients from one client: from dictionary_disconnect on
// the rest of the transaction is deferred with 450 4.7.1 (no probes), and
// the session ends at the next MAIL, after dictionary_limit probes.
func TestRcptDictionaryAttack(t *testing.T) {
	be := verifycache.StartBackend(t, "127.0.0.3:0", "alice")
	mx, _ := startMX(t, openVerifier(t, be.Addr(), func(o *verifycache.Options) {
		o.DictLimit, o.DictDisconnect, o.DictDelay = 5, 10, 10*time.Millisecond
	}))
	c := dialMX(t, mx)
	c.expect("EHLO sender.src.test", "250")
	c.expect("MAIL FROM:<spammer@src.test>", "250")
	var replies []string
	// 15: below the session's hard error limit (20), which would cut
	// this session first (it has no accepted recipient to keep).
	for i := 0; i < 15; i++ {
		replies = append(replies, c.cmd(fmt.Sprintf("RCPT TO:<guess%03d@relay.test>", i)))
	}
	if !strings.HasPrefix(replies[4], "550") || !strings.HasPrefix(replies[5], "450 4.1.1") ||
		!strings.HasPrefix(replies[8], "450 4.1.1") {
		t.Fatalf("replies: %q", replies)
	}
	for i := 9; i < 15; i++ {
		if replies[i] != "450 4.7.1 Too many unknown recipients, try the rest later" {
			t.Fatalf("reply %d: %q", i+1, replies[i])
		}
	}
	if n := be.Count("RCPT TO:<guess"); n != 5 {
		t.Errorf("backend saw %d probes, want 5", n)
	}
	c.expect("RSET", "250")
	c.expect("MAIL FROM:<spammer@src.test>", "421 4.7.0")
	if r := c.cmd("NOOP"); !strings.HasPrefix(r, "EOF") {
		t.Errorf("connection still open after 421: %q", r)
	}
	// Reconnecting does not help, except for a known address.
	c = dialMX(t, mx)
	c.expect("EHLO sender.src.test", "250")
	c.expect("MAIL FROM:<spammer@src.test>", "250")
	c.expect("RCPT TO:<guess999@relay.test>", "450 4.7.1")
	c.expect("RCPT TO:<alice@relay.test>", "450 4.7.1") // the rest of the transaction
	c.expect("RSET", "250")
	c.expect("MAIL FROM:<spammer@src.test>", "421 4.7.0")
}

// Issue 16, section 1: a list server relays one message to 55
// recipients, most of them gone; alice (the 1st) and bob (the 15th)
// exist (both probed before dictionary_limit). The guard trips at the
// 45th unknown recipient: from there on the
// RCPTs are deferred (450 4.7.1, no probes), the message is queued for
// alice and bob, and only the next transaction is refused with 421.
func TestRcptGuardKeepsAcceptedRecipients(t *testing.T) {
	be := verifycache.StartBackend(t, "127.0.0.3:0", "alice", "bob")
	mx, q := startMX(t, openVerifier(t, be.Addr(), func(o *verifycache.Options) {
		o.DictLimit, o.DictDisconnect, o.DictDelay = 20, 45, -1
	}))
	c := dialMX(t, mx)
	c.expect("EHLO lists.src.test", "250")
	c.expect("MAIL FROM:<list-bounces@src.test>", "250")
	var rcpts []string
	for i := 1; i <= 55; i++ {
		switch i {
		case 1:
			rcpts = append(rcpts, "alice")
		case 15:
			rcpts = append(rcpts, "bob")
		default:
			rcpts = append(rcpts, fmt.Sprintf("gone%02d", i))
		}
	}
	codes := map[string]int{}
	for i, r := range rcpts {
		got := c.cmd("RCPT TO:<" + r + "@relay.test>")
		code := got[:min(len(got), 9)]
		codes[code]++
		switch {
		case r == "alice" || r == "bob":
			if !strings.HasPrefix(got, "250") {
				t.Fatalf("RCPT %d (%s): %q", i+1, r, got)
			}
		case i+1 >= 47: // the 45th unknown recipient is the 47th RCPT
			if got != "450 4.7.1 Too many unknown recipients, try the rest later" {
				t.Fatalf("RCPT %d (%s): %q", i+1, r, got)
			}
		case strings.HasPrefix(got, "421") || got == "EOF":
			t.Fatalf("RCPT %d (%s): %q: the accepted recipients are lost", i+1, r, got)
		}
	}
	if codes["250 2.0.0"]+codes["250 2.1.5"] != 2 || codes["450 4.7.1"] != 9 {
		t.Errorf("reply codes: %v", codes)
	}
	c.expect("DATA", "354")
	c.expect("Subject: list mail\r\n\r\nbody\r\n.", "250 2.0.0 Ok: queued as ")
	c.expect("MAIL FROM:<list-bounces@src.test>", "421 4.7.0")
	if r := c.cmd("NOOP"); !strings.HasPrefix(r, "EOF") {
		t.Errorf("connection still open after 421: %q", r)
	}
	var got []string
	if err := q.List(queue.Filter{}, func(env *queue.Envelope) error {
		for _, r := range env.Rcpts {
			got = append(got, r.Addr)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "alice@relay.test,bob@relay.test" {
		t.Errorf("queued for %q, want alice and bob", got)
	}
	if n := be.Count("RCPT TO:<gone"); n != 20 {
		t.Errorf("backend saw %d probes of unknown recipients, want 20 (dictionary_limit)", n)
	}
}

// verifierFunc is a Verifier from a function.
type verifierFunc func(ctx context.Context, ip, addr string) verifycache.Verdict

func (f verifierFunc) Verify(ctx context.Context, ip, addr string) verifycache.Verdict {
	return f(ctx, ip, addr)
}

// The listener hands the verifier the address as Normalize writes it, and
// an internal error is a 451, never a 5xx.
func TestRcptAddressFormAndInternalError(t *testing.T) {
	var mu sync.Mutex
	var got []string
	mx, _ := startMX(t, verifierFunc(func(_ context.Context, ip, addr string) verifycache.Verdict {
		mu.Lock()
		got = append(got, addr)
		mu.Unlock()
		if strings.HasPrefix(addr, "broken") {
			return verifycache.Verdict{Action: verifycache.Defer, Err: errors.New("disk on fire")}
		}
		return verifycache.Verdict{Action: verifycache.Accept}
	}))
	c := dialMX(t, mx)
	c.expect("EHLO sender.src.test", "250")
	c.expect("MAIL FROM:<someone@src.test>", "250")
	inputs := []string{"Alice@RELAY.Test", `"john doe"@relay.test`, `"plain"@relay.test`, "x.y+z@Relay.Test"}
	for _, in := range inputs {
		c.expect("RCPT TO:<"+in+">", "250")
	}
	if r := c.expect("RCPT TO:<broken@relay.test>", "451"); r != "451 4.3.0 Temporary local problem, try again later" {
		t.Errorf("internal error: %q", r)
	}
	c.expect("RCPT TO:<alice@relay.test>", "250")
	c.expect("RCPT TO:<alice@relay.test>", "250") // a duplicate is not verified again
	mu.Lock()
	defer mu.Unlock()
	for i, in := range inputs {
		want, _ := verifycache.Normalize(in)
		if got[i] != want {
			t.Errorf("RCPT TO:<%s>: verifier got %q, Normalize gives %q", in, got[i], want)
		}
	}
	if len(got) != len(inputs)+2 {
		t.Errorf("verifier calls: %q", got)
	}
}

// BenchmarkRcptRoundTrip measures one RCPT TO over TCP, verification off
// and on (a cache hit), reported as rcpt-ns/op; ns/op is MAIL + RCPT +
// RSET.
func BenchmarkRcptRoundTrip(b *testing.B) {
	be := verifycache.StartBackend(b, "127.0.0.3:0", "alice")
	for _, tc := range []struct {
		name string
		v    policy.Verifier
	}{
		{"off", nil},
		{"on", openVerifier(b, be.Addr(), nil)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			mx, _ := startMX(b, tc.v)
			c := dialMX(b, mx)
			c.expect("EHLO bench.test", "250")
			c.expect("MAIL FROM:<s@src.test>", "250")
			c.expect("RCPT TO:<alice@relay.test>", "250") // warms the cache
			c.expect("RSET", "250")
			var rcpt time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c.expect("MAIL FROM:<s@src.test>", "250")
				t0 := time.Now()
				c.expect("RCPT TO:<alice@relay.test>", "250")
				rcpt += time.Since(t0)
				c.expect("RSET", "250")
			}
			b.ReportMetric(float64(rcpt.Nanoseconds())/float64(b.N), "rcpt-ns/op")
		})
	}
	if n := be.Count("RCPT TO:"); n != 1 {
		b.Errorf("%d probes, want 1", n)
	}
}

// testDeliverer is delivery's client layer routing relay.test to hop, as
// the relay's probes use it; closed when the test ends.
func testDeliverer(t testing.TB, hop string) *delivery.Deliverer {
	d := delivery.New(delivery.Options{Hostname: "mx1.relay.test", Routes: map[string]string{"relay.test": hop},
		ConnectTimeout: 2 * time.Second, ReplyTimeout: 5 * time.Second, Logger: discard})
	t.Cleanup(func() { d.Close() })
	return d
}

// Issue 16, section 6: probes over a reused connection stay under common
// servers' non-mail command limits (Exim's smtp_accept_max_nonmail, 10,
// counts RSET and drops the connection with 554): at most 5 probes per
// connection, then QUIT and a new connection. RCPTs one after the other
// fill each connection to that cap, the domain's catch-all test (after
// the first probe) included: 12 recipients take 3 connections either way.
func TestProbesPerConnectionBounded(t *testing.T) {
	for _, tc := range []struct {
		name     string
		catchAll time.Duration // CatchAllInterval
		want     []int         // RCPTs per connection
	}{
		{"catch-all test off", -1, []int{5, 5, 2}},
		{"catch-all test on", 24 * time.Hour, []int{5, 5, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			users := []string{}
			for i := 0; i < 12; i++ {
				users = append(users, fmt.Sprintf("user%02d", i))
			}
			be := verifycache.StartBackend(t, "127.0.0.3:0", users...)
			v := openVerifier(t, be.Addr(), func(o *verifycache.Options) { o.CatchAllInterval = tc.catchAll })
			for _, u := range users {
				if vd := v.Verify(context.Background(), "192.0.2.1", u+"@relay.test"); vd.Action != verifycache.Accept {
					t.Fatalf("%s: %+v", u, vd)
				}
			}
			if err := be.WaitCount("QUIT", 2, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			rcpts, nonmail := map[int]int{}, map[int]int{}
			for _, l := range be.Transcript() {
				if !l.Client {
					if strings.HasPrefix(l.Text, "554") {
						t.Errorf("connection %d: %q", l.Conn, l.Text)
					}
					continue
				}
				switch {
				case strings.HasPrefix(l.Text, "RCPT"):
					rcpts[l.Conn]++
				case strings.HasPrefix(l.Text, "EHLO"), strings.HasPrefix(l.Text, "HELO"),
					strings.HasPrefix(l.Text, "RSET"), strings.HasPrefix(l.Text, "NOOP"):
					nonmail[l.Conn]++
				}
			}
			got := []int{}
			for c := 1; c <= be.Conns(); c++ {
				got = append(got, rcpts[c])
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("probes per connection %v, want %v", got, tc.want)
			}
			for c, n := range nonmail {
				if n > 5 {
					t.Errorf("connection %d: %d non-mail commands", c, n)
				}
			}
		})
	}
}

// Issue 16, section 4: the probes learn whether the backend supports
// SMTPUTF8. A UTF-8 recipient of a message with SMTPUTF8 is refused at
// RCPT (553 5.6.7) when it does not, instead of accepted and bounced; an
// ASCII recipient of the same message is accepted (delivery sends it
// without SMTPUTF8). A backend with SMTPUTF8 takes both.
func TestRcptSMTPUTF8NeedsBackendSupport(t *testing.T) {
	for _, tc := range []struct {
		name string
		ext  []string
		want string
	}{
		{"backend without SMTPUTF8", []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"}, "553 5.6.7"},
		{"backend with SMTPUTF8", []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"}, "250"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := verifycache.StartBackend(t, "127.0.0.3:0", "alice", "jörg")
			be.SetExtensions(tc.ext...)
			mx, _ := startMX(t, openVerifier(t, be.Addr(), nil))
			c := dialMX(t, mx)
			c.expect("EHLO sender.src.test", "250")
			c.expect("MAIL FROM:<someone@src.test> SMTPUTF8", "250")
			c.expect("RCPT TO:<alice@relay.test>", "250")
			got := c.expect("RCPT TO:<jörg@relay.test>", tc.want)
			if tc.want == "553 5.6.7" && !strings.Contains(got, "does not support SMTPUTF8") {
				t.Errorf("refusal %q", got)
			}
			c.expect("RSET", "250")
			// Without SMTPUTF8 the UTF-8 address is refused by syntax
			// already; with it and an ASCII envelope nothing is needed.
			c.expect("MAIL FROM:<someone@src.test>", "250")
			c.expect("RCPT TO:<alice@relay.test>", "250")
		})
	}
}
