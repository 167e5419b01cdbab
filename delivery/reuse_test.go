package delivery

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxedge/mxedge/internal/smtptest"
	"github.com/mxedge/mxedge/queue"
)

func TestTwoMessagesOneConnection(t *testing.T) {
	be := startServer(t, "127.0.0.3:0")
	d := newDeliverer(t, map[string]string{"relay.test": be.Addr()})
	m1 := spooled(t, "one@src.test", "Subject: 1\r\n\r\nfirst\r\n", "alice@relay.test")
	m2 := spooled(t, "two@src.test", "Subject: 2\r\n\r\nsecond\r\n", "bob@relay.test", "carol@relay.test")
	for _, m := range []struct {
		msg  *queue.Message
		want int
	}{{m1, 1}, {m2, 2}} {
		rs := d.Deliver(context.Background(), m.msg)
		if len(rs) != m.want {
			t.Fatalf("results %+v", rs)
		}
		for _, r := range rs {
			if r.Code != 250 {
				t.Errorf("%s: %+v", r.Rcpt, r)
			}
		}
	}
	if n := be.Conns(); n != 1 {
		t.Fatalf("%d connections for two messages, want 1", n)
	}
	// The cached connection is checked with RSET before reuse (no new
	// EHLO: FORK.md section 17); no QUIT in between.
	want := []string{
		"EHLO relay.mxedge.test",
		fmt.Sprintf("MAIL FROM:<one@src.test> BODY=7BIT SIZE=%d", m1.Size),
		"RCPT TO:<alice@relay.test>",
		"DATA",
		"RSET",
		fmt.Sprintf("MAIL FROM:<two@src.test> BODY=7BIT SIZE=%d", m2.Size),
		"RCPT TO:<bob@relay.test>",
		"RCPT TO:<carol@relay.test>",
		"DATA",
	}
	if got := be.Commands(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("dialogue\n got %q\nwant %q", got, want)
	}
	msgs := be.Messages()
	if len(msgs) != 2 || string(msgs[1].Body()) != "Subject: 2\r\n\r\nsecond\r\n" || len(msgs[1].Rcpts) != 2 {
		t.Errorf("second message as received: %+v", msgs)
	}
	d.Close() // QUIT to the cached connection, and wait for its reply
	if got := be.Commands(); got[len(got)-1] != "QUIT" || be.Conns() != 1 {
		t.Errorf("after Close: %d connections, dialogue %q", be.Conns(), got)
	}
}

func TestIdleConnectionExpires(t *testing.T) {
	// With the fake clock: a cached connection idle for idleTime is not
	// taken any more, but closed with QUIT.
	be := startServer(t, "127.0.0.3:0")
	d := newDeliverer(t, map[string]string{"relay.test": be.Addr()})
	clk := newFakeClock()
	d.now = clk.Now
	d.Deliver(context.Background(), spooled(t, "s@src.test", "x\r\n", "a@relay.test"))
	clk.Advance(DefaultIdleTime - time.Millisecond)
	d.Deliver(context.Background(), spooled(t, "s@src.test", "x\r\n", "a@relay.test"))
	if n := be.Conns(); n != 1 {
		t.Fatalf("reuse within the idle time: %d connections", n)
	}
	clk.Advance(DefaultIdleTime)
	rs := d.Deliver(context.Background(), spooled(t, "s@src.test", "x\r\n", "a@relay.test"))
	if rs[0].Code != 250 || be.Conns() != 2 {
		t.Fatalf("after the idle time: %+v over %d connections, want 250 over 2", rs[0], be.Conns())
	}
	d.Close()
	if n := be.Count("QUIT"); n != 2 {
		t.Errorf("%d QUITs, want 2 (expired connection and the cached one)", n)
	}
}

func TestIdleTimerClosesConnection(t *testing.T) {
	// The real idle timer closes a connection nobody takes. The wait below
	// is bounded and ends with the QUIT; 5 s is far above the 50 ms timer.
	be := startServer(t, "127.0.0.3:0")
	d := newDeliverer(t, map[string]string{"relay.test": be.Addr()})
	d.lim.idleTime = 50 * time.Millisecond
	d.Deliver(context.Background(), spooled(t, "s@src.test", "x\r\n", "a@relay.test"))
	if err := be.WaitCount("QUIT", 1, 5*time.Second); err != nil {
		t.Fatalf("idle connection not closed: %v", err)
	}
	d.mu.Lock()
	idle := len(d.idle)
	d.mu.Unlock()
	if idle != 0 {
		t.Errorf("closed connection still cached")
	}
	if rs := d.Deliver(context.Background(), spooled(t, "s@src.test", "x\r\n", "a@relay.test")); rs[0].Code != 250 || be.Conns() != 2 {
		t.Errorf("after expiry: %+v over %d connections", rs[0], be.Conns())
	}
}

func TestReuseLimits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(d *Deliverer, clk *fakeClock)
		step  func(clk *fakeClock) // between messages
		msgs  int
		conns int
	}{
		{"count", func(d *Deliverer, _ *fakeClock) { d.lim.reuseCount = 2 }, func(*fakeClock) {}, 5, 3},
		{"age", func(d *Deliverer, _ *fakeClock) { d.lim.idleTime = time.Hour },
			func(clk *fakeClock) { clk.Advance(100 * time.Second) }, 5, 2}, // 0,100,200 | 300,400
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := startServer(t, "127.0.0.3:0")
			d := newDeliverer(t, map[string]string{"relay.test": be.Addr()})
			clk := newFakeClock()
			d.now = clk.Now
			tc.setup(d, clk)
			for i := range tc.msgs {
				if i > 0 {
					tc.step(clk)
				}
				if rs := d.Deliver(context.Background(), spooled(t, "s@src.test", "x\r\n", "a@relay.test")); rs[0].Code != 250 {
					t.Fatalf("message %d: %+v", i, rs[0])
				}
			}
			if n := be.Conns(); n != tc.conns {
				t.Errorf("%d connections, want %d", n, tc.conns)
			}
			d.Close()
			if n := be.Count("QUIT"); n != tc.conns {
				t.Errorf("%d QUITs for %d connections", n, tc.conns)
			}
		})
	}
}

func TestRefusedRecipientsResetBeforeReuse(t *testing.T) {
	// MAIL accepted, every RCPT refused: the transaction is still open, so
	// RSET before the connection is reused (and go-smtp repeats EHLO). The
	// next hop offers PIPELINING, so DATA went out with MAIL and RCPT
	// (transaction.go) and was refused (554 5.5.1 no valid recipients).
	be := startServer(t, "127.0.0.3:0")
	be.SetUsers("alice")
	d := newDeliverer(t, map[string]string{"relay.test": be.Addr()})
	if rs := d.Deliver(context.Background(), spooled(t, "s@src.test", "x\r\n", "nobody@relay.test")); rs[0].Code != 550 {
		t.Fatalf("unknown recipient: %+v", rs[0])
	}
	if rs := d.Deliver(context.Background(), spooled(t, "s@src.test", "x\r\n", "alice@relay.test")); rs[0].Code != 250 {
		t.Fatalf("alice: %+v", rs[0])
	}
	want := []string{"EHLO relay.mxedge.test", "MAIL FROM:<s@src.test> BODY=7BIT SIZE=3", "RCPT TO:<nobody@relay.test>",
		"DATA", "RSET", "MAIL FROM:<s@src.test> BODY=7BIT SIZE=3", "RCPT TO:<alice@relay.test>", "DATA"}
	if got := be.Commands(); strings.Join(got, "\n") != strings.Join(want, "\n") || be.Conns() != 1 {
		t.Errorf("%d connections, dialogue\n got %q\nwant %q", be.Conns(), got, want)
	}
}

func TestNextHopClosedIdleConnection(t *testing.T) {
	// The next hop drops the first connection while it is idle in the
	// cache, silently or after a 421 (Postfix's smtpd says "421 4.4.2 ...
	// Error: timeout exceeded"). The next message finds out at MAIL and
	// goes out on a new connection, once.
	for _, farewell := range []string{"", "421 4.4.2 fake.test Error: timeout exceeded"} {
		t.Run(fmt.Sprintf("farewell=%q", farewell), func(t *testing.T) {
			hop := startServer(t, "127.0.0.6:0")
			d := newDeliverer(t, map[string]string{"relay.test": hop.Addr()})
			if rs := d.Deliver(context.Background(), spooled(t, "s@src.test", "x\r\n", "a@relay.test")); rs[0].Code != 250 {
				t.Fatalf("first message: %+v", rs[0])
			}
			hop.CloseIdle(farewell)
			rs := d.Deliver(context.Background(), spooled(t, "s@src.test", "x\r\n", "a@relay.test"))
			if rs[0].Code != 250 {
				t.Fatalf("second message: %+v", rs[0])
			}
			if conns, delivered := hop.Conns(), len(hop.Messages()); conns != 2 || delivered != 2 {
				t.Errorf("%d connections, %d messages delivered; want 2 and 2", conns, delivered)
			}
		})
	}
}

func TestNoRetryAfterData(t *testing.T) {
	// The cached connection dies after the body was sent: the outcome is
	// unknown to us (the next hop may have the message), so the recipients
	// are deferred and nothing is sent again now.
	hop := startServer(t, "127.0.0.6:0")
	hop.On(smtptest.Dot, func(s *smtptest.Session, _ string) string {
		if s.Msgs == 2 {
			return smtptest.Hangup // close without replying to "."
		}
		return ""
	})
	d := newDeliverer(t, map[string]string{"relay.test": hop.Addr()})
	if rs := d.Deliver(context.Background(), spooled(t, "s@src.test", "x\r\n", "a@relay.test")); rs[0].Code != 250 {
		t.Fatalf("first message: %+v", rs[0])
	}
	rs := d.Deliver(context.Background(), spooled(t, "s@src.test", "x\r\n", "a@relay.test"))
	if rs[0].Code != 0 || rs[0].Enhanced != "4.4.2" {
		t.Errorf("connection lost after DATA: %+v, want deferred with code 0", rs[0])
	}
	if n := hop.Conns(); n != 1 {
		t.Errorf("%d connections, want 1: no retry after DATA", n)
	}
}

func TestIdleConnectionsPerHopBounded(t *testing.T) {
	be := startServer(t, "127.0.0.3:0")
	d := newDeliverer(t, map[string]string{"relay.test": be.Addr()})
	d.lim.maxIdle = 2
	var ss []*session
	for range 3 {
		tg := &target{name: be.Addr(), addr: be.Addr(), hop: be.Addr(), plan: tlsPlan{level: levelMay, policy: levelMay}}
		s, f := d.connect(context.Background(), tg, false)
		if s == nil {
			t.Fatal(f.text)
		}
		ss = append(ss, s)
	}
	for _, s := range ss {
		d.park(s)
	}
	d.mu.Lock()
	idle := append([]*session(nil), d.idle[be.Addr()]...)
	d.mu.Unlock()
	if len(idle) != 2 || idle[0] != ss[1] || idle[1] != ss[2] {
		t.Errorf("cached %d sessions; want the 2 most recently parked", len(idle))
	}
	if got := d.take(be.Addr()); got != ss[2] {
		t.Errorf("take did not return the most recently used session")
	}
	d.park(ss[2])
	d.Close()
	if n := be.Count("QUIT"); n != 3 {
		t.Errorf("%d QUITs, want 3", n)
	}
}

func TestConcurrentDeliveries(t *testing.T) {
	be := startServer(t, "127.0.0.3:0")
	d := newDeliverer(t, map[string]string{"relay.test": be.Addr()})
	d.lim.maxIdle = 4
	const n = 60
	msgs := make([]*queue.Message, n)
	for i := range msgs {
		msgs[i] = spooled(t, "s@src.test", fmt.Sprintf("Subject: %d\r\n\r\nx\r\n", i), "a@relay.test")
	}
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for round := range 3 {
		for _, m := range msgs[round*n/3 : (round+1)*n/3] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if rs := d.Deliver(context.Background(), m); rs[0].Code != 250 {
					errs <- fmt.Sprintf("%+v", rs[0])
				}
			}()
		}
		wg.Wait()
	}
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got := len(be.Messages()); got != n {
		t.Errorf("%d messages arrived, want %d", got, n)
	}
	d.Close()
	if q, c := be.Count("QUIT"), be.Conns(); q != c || c >= n {
		t.Errorf("%d connections for %d messages, %d closed with QUIT", c, n, q)
	}
}
