package verifycache

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mxedge/mxedge/internal/smtptest"
)

const day = 24 * time.Hour

type testEnv struct {
	v      *Verifier
	be     *smtptest.Server
	clock  *fakeClock
	router *switchDialer
	log    *syncBuffer
	path   string
}

// newEnv opens a verifier for relay.test routed to a fake backend that
// knows alice and bob, with a fake clock and no background pass.
func newEnv(t *testing.T, edit func(*Options)) *testEnv {
	t.Helper()
	e := &testEnv{
		be:    StartBackend(t, "127.0.0.3:0", "alice", "bob"),
		clock: newFakeClock(),
		log:   &syncBuffer{},
		path:  filepath.Join(t.TempDir(), FileName),
	}
	e.router = &switchDialer{t: t}
	e.router.set(e.be.Addr())
	o := Options{
		ProbeSender:   "probe@relay-check.test",
		Dialer:        e.router,
		Domains:       map[string]Policy{"relay.test": {Mode: ModeProbe}},
		Now:           e.clock.Now,
		NoSync:        true,
		MaintainEvery: -1,
		// Off but where tested: a catch-all probe would add to the
		// backend's transcript.
		CatchAllInterval: -1,
		Logger:           slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(&o)
	}
	v, err := Open(e.path, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	e.v = v
	return e
}

func (e *testEnv) verify(t *testing.T, addr string) Verdict {
	t.Helper()
	return e.verifyFrom(t, "192.0.2.1", addr)
}

func (e *testEnv) verifyFrom(t *testing.T, ip, addr string) Verdict {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return e.v.Verify(ctx, ip, addr)
}

func (e *testEnv) want(t *testing.T, addr string, action Action, source string) Verdict {
	t.Helper()
	vd := e.verify(t, addr)
	if vd.Action != action || vd.Source != source {
		t.Fatalf("Verify(%s) = %+v; want %v from %s\nlog:\n%s", addr, vd, action, source, e.log.String())
	}
	return vd
}

// settle waits until no probe of addr is in flight (a background refresh).
func (e *testEnv) settle(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.v.flight.inFlight(addr) {
		if time.Now().After(deadline) {
			t.Fatalf("probe of %s still in flight", addr)
		}
		time.Sleep(time.Millisecond)
	}
}

func (e *testEnv) entry(t *testing.T, addr string) Entry {
	t.Helper()
	en, ok, err := e.v.store.get(addr)
	if err != nil || !ok {
		t.Fatalf("no entry for %s: %v", addr, err)
	}
	return en
}

// Known user accepted, unknown refused with the backend's reason, and the
// second RCPT of each answered from the cache: the backend sees no second
// probe.
func TestKnownUnknownAndCache(t *testing.T) {
	e := newEnv(t, nil)
	e.want(t, "alice@relay.test", Accept, "probe")
	vd := e.want(t, "nobody@relay.test", Reject, "probe")
	if want := "550 5.1.1 <nobody@relay.test>: Recipient address rejected: User unknown in local recipient table"; vd.Reply != want {
		t.Errorf("reply %q, want the backend's %q", vd.Reply, want)
	}
	before := len(e.be.Commands())
	e.want(t, "alice@relay.test", Accept, "cache")
	vd = e.want(t, "nobody@relay.test", Reject, "cache")
	if !strings.Contains(vd.Reply, "User unknown in local recipient table") {
		t.Errorf("cached refusal lost the backend's reason: %q", vd.Reply)
	}
	if after := e.be.Commands(); len(after) != before {
		t.Errorf("cache hits reached the backend: %q", after[before:])
	}
	if n := e.be.Count("RCPT TO:"); n != 2 {
		t.Errorf("%d probes, want 2", n)
	}
	st, err := e.v.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Lookups != 4 || st.Hits != 2 || st.Misses != 2 || st.HitRate != 0.5 || st.Probes != 2 ||
		st.Entries["exists"] != 1 || st.Entries["unknown"] != 1 {
		t.Errorf("stats %+v", st)
	}
	// One log line per probe: address, route, result, reply, latency.
	for _, want := range []string{
		`msg="verify probe" to=<alice@relay.test> route=` + e.be.Addr() + ` result=exists reply="250 2.1.5 Ok" latency=`,
		`msg="verify probe" to=<nobody@relay.test> route=` + e.be.Addr() + ` result=unknown reply="550 5.1.1 <nobody@relay.test>`,
	} {
		if !strings.Contains(e.log.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, e.log.String())
		}
	}
}

// The probe: EHLO with our hostname, MAIL FROM the probe sender, RCPT;
// the connection goes back to delivery's cache, whose RSET (and EHLO)
// before the next use ends the transaction; never DATA; the local part's
// case is kept.
func TestProbeDialogue(t *testing.T) {
	e := newEnv(t, nil)
	e.be.SetUsers("alice", "Bob")
	e.want(t, "alice@relay.test", Accept, "probe")
	e.want(t, "Bob@relay.test", Accept, "probe")
	e.want(t, "bob@relay.test", Reject, "probe") // the backend is case-sensitive here; so are we
	want := []string{
		"EHLO mx1.relay.test",
		"MAIL FROM:<probe@relay-check.test> BODY=8BITMIME", "RCPT TO:<alice@relay.test>", "RSET",
		"MAIL FROM:<probe@relay-check.test> BODY=8BITMIME", "RCPT TO:<Bob@relay.test>", "RSET",
		"MAIL FROM:<probe@relay-check.test> BODY=8BITMIME", "RCPT TO:<bob@relay.test>",
	}
	if got := e.be.Commands(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("backend transcript:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := e.be.Conns(); n != 1 {
		t.Errorf("%d connections, want 1 (RSET and reuse)", n)
	}
	e.v.Close()
	e.router.d.Close() // the connection cache is delivery's
	if cmds := e.be.Commands(); cmds[len(cmds)-1] != "QUIT" {
		t.Errorf("Close did not QUIT the idle connection: %q", cmds)
	}

	// The null sender.
	e = newEnv(t, func(o *Options) { o.ProbeSender = "" })
	e.want(t, "alice@relay.test", Accept, "probe")
	if n := e.be.Count("MAIL FROM:<> "); n != 1 {
		t.Errorf("null sender: %q", e.be.Commands())
	}
	for _, c := range e.be.Commands() {
		if strings.HasPrefix(strings.ToUpper(c), "DATA") {
			t.Errorf("a probe sent DATA: %q", e.be.Commands())
		}
	}
}

// A connection the backend closed while idle is replaced without the
// probe failing.
func TestStaleIdleConnection(t *testing.T) {
	e := newEnv(t, nil)
	e.want(t, "alice@relay.test", Accept, "probe")
	e.be.CloseIdle("")
	e.want(t, "bob@relay.test", Accept, "probe")
	if n := e.be.Conns(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

// Operator's story with a fake clock: a known user is accepted for 30
// days after the last successful probe even while the backend is down (a
// refresh is tried in the background after day 7 and fails without harm),
// and not at day 31.
func TestPositiveLifetimeBackendDown(t *testing.T) {
	e := newEnv(t, nil)
	e.want(t, "alice@relay.test", Accept, "probe")
	verified := e.clock.Now()

	e.clock.Advance(1 * day)
	e.want(t, "alice@relay.test", Accept, "cache")
	if n := e.be.Count("RCPT TO:"); n != 1 {
		t.Fatalf("day 1: %d probes, want 1 (no refresh before day 7)", n)
	}

	e.router.set(deadAddr(t)) // the backend goes down
	e.clock.Advance(7 * day)  // day 8
	e.want(t, "alice@relay.test", Accept, "cache")
	e.settle(t, "alice@relay.test")
	en := e.entry(t, "alice@relay.test")
	if en.State != StateExists || !en.Verified.Equal(verified) || !en.LastProbe.Equal(e.clock.Now()) ||
		!strings.HasPrefix(en.LastResult, "tempfail: connect to") {
		t.Errorf("after a failed refresh: %+v", en)
	}

	e.clock.Advance(21 * day) // day 29
	e.want(t, "alice@relay.test", Accept, "cache")
	e.settle(t, "alice@relay.test")

	e.clock.Advance(2 * day) // day 31: expired; the backend is still down
	vd := e.want(t, "alice@relay.test", Defer, "probe")
	if !strings.HasPrefix(vd.Reply, "connect to") {
		t.Errorf("day 31: %+v", vd)
	}
	// The temporary failure is held: no new probe for a minute.
	e.want(t, "alice@relay.test", Defer, "cache")
	e.clock.Advance(61 * time.Second)
	e.router.set(e.be.Addr()) // back up
	e.want(t, "alice@relay.test", Accept, "probe")
}

// A refresh after day 7 runs in the background and restarts the 30 days.
func TestPositiveRefreshedInBackground(t *testing.T) {
	e := newEnv(t, nil)
	e.want(t, "alice@relay.test", Accept, "probe")
	e.clock.Advance(6 * day)
	e.want(t, "alice@relay.test", Accept, "cache")
	e.settle(t, "alice@relay.test")
	if n := e.be.Count("RCPT TO:"); n != 1 {
		t.Fatalf("refreshed before day 7: %d probes", n)
	}
	e.clock.Advance(2 * day)            // day 8
	release := e.be.Hold(smtptest.Rcpt) // the refresh blocks at the backend...
	start := time.Now()
	e.want(t, "alice@relay.test", Accept, "cache") // ...the RCPT does not wait for it
	if d := time.Since(start); d > time.Second {
		t.Errorf("RCPT waited %v for the refresh", d)
	}
	release()
	e.settle(t, "alice@relay.test")
	en := e.entry(t, "alice@relay.test")
	if !en.Verified.Equal(e.clock.Now()) || !en.Expires.Equal(e.clock.Now().Add(30*day)) {
		t.Errorf("refresh did not renew the entry: %+v", en)
	}
	e.clock.Advance(25 * day) // day 33: valid thanks to the refresh
	e.want(t, "alice@relay.test", Accept, "cache")
	st, _ := e.v.Stats()
	if st.Refreshes < 2 {
		t.Errorf("refreshes = %d", st.Refreshes)
	}
}

// A refresh answered with a 5xx does not turn a known user away (only
// forget does); the operator gets a warning.
func TestFailedRefreshKeepsPositive(t *testing.T) {
	e := newEnv(t, nil)
	e.want(t, "alice@relay.test", Accept, "probe")
	e.be.SetUsers("bob") // alice deleted, or a misconfigured backend
	e.clock.Advance(8 * day)
	e.want(t, "alice@relay.test", Accept, "cache")
	e.settle(t, "alice@relay.test")
	en := e.entry(t, "alice@relay.test")
	if en.State != StateExists || !strings.HasPrefix(en.LastResult, "unknown: 550 5.1.1") {
		t.Errorf("entry after a 5xx refresh: %+v", en)
	}
	if !strings.Contains(e.log.String(), `level=WARN msg="verify: refresh failed, known address kept" to=<alice@relay.test>`) {
		t.Errorf("no warning:\n%s", e.log.String())
	}
	// A refresh is not retried on every RCPT.
	e.want(t, "alice@relay.test", Accept, "cache")
	e.settle(t, "alice@relay.test")
	if n := e.be.Count("RCPT TO:"); n != 2 {
		t.Errorf("%d probes, want 2", n)
	}
	// An admin probe does not drop it either, and says so.
	rep, err := e.v.Probe(context.Background(), "alice@relay.test")
	if err != nil || rep.Result != ResultUnknown || !rep.Kept || rep.Cached == nil || rep.Cached.State != StateExists {
		t.Errorf("admin probe: %+v, %v", rep, err)
	}
	if _, err := e.v.Forget("alice@relay.test"); err != nil {
		t.Fatal(err)
	}
	e.want(t, "alice@relay.test", Reject, "probe")
}

// An unknown address is refused from the cache for 3 hours, then probed
// again (a new mailbox works within hours).
func TestNegativeReprobedAfterTTL(t *testing.T) {
	e := newEnv(t, nil)
	e.want(t, "carol@relay.test", Reject, "probe")
	e.clock.Advance(3*time.Hour - time.Second)
	e.want(t, "carol@relay.test", Reject, "cache")
	e.be.SetUsers("alice", "bob", "carol") // the mailbox is created
	e.clock.Advance(2 * time.Second)
	e.want(t, "carol@relay.test", Accept, "probe")
	if n := e.be.Count("RCPT TO:<carol@relay.test>"); n != 2 {
		t.Errorf("%d probes of carol, want 2", n)
	}
}

// 50 concurrent RCPTs of one new address share one probe.
func TestConcurrentLookupsShareOneProbe(t *testing.T) {
	e := newEnv(t, nil)
	release := e.be.Hold(smtptest.Rcpt)
	const n = 50
	var wg sync.WaitGroup
	verdicts := make(chan Verdict, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			verdicts <- e.verifyFrom(t, fmt.Sprintf("192.0.2.%d", i+1), "alice@relay.test")
		}()
	}
	if err := e.be.WaitHeld(1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.v.stats.coalesced.Load() < n-1 {
		if time.Now().After(deadline) {
			t.Fatalf("waiting at backend %d, coalesced %d", e.be.Held(), e.v.stats.coalesced.Load())
		}
		time.Sleep(time.Millisecond)
	}
	release()
	wg.Wait()
	close(verdicts)
	for vd := range verdicts {
		if vd.Action != Accept {
			t.Errorf("verdict %+v", vd)
		}
	}
	if got := e.be.Count("RCPT TO:"); got != 1 {
		t.Errorf("%d probes, want exactly 1", got)
	}
}

// A probe slower than inline_wait: the RCPT gets 450, the probe goes on
// and its answer serves the sender's retry.
func TestInlineWaitBound(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.InlineWait = 100 * time.Millisecond })
	release := e.be.Hold(smtptest.Rcpt)
	start := time.Now()
	vd := e.want(t, "alice@relay.test", Defer, "probe")
	if d := time.Since(start); d < 100*time.Millisecond || d > 2*time.Second {
		t.Errorf("waited %v", d)
	}
	if vd.Reply != "probe still running" {
		t.Errorf("reply %q", vd.Reply)
	}
	release()
	e.settle(t, "alice@relay.test")
	e.want(t, "alice@relay.test", Accept, "cache")
}

// What the next hop says besides 2xx and 5xx to RCPT is temporary, and a
// refusal of the probe itself (the sender, a protocol error) never makes
// an address unknown.
func TestTemporaryOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(e *testEnv)
		reply   string
		refused bool
	}{
		{"4xx to RCPT", func(e *testEnv) { e.be.On(smtptest.Rcpt, smtptest.Reply("451 4.3.0 try later")) }, "451 4.3.0 try later", false},
		{"5xx to MAIL", func(e *testEnv) {
			e.be.On(smtptest.Mail, smtptest.Reply("553 5.7.1 <probe@relay-check.test>: Sender address rejected"))
		},
			"553 5.7.1 <probe@relay-check.test>: Sender address rejected", true},
		{"5.5.x to RCPT", func(e *testEnv) { e.be.On(smtptest.Rcpt, smtptest.Reply("555 5.5.4 unsupported parameter")) }, "555 5.5.4 unsupported parameter", true},
		{"connection refused", func(e *testEnv) { e.router.set(deadAddr(t)) }, "connect to 127.0.0.1:", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			tc.setup(e)
			vd := e.want(t, "alice@relay.test", Defer, "probe")
			if !strings.HasPrefix(vd.Reply, tc.reply) {
				t.Errorf("reply %q, want %q", vd.Reply, tc.reply)
			}
			if _, ok, _ := e.v.store.get("alice@relay.test"); ok {
				t.Error("a temporary failure was stored in verify.db")
			}
			if got := strings.Contains(e.log.String(), "level=WARN msg=\"verify probe refused by the next hop"); got != tc.refused {
				t.Errorf("refused warning logged: %v, want %v\n%s", got, tc.refused, e.log.String())
			}
		})
	}
}

// Several next hops (as MX routing will return): an unreachable one is
// skipped, the first reply to RCPT decides.
func TestNextHopWalk(t *testing.T) {
	e := newEnv(t, nil)
	e.router.set(deadAddr(t), e.be.Addr())
	e.want(t, "alice@relay.test", Accept, "probe")
	if en := e.entry(t, "alice@relay.test"); en.Route != e.be.Addr() {
		t.Errorf("route %q", en.Route)
	}
}

// Probes per next hop are limited in concurrency.
func TestProbeConcurrencyLimit(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Concurrency = 2 })
	e.be.CatchAll()
	release := e.be.Hold(smtptest.Rcpt)
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); e.verify(t, fmt.Sprintf("user%d@relay.test", i)) }()
	}
	if err := e.be.WaitHeld(2, 5*time.Second); err != nil {
		t.Error(err)
	}
	time.Sleep(100 * time.Millisecond) // a third probe would arrive meanwhile
	if n := e.be.Held(); n != 2 {
		t.Errorf("%d probes at the backend at once, want 2", n)
	}
	release()
	wg.Wait()
	if n := e.be.Count("RCPT TO:"); n != 6 {
		t.Errorf("%d probes, want 6", n)
	}
}

func TestProbeRateLimit(t *testing.T) {
	l := newLimiter(100, 10) // 10 per second, burst 10
	start := time.Now()
	for i := 0; i < 15; i++ {
		release, err := l.acquire(context.Background(), "hop")
		if err != nil {
			t.Fatal(err)
		}
		release()
	}
	// 10 at once, then 5 at 100 ms intervals.
	if d := time.Since(start); d < 400*time.Millisecond || d > 2*time.Second {
		t.Errorf("15 probes at 10/s (burst 10) took %v, want about 500ms", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	for i := 0; i < 20; i++ {
		if _, err := l.acquire(ctx, "other"); err != nil {
			return // the pace outlasted the context
		}
	}
	t.Error("no wait beyond the burst")
}

// A client sending random recipients is cut off, and the backend sees at
// most dictionary_limit probes.
func TestDictionaryAttack(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.DictLimit, o.DictDisconnect, o.DictDelay = 20, 50, time.Millisecond
	})
	e.want(t, "alice@relay.test", Accept, "probe") // known before the attack
	var first Verdict
	n := 0
	for i := 0; i < 500; i++ {
		vd := e.verifyFrom(t, "203.0.113.9", fmt.Sprintf("rnd%04d@relay.test", i))
		n++
		if i == 25 {
			first = vd
		}
		if vd.Action == Disconnect {
			break
		}
	}
	if n != 50 {
		t.Errorf("disconnected after %d recipients, want 50", n)
	}
	if first.Action != Defer || first.Source != "dictionary" || first.Delay != time.Millisecond {
		t.Errorf("verdict past the limit: %+v", first)
	}
	if p := e.be.Count("RCPT TO:<rnd"); p != 20 {
		t.Errorf("backend saw %d probes, want 20", p)
	}
	// Still cut off: unknown or new addresses get 421 at once...
	if vd := e.verifyFrom(t, "203.0.113.9", "another@relay.test"); vd.Action != Disconnect {
		t.Errorf("cut-off client: %+v", vd)
	}
	// ...but mail to a known user goes through, and other clients are not
	// affected.
	e.want(t, "alice@relay.test", Accept, "cache")
	if vd := e.verifyFrom(t, "203.0.113.9", "alice@relay.test"); vd.Action != Accept {
		t.Errorf("known user from the cut-off client: %+v", vd)
	}
	e.want(t, "bob@relay.test", Accept, "probe")
	// The window ends.
	e.clock.Advance(time.Hour)
	if vd := e.verifyFrom(t, "203.0.113.9", "carol@relay.test"); vd.Action != Reject || vd.Source != "probe" {
		t.Errorf("after the window: %+v", vd)
	}
	st, _ := e.v.Stats()
	if st.DictionaryDeferred != 31 || st.DictionaryDisconnects != 2 {
		t.Errorf("stats: deferred %d, disconnects %d", st.DictionaryDeferred, st.DictionaryDisconnects)
	}
}

// A backend that accepts any address is found out and reported: the
// first test right after the domain's first probe, then every interval.
func TestCatchAllDetected(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.CatchAllInterval = day })
	e.v.Maintain(context.Background())
	if n := e.be.Conns(); n != 0 {
		t.Fatalf("a domain nobody asked for was tested (%d connections)", n)
	}
	e.want(t, "alice@relay.test", Accept, "probe")
	check := func() *DomainCheck {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			st, _ := e.v.Stats()
			if c := st.Domains[0].CatchAll; c != nil {
				return c
			}
			if time.Now().After(deadline) {
				t.Fatal("no catch-all test after the first probe")
			}
			time.Sleep(time.Millisecond)
		}
	}
	if c := check(); c.CatchAll || c.Checked.IsZero() || !strings.HasPrefix(c.Reply, "550 5.1.1") {
		t.Fatalf("honest backend: %+v", c)
	}
	e.be.CatchAll()
	e.v.Maintain(context.Background()) // not due yet
	if st, _ := e.v.Stats(); len(st.CatchAll) != 0 {
		t.Fatal("tested again before the interval")
	}
	e.clock.Advance(day)
	e.v.Maintain(context.Background())
	st, _ := e.v.Stats()
	if len(st.CatchAll) != 1 || st.CatchAll[0] != "relay.test" || !strings.HasPrefix(st.Domains[0].CatchAll.Probe, "mxedge-nx-") {
		t.Errorf("catch-all not reported: %+v %+v", st.CatchAll, st.Domains[0].CatchAll)
	}
	if !strings.Contains(e.log.String(), `level=WARN msg="verify: catch-all next hop`) {
		t.Errorf("no warning:\n%s", e.log.String())
	}
	if _, ok, _ := e.v.store.get(st.Domains[0].CatchAll.Probe); ok {
		t.Error("the catch-all probe was cached")
	}
	// Known across a restart.
	e.v.Close()
	v, err := Open(e.path, Options{Domains: map[string]Policy{"relay.test": {Mode: ModeProbe}}, Now: e.clock.Now, MaintainEvery: -1, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if st, _ := v.Stats(); len(st.CatchAll) != 1 {
		t.Errorf("after restart: %+v", st.CatchAll)
	}
}

func TestCleanupDeletesExpired(t *testing.T) {
	e := newEnv(t, nil)
	e.want(t, "alice@relay.test", Accept, "probe")
	e.want(t, "nobody@relay.test", Reject, "probe")
	e.clock.Advance(4 * time.Hour)
	if n, err := e.v.Cleanup(); n != 1 || err != nil {
		t.Errorf("cleanup at +4h: %d, %v; want the negative entry", n, err)
	}
	e.clock.Advance(30 * day)
	st, _ := e.v.Stats()
	if st.Entries["expired"] != 1 {
		t.Errorf("entries %+v", st.Entries)
	}
	e.v.Maintain(context.Background())
	st, _ = e.v.Stats()
	if st.Entries["expired"] != 0 || st.Entries["exists"] != 0 {
		t.Errorf("after Maintain: %+v", st.Entries)
	}
}

func TestCleanupInChunks(t *testing.T) {
	e := newEnv(t, nil)
	now := e.clock.Now()
	err := e.v.store.db.Update(func(tx *bolt.Tx) error {
		for i := 0; i < 2*cleanupChunk+5; i++ {
			ttl := time.Hour
			if i%2 == 0 {
				ttl = -time.Hour
			}
			en := Entry{State: StateExists, Verified: now, Expires: now.Add(ttl), LastProbe: now}
			if err := tx.Bucket(bucketEntries).Put([]byte(fmt.Sprintf("u%06d@relay.test", i)), en.encode()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := e.v.Cleanup()
	if err != nil || n != cleanupChunk+3 {
		t.Errorf("deleted %d, %v; want %d", n, err, cleanupChunk+3)
	}
}

func TestAdmin(t *testing.T) {
	e := newEnv(t, nil)
	l, err := e.v.Show("Alice@RELAY.test")
	if err != nil || l.Addr != "Alice@relay.test" || l.Answer != "probe" || l.Entry != nil || l.Mode != ModeProbe {
		t.Errorf("Show before a probe: %+v, %v", l, err)
	}
	rep, err := e.v.Probe(context.Background(), "<alice@Relay.Test>")
	if err != nil || rep.Result != ResultExists || rep.Cached == nil || rep.Cached.State != StateExists {
		t.Fatalf("Probe: %+v, %v", rep, err)
	}
	tr := strings.Join(rep.Transcript, "\n")
	for _, want := range []string{"S: 220 fake.test", "C: EHLO mx1.relay.test", "C: MAIL FROM:<probe@relay-check.test>",
		"C: RCPT TO:<alice@relay.test>", "S: 250 2.1.5 Ok", "C: QUIT"} {
		if !strings.Contains(tr, want) {
			t.Errorf("transcript lacks %q:\n%s", want, tr)
		}
	}
	if strings.Contains(tr, "DATA") {
		t.Errorf("DATA in the transcript:\n%s", tr)
	}
	l, _ = e.v.Show("alice@relay.test")
	if l.Answer != "accept" || !l.Valid || l.Entry.State != StateExists {
		t.Errorf("Show after the probe: %+v", l)
	}
	e.clock.Advance(8 * day)
	if l, _ := e.v.Show("alice@relay.test"); !l.RefreshDue {
		t.Errorf("Show at day 8: %+v", l)
	}
	if addr, err := e.v.Forget("alice@RELAY.TEST"); err != nil || addr != "alice@relay.test" {
		t.Errorf("Forget: %q, %v", addr, err)
	}
	if _, err := e.v.Forget("alice@relay.test"); err == nil {
		t.Error("Forget twice succeeded")
	}
	if _, err := e.v.Probe(context.Background(), "x@elsewhere.test"); err == nil {
		t.Error("Probe of a domain that is not probed succeeded")
	}
	if _, err := e.v.Show("no-at-sign"); err == nil {
		t.Error("Show of a malformed address succeeded")
	}
	// A held temporary failure shows, and forget drops it.
	e.router.set(deadAddr(t))
	e.want(t, "bob@relay.test", Defer, "probe")
	if l, _ := e.v.Show("bob@relay.test"); l.Answer != "defer" || l.Entry == nil || l.Entry.State != StateTempfail {
		t.Errorf("Show of a held tempfail: %+v", l)
	}
	if _, err := e.v.Forget("bob@relay.test"); err != nil {
		t.Error(err)
	}
}

func TestModesListAndOff(t *testing.T) {
	list, err := ParseList("users", strings.NewReader("alice\nBob@List.Test\n"), "list.test")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(o *Options) {
		o.Domains["list.test"] = Policy{Mode: ModeList, List: list}
		o.Domains["off.test"] = Policy{Mode: ModeOff}
	})
	for _, tc := range []struct {
		addr   string
		action Action
		source string
	}{
		{"alice@list.test", Accept, ModeList},
		{"ALICE@list.test", Accept, ModeList},
		{"bob@list.test", Accept, ModeList},
		{"carol@list.test", Reject, ModeList},
		{"anyone@off.test", Accept, ModeOff},
		{"someone@not-a-relay-domain.test", Accept, ModeOff},
	} {
		if vd := e.verify(t, tc.addr); vd.Action != tc.action || vd.Source != tc.source || vd.Reply != "" {
			t.Errorf("%s: %+v", tc.addr, vd)
		}
	}
	if n := e.be.Conns(); n != 0 {
		t.Errorf("list and off domains were probed: %d connections", n)
	}
}

// Entries survive a restart (the backend-down story depends on it).
func TestEntriesSurviveRestart(t *testing.T) {
	e := newEnv(t, nil)
	e.want(t, "alice@relay.test", Accept, "probe")
	e.v.Close()
	v, err := Open(e.path, Options{Dialer: e.router, Domains: map[string]Policy{"relay.test": {Mode: ModeProbe}},
		Now: e.clock.Now, MaintainEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	e.router.set(deadAddr(t))
	if vd := v.Verify(context.Background(), "192.0.2.1", "alice@relay.test"); vd.Action != Accept || vd.Source != "cache" {
		t.Errorf("after restart: %+v", vd)
	}
}

// The background pass cleans up without being called.
func TestBackgroundPassRuns(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaintainEvery = 10 * time.Millisecond })
	e.want(t, "nobody@relay.test", Reject, "probe")
	e.clock.Advance(2 * time.Hour) // the cleanup is due again
	e.clock.Advance(2 * time.Hour) // and the entry expired
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _ := e.v.Stats()
		if st.Entries["expired"] == 0 && st.Entries["unknown"] == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("expired entry not cleaned up: %+v", st.Entries)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The guard counts an IPv6 client by its /64.
func TestGuardCountsIPv6ByPrefix(t *testing.T) {
	g := newGuard(2, 3, time.Hour, 0, newFakeClock().Now)
	g.add("2001:db8:1:2::1")
	g.add("2001:db8:1:2:ffff::9")
	if n := g.count("2001:db8:1:2::abcd"); n != 2 {
		t.Errorf("same /64: %d, want 2", n)
	}
	if n := g.count("2001:db8:1:3::1"); n != 0 {
		t.Errorf("other /64: %d", n)
	}
	g.add("192.0.2.1")
	if n := g.count("192.0.2.2"); n != 0 {
		t.Errorf("IPv4 neighbour: %d", n)
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"User unknown":                 "User unknown",
		"line one\nline two":           "line one line two",
		"esc \x1b[31mred\x1b[0m":       "esc ?[31mred?[0m",
		"utf8 ü":                       "utf8 ??",
		strings.Repeat("x", 1000):      strings.Repeat("x", maxReply),
		"  padded  \r\n":               "padded",
		"crlf\r\ninjection\r\n250 ok ": "crlf injection 250 ok",
	} {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}

// Reconfigure (a reload) applies to the next RCPT and probe, and keeps
// the cache: a known address stays known without a probe; the new probe
// sender is in the next probe's MAIL FROM; a domain switched to a list
// is answered from the list; a new negative TTL is in the next entry.
func TestReconfigureKeepsCache(t *testing.T) {
	e := newEnv(t, nil)
	e.want(t, "alice@relay.test", Accept, "probe")
	o := e.v.cur().o
	o.ProbeSender = "new-probe@relay-check.test"
	o.NegativeTTL = 5 * time.Minute
	list, err := ParseList("users", strings.NewReader("carol\n"), "list.test")
	if err != nil {
		t.Fatal(err)
	}
	o.Domains = map[string]Policy{"relay.test": {Mode: ModeProbe}, "list.test": {Mode: ModeList, List: list}}
	e.v.Reconfigure(o)
	probes := e.be.Count("RCPT TO:")
	e.want(t, "alice@relay.test", Accept, "cache")
	if n := e.be.Count("RCPT TO:"); n != probes {
		t.Errorf("the cached address was probed again after Reconfigure")
	}
	e.want(t, "nobody@relay.test", Reject, "probe")
	if cmds := strings.Join(e.be.Commands(), "\n"); !strings.Contains(cmds, "MAIL FROM:<new-probe@relay-check.test>") {
		t.Errorf("probe after Reconfigure:\n%s", cmds)
	}
	if en := e.entry(t, "nobody@relay.test"); en.Expires.Sub(en.Verified) != 5*time.Minute {
		t.Errorf("negative entry lives %s, want the new 5m", en.Expires.Sub(en.Verified))
	}
	e.want(t, "carol@list.test", Accept, ModeList)
	e.want(t, "dave@list.test", Reject, ModeList)
}

// Reconfigure keeps the dictionary counts and applies the new limits at
// the client's next unknown recipient: 3 unknowns under a limit of 5 were
// probed; with the limit lowered to 3 and the cut-off to 4 the 4th is not
// probed, and ends the session.
func TestReconfigureDictionaryLimits(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.DictLimit, o.DictDisconnect, o.DictDelay = 5, 50, -1 })
	for i := range 3 {
		if vd := e.verifyFrom(t, "203.0.113.9", fmt.Sprintf("rnd%d@relay.test", i)); vd.Action != Reject || vd.Source != "probe" {
			t.Fatalf("unknown %d under the limit: %+v", i, vd)
		}
	}
	o := e.v.cur().o
	o.DictLimit, o.DictDisconnect = 3, 4
	e.v.Reconfigure(o)
	if vd := e.verifyFrom(t, "203.0.113.9", "rnd3@relay.test"); vd.Action != Disconnect || vd.Source != "dictionary" {
		t.Errorf("4th unknown after lowering the limits: %+v, want a disconnect by the dictionary guard", vd)
	}
	if p := e.be.Count("RCPT TO:<rnd"); p != 3 {
		t.Errorf("backend saw %d probes, want the 3 from before the reload", p)
	}
}
