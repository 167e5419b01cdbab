package delivery

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mxedge/mxedge/internal/smtptest"
	"github.com/mxedge/mxedge/internal/testlog"
	"github.com/mxedge/mxedge/queue"
)

// syncBuffer is a log sink shared by goroutines.
type syncBuffer = testlog.Buffer

// deadText is the text of a recipient deferred because hop is dead.
func deadText(hop string, failures int, until time.Time) string {
	return fmt.Sprintf("next hop %s marked dead after %d connection failures; next try at %s",
		hop, failures, until.Format("15:04:05"))
}

func TestDeadHop(t *testing.T) {
	// The next hop accepts connections but refuses service in the
	// greeting, until it is repaired.
	hop := startServer(t, "127.0.0.6:0")
	hop.On(smtptest.Greeting, smtptest.Reply("421 4.3.2 fake.test Service not available"))
	d := newDeliverer(t, map[string]string{"relay.test": hop.Addr()})
	var logs syncBuffer
	d.log = slog.New(slog.NewTextHandler(&logs, nil))
	clk := newFakeClock()
	d.now = clk.Now
	t0 := clk.Now()
	deliver := func() []queue.Result {
		return d.Deliver(context.Background(), spooled(t, "s@src.test", "x\r\n", "a@relay.test", "b@relay.test"))
	}

	for i := 1; i <= 3; i++ {
		rs := deliver()
		if rs[0].Code != 421 || rs[1].Code != 421 {
			t.Fatalf("attempt %d: %+v", i, rs)
		}
	}
	if n := hop.Conns(); n != 3 {
		t.Fatalf("%d connections in 3 attempts", n)
	}
	if !strings.Contains(logs.String(), `msg="next hop marked dead"`) {
		t.Errorf("no log line for the state change:\n%s", logs.String())
	}

	// Dead: deferred at once, without connecting.
	clk.Advance(DefaultDeadMin - time.Second)
	rs := deliver()
	want := deadText(hop.Addr(), 3, t0.Add(DefaultDeadMin))
	for _, r := range rs {
		if r.Code != 0 || r.Enhanced != "4.4.1" || r.Text != want {
			t.Errorf("while dead: %+v\nwant text %q", r, want)
		}
	}
	if n := hop.Conns(); n != 3 {
		t.Fatalf("%d connections, want 3: a dead hop must not be connected to", n)
	}

	// After the dead period one probe connects; it works.
	hop.On(smtptest.Greeting, nil)
	clk.Advance(time.Second)
	if rs := deliver(); rs[0].Code != 250 || rs[1].Code != 250 {
		t.Fatalf("probe: %+v", rs)
	}
	if n := hop.Conns(); n != 4 {
		t.Errorf("%d connections, want 4 (the probe)", n)
	}
	if !strings.Contains(logs.String(), `msg="next hop alive again"`) {
		t.Errorf("no log line for the state change:\n%s", logs.String())
	}
	d.hopMu.Lock()
	st := d.hops[hop.Addr()]
	d.hopMu.Unlock()
	if st != nil {
		t.Errorf("state after a successful probe: %+v", st)
	}
}

func TestDeadPeriodDoubles(t *testing.T) {
	// Refused TCP connections: a port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.4:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	d := newDeliverer(t, map[string]string{"down.test": addr})
	d.lim.deadMax = 200 * time.Second
	clk := newFakeClock()
	d.now = clk.Now
	deliver := func() queue.Result {
		return d.Deliver(context.Background(), spooled(t, "s@src.test", "x\r\n", "a@down.test"))[0]
	}
	for range 3 {
		if r := deliver(); !strings.Contains(r.Text, "refused") {
			t.Fatalf("%+v", r)
		}
	}
	// Each failed probe marks the hop dead for twice as long, up to deadMax.
	failures := 3
	for _, period := range []time.Duration{60 * time.Second, 120 * time.Second, 200 * time.Second, 200 * time.Second} {
		want := deadText(addr, failures, clk.Now().Add(period))
		if r := deliver(); r.Text != want {
			t.Fatalf("dead for %v: got %q, want %q", period, r.Text, want)
		}
		clk.Advance(period)
		if r := deliver(); !strings.Contains(r.Text, "refused") {
			t.Fatalf("probe after %v: %+v", period, r)
		}
		failures++
	}
}

func TestDeadHopProbeAlone(t *testing.T) {
	// While the probe runs, other attempts are still deferred.
	hop := startServer(t, "127.0.0.6:0")
	greet := hop.Hold(smtptest.Greeting)
	d := newDeliverer(t, map[string]string{"relay.test": hop.Addr()})
	clk := newFakeClock()
	d.now = clk.Now
	for range 3 {
		d.connFailed(context.Background(), hop.Addr(), false)
	}
	clk.Advance(DefaultDeadMin)
	probe := make(chan []queue.Result)
	go func() {
		probe <- d.Deliver(context.Background(), spooled(t, "s@src.test", "x\r\n", "a@relay.test"))
	}()
	if err := hop.WaitHeld(1, 5*time.Second); err != nil { // the probe is connected and waits for the greeting
		t.Fatal(err)
	}
	rs := d.Deliver(context.Background(), spooled(t, "s@src.test", "x\r\n", "b@relay.test"))
	if want := "next hop " + hop.Addr() + " marked dead after 3 connection failures; probe in progress"; rs[0].Enhanced != "4.4.1" || rs[0].Text != want {
		t.Errorf("during the probe: %+v", rs[0])
	}
	greet()
	if rs := <-probe; rs[0].Code != 250 {
		t.Errorf("probe: %+v", rs[0])
	}
	if rs := d.Deliver(context.Background(), spooled(t, "s@src.test", "x\r\n", "b@relay.test")); rs[0].Code != 250 {
		t.Errorf("after the probe: %+v", rs[0])
	}
}

func TestDeadHopLeavesOthersAlone(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.4:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	be := startServer(t, "127.0.0.3:0")
	d := newDeliverer(t, map[string]string{"down.test": down, "up.test": be.Addr()})
	for i := range 4 {
		res := byRcpt(d.Deliver(context.Background(), spooled(t, "s@src.test", "x\r\n", "a@down.test", "b@up.test")))
		if r := res["b@up.test"]; r.Code != 250 {
			t.Errorf("message %d, healthy hop: %+v", i, r)
		}
		wantEnh := "4.4.1"
		if r := res["a@down.test"]; r.Code != 0 || r.Enhanced != wantEnh || (i == 3) != strings.Contains(r.Text, "marked dead") {
			t.Errorf("message %d, dead hop: %+v", i, r)
		}
	}
	if n := len(be.Messages()); n != 4 {
		t.Errorf("healthy hop got %d messages, want 4", n)
	}
}

func TestRepliesDoNotKillHop(t *testing.T) {
	// 4xx and 5xx replies come from a working host: never dead.
	be := startServer(t, "127.0.0.3:0")
	be.On(smtptest.Dot, smtptest.Reply("452 4.3.1 Insufficient system storage"))
	be.SetUsers("alice")
	d := newDeliverer(t, map[string]string{"relay.test": be.Addr()})
	d.lim.reuseCount = 1 // a new connection each time
	for i := range 5 {
		rs := byRcpt(d.Deliver(context.Background(), spooled(t, "s@src.test", "x\r\n", "alice@relay.test", "nobody@relay.test")))
		if rs["alice@relay.test"].Code != 452 || rs["nobody@relay.test"].Code != 550 {
			t.Fatalf("attempt %d: %+v", i, rs)
		}
	}
	if n := be.Conns(); n != 5 {
		t.Errorf("%d connections, want 5", n)
	}
}

func TestCancelledAttemptsDoNotKillHop(t *testing.T) {
	// Cancelling our own attempts says nothing about the next hop.
	hop := startServer(t, "127.0.0.6:0")
	hop.Hold(smtptest.Greeting) // never greets
	d := newDeliverer(t, map[string]string{"tarpit.test": hop.Addr()})
	for i := range 4 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan []queue.Result)
		go func() { done <- d.Deliver(ctx, spooled(t, "s@src.test", "x\r\n", "a@tarpit.test")) }()
		if err := hop.WaitConns(i+1, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		cancel()
		if rs := <-done; rs[0].Code != 0 || strings.Contains(rs[0].Text, "marked dead") {
			t.Fatalf("cancelled attempt: %+v", rs[0])
		}
	}
	d.hopMu.Lock()
	defer d.hopMu.Unlock()
	if st := d.hops[hop.Addr()]; st != nil && st.failures > 0 {
		t.Errorf("cancelled attempts counted: %+v", st)
	}
}
