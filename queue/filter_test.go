package queue

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxedge/mxedge/internal/testlog"
)

// scriptFilter answers each call from verdicts (an error for a nil
// entry), recording what it read.
type scriptFilter struct {
	mu    sync.Mutex
	calls int
	out   []*Verdict
	seen  []string
}

func (f *scriptFilter) Filter(_ context.Context, m *Message) (Verdict, error) {
	r, _ := m.Open()
	b, _ := io.ReadAll(r)
	r.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, string(b))
	v := f.out[min(f.calls, len(f.out)-1)]
	f.calls++
	if v == nil {
		return Verdict{}, errors.New("milter down")
	}
	return *v, nil
}

func (f *scriptFilter) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func queueOne(t *testing.T, q *Queue, from string) string {
	t.Helper()
	in, err := q.NewMessage(Envelope{From: from, Rcpts: []Rcpt{{Addr: "a@x.test"}}})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(in, "Subject: hi\r\n\r\nbody\r\n")
	if err := in.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	return in.ID()
}

// A filter's fields go on top and the signature on top of them, both
// stored once: a retry sends the same bytes, the filter ran once.
func TestContentFilterPassesWithFields(t *testing.T) {
	f := &scriptFilter{out: []*Verdict{{Fields: []byte("X-Spam-Score: 0.1\r\n")}}}
	sg := &countingSigner{}
	q := openTest(t, t.TempDir(), Options{ContentFilter: f, Signer: sg, MinBackoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	d := newByteRecorder(451)
	defer startRun(q, d)()
	queueOne(t, q, "s@src.test")
	d.wait(t, 2)
	d.mu.Lock()
	first, second := d.bodies[0], d.bodies[1]
	d.mu.Unlock()
	if first != second || !strings.HasPrefix(first, "X-Signature: call=1;") || !strings.Contains(first, "\r\nX-Spam-Score: 0.1\r\nSubject: hi") {
		t.Errorf("attempts sent\n%q\n%q", first, second)
	}
	if !strings.HasPrefix(sg.seen[0], "X-Spam-Score: 0.1\r\n") {
		t.Errorf("the signer did not see the filter's field: %q", sg.seen[0])
	}
	if f.count() != 1 || sg.count() != 1 {
		t.Errorf("filter %d calls, signer %d", f.count(), sg.count())
	}
}

// A reject verdict holds the message and reports to the sender; release
// delivers it without asking the filter again.
func TestContentFilterHolds(t *testing.T) {
	var logs testlog.Buffer
	f := &scriptFilter{out: []*Verdict{{Hold: true, Reply: "550 5.7.1 Spam message rejected"}, {}}}
	q, err := Open(t.TempDir(), Options{ContentFilter: f, Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	d := newByteRecorder()
	defer startRun(q, d)()
	id := queueOne(t, q, "alice@example.org")
	// The report to the sender is the first delivery.
	d.wait(t, 1)
	d.mu.Lock()
	report := d.bodies[0]
	d.mu.Unlock()
	if !strings.Contains(report, "Diagnostic-Code: smtp; 550 5.7.1 Spam message rejected (held for review)") || !strings.Contains(report, "Action: failed") {
		t.Errorf("report:\n%s", report)
	}
	// The hold is stored right after the report is queued (a crash in
	// between repeats the report rather than losing it).
	var env *Envelope
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		if env, err = q.Get(id); err == nil && env.Held && !q.isInflight(id) || time.Now().After(deadline) {
			break
		}
	}
	if !env.Held || env.HoldReason != "550 5.7.1 Spam message rejected" || q.State(env) != "hold" {
		t.Errorf("held %v %q %s", env.Held, env.HoldReason, q.State(env))
	}
	if !strings.Contains(logs.String(), `msg="held by content filter" queue_id=`+id) {
		t.Errorf("log:\n%s", logs.String())
	}
	before := f.count() // the message and its report
	if err := q.Release(id); err != nil {
		t.Fatal(err)
	}
	d.wait(t, 2)
	if f.count() != before {
		t.Errorf("the released message was filtered again")
	}
}

// The filter failing defers the message; it is asked again.
func TestContentFilterFailureDefers(t *testing.T) {
	f := &scriptFilter{out: []*Verdict{nil, {}}}
	q := openTest(t, t.TempDir(), Options{ContentFilter: f, MinBackoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	d := newByteRecorder()
	defer startRun(q, d)()
	queueOne(t, q, "s@src.test")
	d.wait(t, 1)
	if f.count() != 2 {
		t.Errorf("filter asked %d times, want 2", f.count())
	}
}
