package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxedge/mxedge/internal/testlog"
)

// countingSigner signs with a header that numbers its calls, so a second
// call would change the bytes sent. out, if set, decides the output of call
// n instead.
type countingSigner struct {
	mu    sync.Mutex
	calls int
	seen  []string // the message each call read through msg.Open
	out   func(n int) ([]byte, error)
}

func (s *countingSigner) Sign(ctx context.Context, m *Message) ([]byte, error) {
	r, err := m.Open()
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	s.seen = append(s.seen, string(b))
	if s.out != nil {
		return s.out(s.calls)
	}
	return fmt.Appendf(nil, "X-Signature: call=%d; len=%d;\r\n\tb=%x\r\n", s.calls, len(b), len(b)*31), nil
}

func (s *countingSigner) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// byteRecorder answers attempt i with codes[i] (250 after the list) and
// records the bytes each attempt read, the size it was told and its number.
type byteRecorder struct {
	mu       sync.Mutex
	codes    []int
	bodies   []string
	sizes    []int64
	attempts []int
	called   chan struct{}
}

func newByteRecorder(codes ...int) *byteRecorder {
	return &byteRecorder{codes: codes, called: make(chan struct{}, 100)}
}

func (d *byteRecorder) Deliver(ctx context.Context, m *Message) []Result {
	r, err := m.Open()
	if err != nil {
		panic(err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	d.mu.Lock()
	code := 250
	if i := len(d.bodies); i < len(d.codes) {
		code = d.codes[i]
	}
	d.bodies, d.sizes, d.attempts = append(d.bodies, string(b)), append(d.sizes, m.Size), append(d.attempts, m.Attempt)
	d.mu.Unlock()
	var rs []Result
	for _, rc := range m.Rcpts {
		rs = append(rs, Result{Rcpt: rc, Code: code, Relay: "next.test"})
	}
	d.called <- struct{}{}
	return rs
}

func (d *byteRecorder) wait(t *testing.T, n int) {
	t.Helper()
	for {
		d.mu.Lock()
		got := len(d.bodies)
		d.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-d.called:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d delivery attempts happened", got, n)
		}
	}
}

// startRun runs q's scheduler with d; the returned function stops it.
func startRun(q *Queue, d Deliverer) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- q.Run(ctx, d, time.Second) }()
	return func() { cancel(); <-done }
}

// The operator's story: a signed message is deferred by the next hop and
// delivered later, possibly after a restart of the relay; both attempts
// send the very same bytes, and the signer ran once.
func TestSignerSameBytesOnEveryAttempt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		inline  int
		restart bool
	}{
		{"inline", 0, false},
		{"spooled", -1, false},
		{"inline, restart between attempts", 0, true},
		{"spooled, restart between attempts", -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sg := &countingSigner{}
			d := newByteRecorder(451)
			opts := Options{Signer: sg, InlineMax: tc.inline, MinBackoff: time.Hour, MaxBackoff: time.Hour}
			q := openTest(t, dir, opts)
			stop := startRun(q, d)

			const received = "Received: from client.test by mx.test\r\n"
			in, err := q.NewMessage(Envelope{From: "s@src.test", Rcpts: []Rcpt{{Addr: "a@x.test"}}})
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(in, origBody)
			in.Prepend([]byte(received))
			if err := in.Commit(context.Background()); err != nil {
				t.Fatal(err)
			}
			id := in.ID()
			d.wait(t, 1)
			waitAttempts(t, q, id, 1)

			env, err := q.Get(id)
			if err != nil {
				t.Fatal(err)
			}
			d.mu.Lock()
			first := d.bodies[0]
			d.mu.Unlock()
			sig, _, _ := strings.Cut(first, received)
			if !strings.HasPrefix(first, "X-Signature: call=1;") || !strings.HasSuffix(first, received+origBody) {
				t.Fatalf("first attempt sent %q", first)
			}
			if !env.Signed || env.Size != int64(len(first)) {
				t.Errorf("after the first attempt: signed %v size %d, want true and %d", env.Signed, env.Size, len(first))
			}
			if head, _ := headsEntry(t, q, id); head != sig+received {
				t.Errorf("stored header block %q, want the signature on top of the prepended field", head)
			}

			if tc.restart {
				stop()
				if err := q.Close(); err != nil {
					t.Fatal(err)
				}
				q = openTest(t, dir, opts)
				stop = startRun(q, d)
			}
			if err := q.Flush(id); err != nil {
				t.Fatal(err)
			}
			d.wait(t, 2)
			waitGone(t, q, id)
			if _, ok := headsEntry(t, q, id); ok {
				t.Error("heads entry left after the message was delivered and removed")
			}
			stop()
			q.Close()

			d.mu.Lock()
			defer d.mu.Unlock()
			if d.bodies[1] != first {
				t.Errorf("second attempt sent other bytes:\n%q\nwant\n%q", d.bodies[1], first)
			}
			for i, size := range d.sizes {
				if size != int64(len(first)) {
					t.Errorf("attempt %d was told size %d, sends %d bytes", i+1, size, len(first))
				}
			}
			if n := sg.count(); n != 1 {
				t.Errorf("signer called %d times, want once", n)
			}
			if sg.seen[0] != received+origBody {
				t.Errorf("signer read %q, want the stored message", sg.seen[0])
			}
		})
	}
}

// A signer that adds nothing still runs only once.
func TestSignerWithoutFields(t *testing.T) {
	sg := &countingSigner{out: func(int) ([]byte, error) { return nil, nil }}
	d := newByteRecorder(451)
	q := runQueue(t, Options{Signer: sg, MinBackoff: time.Hour, MaxBackoff: time.Hour}, d)
	id := receive(t, q, origBody, "a@x.test")
	d.wait(t, 1)
	waitAttempts(t, q, id, 1)
	if env, _ := q.Get(id); !env.Signed || env.Size != int64(len(origBody)) {
		t.Errorf("after the first attempt: %+v", env)
	}
	if _, ok := headsEntry(t, q, id); ok {
		t.Error("heads entry for empty signer output")
	}
	q.Flush(id)
	d.wait(t, 2)
	waitGone(t, q, id)
	if n := sg.count(); n != 1 {
		t.Errorf("signer called %d times, want once", n)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.bodies[0] != origBody || d.bodies[1] != origBody {
		t.Errorf("sent %q", d.bodies)
	}
}

// syncBuffer is a log sink shared by goroutines.
type syncBuffer = testlog.Buffer

// A signer that fails (or returns fields that would break the message):
// the message is not sent unsigned, not bounced, but deferred with the
// normal backoff and an error in the log; the next attempt signs it.
func TestSignErrorDefers(t *testing.T) {
	for _, tc := range []struct {
		name string
		out  []byte
		err  error
	}{
		{"error", nil, errors.New("key store unavailable")},
		{"malformed output", []byte("X-Signature: x\r\n\r\n"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sg := &countingSigner{}
			sg.out = func(n int) ([]byte, error) {
				if n == 1 {
					return tc.out, tc.err
				}
				return []byte("X-Signature: fine\r\n"), nil
			}
			d := newByteRecorder()
			logs := &syncBuffer{}
			q, err := Open(t.TempDir(), Options{Signer: sg, MinBackoff: time.Hour, MaxBackoff: time.Hour,
				Logger: slog.New(slog.NewTextHandler(logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			stop := startRun(q, d)
			defer func() { stop(); q.Close() }()

			id := receive(t, q, origBody, "a@x.test")
			waitAttempts(t, q, id, 1)
			env, err := q.Get(id)
			if err != nil {
				t.Fatal(err)
			}
			rc := env.Rcpts[0]
			if env.Signed || rc.Status != StatusPending || rc.DSN != "4.3.0" || !strings.Contains(rc.LastReply, "signing failed") {
				t.Errorf("after the failed signing: signed %v, %+v", env.Signed, rc)
			}
			if d := env.NextAttempt.Sub(q.now()); d < 40*time.Minute {
				t.Errorf("next attempt in %v, want the normal backoff (about an hour)", d)
			}
			d.mu.Lock()
			sent := len(d.bodies)
			d.mu.Unlock()
			if sent != 0 {
				t.Fatalf("the deliverer was called %d times with an unsigned message", sent)
			}
			if st, _ := q.Stats(); st.Messages != 1 {
				t.Errorf("%d messages queued, want 1 (no bounce for a signing failure)", st.Messages)
			}
			if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "signing failed") ||
				!strings.Contains(l, "queue_id="+id) {
				t.Errorf("no error logged with the queue ID:\n%s", l)
			}

			q.Flush(id)
			d.wait(t, 1)
			waitGone(t, q, id)
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.bodies[0] != "X-Signature: fine\r\n"+origBody || d.attempts[0] != 2 {
				t.Errorf("attempt %d sent %q", d.attempts[0], d.bodies[0])
			}
		})
	}
}

// Our own reports are queued messages like any other: they are signed.
func TestReportsAreSigned(t *testing.T) {
	sg := &countingSigner{}
	d := newRecorder(map[string]int{"bad@x.test": 550})
	q := runQueue(t, Options{Signer: sg}, d)
	receive(t, q, origBody, "bad@x.test")
	calls := d.waitCalls(t, 2)
	b := reports(calls)
	if len(b) != 1 || !strings.HasPrefix(b[0].body, "X-Signature: call=") {
		t.Fatalf("bounce not signed: %+v", b)
	}
	if !strings.HasPrefix(calls[0].body, "X-Signature: call=1;") {
		t.Errorf("message not signed: %q", calls[0].body)
	}
	if n := sg.count(); n != 2 {
		t.Errorf("signer called %d times, want 2 (message, bounce)", n)
	}
}
