package delivery

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mxedge/mxedge/internal/fakeclock"
	"github.com/mxedge/mxedge/internal/smtptest"
	"github.com/mxedge/mxedge/queue"
)

// spooled writes body into a real queue and returns the message view a
// delivery attempt gets.
func spooled(t *testing.T, from, body string, rcpts ...string) *queue.Message {
	t.Helper()
	return spooledAs(t, from, body, nil, rcpts...)
}

// spooledAs is spooled with mark, if not nil, called on the message before
// it is committed (as smtpd calls Incoming.MarkCRLF).
func spooledAs(t *testing.T, from, body string, mark func(*queue.Incoming), rcpts ...string) *queue.Message {
	t.Helper()
	dir := t.TempDir()
	q, err := queue.Open(dir, queue.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	env := queue.Envelope{From: from}
	for _, r := range rcpts {
		env.Rcpts = append(env.Rcpts, queue.Rcpt{Addr: r})
	}
	in, err := q.NewMessage(env)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(in, body)
	if mark != nil {
		mark(in)
	}
	if err := in.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	msg, err := q.Message(in.ID())
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// startServer starts a fake next hop on addr ("127.0.0.3:0"), closed when
// the test ends.
func startServer(t *testing.T, addr string) *smtptest.Server {
	t.Helper()
	s, err := smtptest.Start(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// fakeClock is the Deliverer's clock in tests.
type fakeClock = fakeclock.Clock

func newFakeClock() *fakeClock {
	return fakeclock.New(time.Date(2025, 11, 23, 10, 0, 0, 0, time.UTC))
}

// newDeliverer returns a Deliverer for routes, closed when the test ends.
func newDeliverer(t *testing.T, routes map[string]string) *Deliverer {
	t.Helper()
	d := New(testOptions(func(o *Options) { o.Routes = routes }))
	t.Cleanup(func() { d.Close() })
	return d
}

func byRcpt(rs []queue.Result) map[string]queue.Result {
	m := map[string]queue.Result{}
	for _, r := range rs {
		m[r.Rcpt] = r
	}
	return m
}

func TestOneTransactionPerRecipientResults(t *testing.T) {
	be := startServer(t, "127.0.0.3:0")
	be.SetUsers("alice", "bob")
	d := newDeliverer(t, map[string]string{"relay.test": be.Addr()})
	body := "Subject: hi\r\n\r\n.leading dot\r\n..two dots\r\nend\r\n"
	msg := spooled(t, "sender@src.test", body, "alice@relay.test", "nobody@relay.test", "bob@relay.test")
	res := byRcpt(d.Deliver(context.Background(), msg))
	if len(res) != 3 {
		t.Fatalf("results: %+v", res)
	}
	if r := res["alice@relay.test"]; r.Code != 250 || !strings.Contains(r.Relay, be.Addr()) {
		t.Errorf("alice: %+v", r)
	}
	if r := res["nobody@relay.test"]; r.Code != 550 || r.Enhanced != "5.1.1" {
		t.Errorf("nobody: %+v", r)
	}
	if r := res["bob@relay.test"]; r.Code != 250 {
		t.Errorf("bob: %+v", r)
	}
	msgs := be.Messages()
	if len(msgs) != 1 || be.Conns() != 1 {
		t.Fatalf("backend got %d messages over %d connections, want 1 and 1", len(msgs), be.Conns())
	}
	if got := msgs[0].Rcpts; len(got) != 2 || got[0] != "<alice@relay.test>" || got[1] != "<bob@relay.test>" {
		t.Errorf("accepted RCPTs %q", got)
	}
	wantWire := "Subject: hi\r\n\r\n..leading dot\r\n...two dots\r\nend\r\n.\r\n"
	if string(msgs[0].Raw) != wantWire {
		t.Errorf("wire bytes\n got %q\nwant %q", msgs[0].Raw, wantWire)
	}
	cmds := be.Commands()
	if cmds[0] != "EHLO relay.mxedge.test" || !strings.HasPrefix(cmds[1], "MAIL FROM:<sender@src.test>") ||
		!strings.Contains(cmds[1], "SIZE=") {
		t.Errorf("dialogue %q", cmds)
	}
}

func TestTemporaryFailures(t *testing.T) {
	// A port nobody listens on: connection refused.
	ln, _ := net.Listen("tcp", "127.0.0.4:0")
	dead := ln.Addr().String()
	ln.Close()
	be := startServer(t, "127.0.0.3:0")
	be.On(smtptest.Dot, smtptest.Reply("452 4.3.1 Insufficient system storage"))
	d := newDeliverer(t, map[string]string{"dead.test": dead, "full.test": be.Addr()})
	msg := spooled(t, "", "Subject: x\r\n\r\ny\r\n", "a@dead.test", "b@full.test", "c@noroute.test")
	res := byRcpt(d.Deliver(context.Background(), msg))
	if r := res["a@dead.test"]; r.Code != 0 || !strings.Contains(r.Text, "refused") {
		t.Errorf("dead hop: %+v", r)
	}
	if r := res["b@full.test"]; r.Code != 452 || r.Enhanced != "4.3.1" {
		t.Errorf("452 after DATA: %+v", r)
	}
	if r := res["c@noroute.test"]; r.Code/100 != 4 {
		t.Errorf("no route must defer (config error), got %+v", r)
	}
	if cmds := be.Commands(); len(cmds) < 2 || cmds[1] != "MAIL FROM:<> BODY=7BIT SIZE=17" {
		t.Errorf("null sender dialogue %q", cmds)
	}
}

func TestCancelStopsPromptly(t *testing.T) {
	// A server that accepts and never greets.
	tarpit := startServer(t, "127.0.0.5:0")
	tarpit.Hold(smtptest.Greeting)
	d := newDeliverer(t, map[string]string{"tarpit.test": tarpit.Addr()})
	msg := spooled(t, "s@src.test", "x\r\n", "a@tarpit.test")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan []queue.Result)
	go func() { done <- d.Deliver(ctx, msg) }()
	cancel()
	select {
	case rs := <-done:
		if rs[0].Code != 0 {
			t.Errorf("cancelled attempt: %+v", rs[0])
		}
	case <-time.After(4 * time.Second): // well under the 5s reply timeout
		t.Fatal("Deliver ignored context cancellation")
	}
}

// testOptions are the Options of the package's tests: a short connect and
// reply timeout, no log; edits apply in order.
func testOptions(edits ...func(*Options)) Options {
	o := Options{
		Hostname:       "relay.mxedge.test",
		Routes:         map[string]string{},
		ReplyTimeout:   5 * time.Second,
		ConnectTimeout: 2 * time.Second,
		Logger:         slog.New(slog.DiscardHandler),
	}
	for _, e := range edits {
		e(&o)
	}
	return o
}
