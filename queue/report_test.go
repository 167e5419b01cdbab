package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mxedge/mxedge/internal/fakeclock"
)

// recorder answers every recipient with the code scripted for it (default
// 250) and records each attempt, body included.
type recorder struct {
	mu     sync.Mutex
	codes  map[string]int
	calls  []attemptRecord
	called chan struct{}
	// dsn: recipients whose next hop "took" the DSN parameters
	// (Result.DSNPassed); msgs: the Messages delivered.
	dsn  map[string]bool
	msgs []*Message
}

type attemptRecord struct {
	from  string
	rcpts []string
	body  string
}

func newRecorder(codes map[string]int) *recorder {
	return &recorder{codes: codes, called: make(chan struct{}, 1000)}
}

func (r *recorder) Deliver(ctx context.Context, m *Message) []Result {
	f, err := m.Open()
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(f)
	f.Close()
	r.mu.Lock()
	r.calls = append(r.calls, attemptRecord{m.From, append([]string(nil), m.Rcpts...), string(body)})
	r.msgs = append(r.msgs, m)
	var rs []Result
	for _, rc := range m.Rcpts {
		code, ok := r.codes[rc]
		if !ok {
			code = 250
		}
		enh := ""
		if code == 550 {
			enh = "5.1.1"
		}
		rs = append(rs, Result{Rcpt: rc, Code: code, Enhanced: enh, Text: fmt.Sprintf("scripted %d", code), Relay: "backend.test:25 [127.0.0.3:25]",
			DSNPassed: r.dsn[rc]})
	}
	r.mu.Unlock()
	r.called <- struct{}{}
	return rs
}

// waitCalls waits for n Deliver calls in total.
func (r *recorder) waitCalls(t *testing.T, n int) []attemptRecord {
	t.Helper()
	for {
		r.mu.Lock()
		got := len(r.calls)
		calls := append([]attemptRecord(nil), r.calls...)
		r.mu.Unlock()
		if got >= n {
			return calls
		}
		select {
		case <-r.called:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d delivery attempts happened", got, n)
		}
	}
}

// reports returns the attempts that carried reports (null sender).
func reports(calls []attemptRecord) []attemptRecord {
	var out []attemptRecord
	for _, c := range calls {
		if c.from == "" {
			out = append(out, c)
		}
	}
	return out
}

func runQueue(t *testing.T, opts Options, d Deliverer) *Queue {
	t.Helper()
	q := openTest(t, t.TempDir(), opts)
	t.Cleanup(func() { q.Close() })
	runOn(t, q, d)
	return q
}

// runOn runs q's scheduler with d until the test's cleanup stops it,
// before the cleanups registered earlier (q.Close) run.
func runOn(t *testing.T, q *Queue, d Deliverer) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- q.Run(ctx, d, time.Second) }()
	t.Cleanup(func() { cancel(); <-done })
}

func receiveEnv(t *testing.T, q *Queue, env Envelope, body string) string {
	t.Helper()
	in, err := q.NewMessage(env)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(in, body)
	if err := in.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	return in.ID()
}

const origBody = "Subject: original\r\nMessage-ID: <orig@src.test>\r\n\r\nthe body\r\n"

func TestPermanentFailureIsReturnedOnce(t *testing.T) {
	d := newRecorder(map[string]int{"bad@x.test": 550})
	q := runQueue(t, Options{Hostname: "mx1.relay.test"}, d)
	id := receiveEnv(t, q, Envelope{From: "sender@src.test", EnvID: "env-42",
		Rcpts: []Rcpt{{Addr: "ok@x.test"}, {Addr: "bad@x.test", ORcpt: "rfc822;Bad@X.test"}}}, origBody)
	calls := d.waitCalls(t, 2) // the message, then its bounce
	b := reports(calls)
	if len(b) != 1 || len(b[0].rcpts) != 1 || b[0].rcpts[0] != "sender@src.test" {
		t.Fatalf("reports: %+v", b)
	}
	for _, want := range []string{
		"multipart/report", "report-type=delivery-status",
		"Reporting-MTA: dns; mx1.relay.test", "Original-Envelope-Id: env-42",
		"Original-Recipient: rfc822;Bad@X.test", "Final-Recipient: rfc822; bad@x.test",
		"Action: failed", "Status: 5.1.1", "Remote-MTA: dns; backend.test",
		"Diagnostic-Code: smtp; 550 5.1.1 scripted 550",
		"Subject: original", "the body", // no RET and small: returned whole
		id,
	} {
		if !strings.Contains(b[0].body, want) {
			t.Errorf("bounce lacks %q:\n%s", want, b[0].body)
		}
	}
	if strings.Contains(b[0].body, "Final-Recipient: rfc822; ok@x.test") {
		t.Error("delivered recipient reported as failed")
	}

}

func TestNotifyAndRet(t *testing.T) {
	d := newRecorder(map[string]int{"never@x.test": 550, "full@x.test": 550, "hdrs@x.test": 550, "big@x.test": 550})
	q := runQueue(t, Options{}, d)
	big := "Subject: big\r\n\r\n" + strings.Repeat("the body of a big message\r\n", 3000) // 84 KB
	receiveEnv(t, q, Envelope{From: "a@src.test", Rcpts: []Rcpt{{Addr: "never@x.test", Notify: []string{"NEVER"}}}}, origBody)
	receiveEnv(t, q, Envelope{From: "b@src.test", Ret: "FULL", Rcpts: []Rcpt{{Addr: "full@x.test"}}}, big)
	receiveEnv(t, q, Envelope{From: "c@src.test", Rcpts: []Rcpt{{Addr: "ok@x.test", Notify: []string{"SUCCESS"}}}}, origBody)
	receiveEnv(t, q, Envelope{From: "d@src.test", Ret: "HDRS", Rcpts: []Rcpt{{Addr: "hdrs@x.test"}}}, origBody)
	receiveEnv(t, q, Envelope{From: "e@src.test", Rcpts: []Rcpt{{Addr: "big@x.test"}}}, big)
	calls := d.waitCalls(t, 9) // 5 messages, 4 reports (none for NOTIFY=NEVER)
	b := reports(calls)
	if len(b) != 4 {
		t.Fatalf("want 4 reports, got %d: %+v", len(b), b)
	}
	for _, r := range b {
		switch r.rcpts[0] {
		case "b@src.test":
			if !strings.Contains(r.body, "the body") {
				t.Errorf("RET=FULL bounce lacks the body:\n%s", r.body)
			}
		case "d@src.test":
			if strings.Contains(r.body, "the body") || !strings.Contains(r.body, "Subject: original") {
				t.Errorf("RET=HDRS bounce must return the headers only:\n%s", r.body)
			}
		case "e@src.test":
			if strings.Contains(r.body, "the body") || !strings.Contains(r.body, "Subject: big") {
				t.Errorf("no RET, 84 KB: headers only (over bounce_size_limit):\n%s", r.body)
			}
		case "c@src.test":
			if !strings.Contains(r.body, "Action: relayed") {
				t.Errorf("NOTIFY=SUCCESS report:\n%s", r.body)
			}
		default:
			t.Errorf("report to %v (NOTIFY=NEVER must suppress)", r.rcpts)
		}
	}
}

func TestNullSenderIsNeverBounced(t *testing.T) {
	d := newRecorder(map[string]int{"bad@x.test": 550, "postmaster@relay.test": 550})
	q := runQueue(t, Options{Postmaster: "postmaster@relay.test"}, d)
	receiveEnv(t, q, Envelope{From: "", Rcpts: []Rcpt{{Addr: "bad@x.test"}}}, origBody)
	// The bounce fails (to bad@), the postmaster gets a notice, the notice
	// fails too (550 from postmaster@) and nothing more happens.
	calls := d.waitCalls(t, 2)
	if calls[1].rcpts[0] != "postmaster@relay.test" || calls[1].from != "" {
		t.Fatalf("second attempt %+v, want the postmaster notice", calls[1])
	}
	// No third attempt: wait until the queue is empty, then check.
	waitEmpty(t, q)
	if n := len(d.waitCalls(t, 0)); n != 2 {
		t.Errorf("%d attempts, want 2 (a failed notice must not produce another)", n)
	}
}

// waitEmpty waits until nothing is queued and no attempt is still
// concluding (in flight).
func waitEmpty(t *testing.T, q *Queue) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		st, err := q.Stats()
		if err == nil && st.Messages == 0 && q.inflightCount() == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue not empty: %+v", st)
		}
	}
}

func TestExpiryAndDelayWarning(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	d := newRecorder(map[string]int{"slow@x.test": 451})
	q := runQueue(t, Options{Now: clock.Now, MaxLifetime: 72 * time.Hour, DelayWarning: 4 * time.Hour,
		MinBackoff: time.Minute, MaxBackoff: time.Hour}, d)
	id := receiveEnv(t, q, Envelope{From: "s@src.test", Rcpts: []Rcpt{{Addr: "slow@x.test"}}}, origBody)
	d.waitCalls(t, 1)
	waitAttempts(t, q, id, 1)

	clock.Advance(5 * time.Hour) // past delay_warning
	q.Flush(id)
	calls := d.waitCalls(t, 3) // attempt 2 + the delay notice
	if b := reports(calls); len(b) != 1 || !strings.Contains(b[0].body, "Action: delayed") ||
		!strings.Contains(b[0].body, "Will-Retry-Until:") {
		t.Fatalf("delay notice: %+v", b)
	}
	waitAttempts(t, q, id, 2)
	clock.Advance(time.Hour)
	q.Flush(id)
	d.waitCalls(t, 4)
	waitAttempts(t, q, id, 3)
	if b := reports(d.waitCalls(t, 4)); len(b) != 1 {
		t.Fatalf("delay notice sent %d times, want once", len(b))
	}

	clock.Advance(72 * time.Hour) // past the lifetime
	q.Flush(id)
	calls = d.waitCalls(t, 6) // last attempt + the bounce
	b := reports(calls)
	if len(b) != 2 || !strings.Contains(b[1].body, "Status: 4.4.7") || !strings.Contains(b[1].body, "Action: failed") {
		t.Fatalf("expiry bounce: %+v", b)
	}
	waitGone(t, q, id)
}

func TestBounceLifetimeIsShorter(t *testing.T) {
	q := &Queue{opts: Options{MaxLifetime: 72 * time.Hour, BounceLifetime: 24 * time.Hour}}
	if q.lifetime(&Envelope{From: ""}) != 24*time.Hour || q.lifetime(&Envelope{From: "a@b"}) != 72*time.Hour {
		t.Error("lifetimes")
	}
}

// waitGone waits for id to leave the queue (removal follows the report).
func waitGone(t *testing.T, q *Queue, id string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		if _, err := q.Get(id); errors.Is(err, ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still queued", id)
		}
	}
}

func waitAttempts(t *testing.T, q *Queue, id string, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		if env, err := q.Get(id); err == nil && env.Attempts >= n && !q.isInflight(id) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("attempt %d of %s not recorded", n, id)
		}
	}
}

func TestHoldReleaseDeleteBounce(t *testing.T) {
	d := newRecorder(map[string]int{"later@x.test": 451})
	q := runQueue(t, Options{MinBackoff: time.Hour, MaxBackoff: time.Hour}, d)
	id := receiveEnv(t, q, Envelope{From: "s@src.test", Rcpts: []Rcpt{{Addr: "later@x.test"}}}, origBody)
	d.waitCalls(t, 1)
	waitAttempts(t, q, id, 1)

	if err := q.Hold(id); err != nil {
		t.Fatal(err)
	}
	if err := q.Flush(id); err == nil {
		t.Error("flush of a held message succeeded")
	}
	env, _ := q.Get(id)
	if q.State(env) != StateHold {
		t.Errorf("state %s", q.State(env))
	}
	if due, _, _ := q.due(time.Now().Add(48*time.Hour), 10); len(due) != 0 {
		t.Error("held message is scheduled")
	}
	if err := q.Release(id); err != nil {
		t.Fatal(err)
	}
	d.waitCalls(t, 2) // released = due now
	waitAttempts(t, q, id, 2)

	if err := q.Bounce(id); err != nil {
		t.Fatal(err)
	}
	calls := d.waitCalls(t, 3)
	if b := reports(calls); len(b) != 1 || !strings.Contains(b[0].body, "Status: 5.0.0") {
		t.Fatalf("admin bounce: %+v", b)
	}
	waitGone(t, q, id)

	id2 := receiveEnv(t, q, Envelope{From: "s@src.test", Rcpts: []Rcpt{{Addr: "later@x.test"}}}, origBody)
	d.waitCalls(t, 4)
	waitAttempts(t, q, id2, 1)
	if err := q.Delete(id2); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(q.bodyPath(id2)); !os.IsNotExist(err) {
		t.Error("spool file of a deleted message remains")
	}
	if err := q.Delete(id2); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
}

// failingFile fails with ENOSPC after limit bytes, like a full disk.
type failingFile struct {
	f     *os.File
	limit int
}

func (ff *failingFile) Write(p []byte) (int, error) {
	if len(p) > ff.limit {
		n, _ := ff.f.Write(p[:ff.limit])
		ff.limit = 0
		return n, &os.PathError{Op: "write", Path: ff.f.Name(), Err: syscall.ENOSPC}
	}
	ff.limit -= len(p)
	return ff.f.Write(p)
}
func (ff *failingFile) Sync() error  { return ff.f.Sync() }
func (ff *failingFile) Close() error { return ff.f.Close() }

func TestDiskFullLeavesNoTrace(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{CreateFile: func(path string) (File, error) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		return &failingFile{f: f, limit: 100 << 10}, err
	}})
	defer q.Close()
	in, err := q.NewMessage(Envelope{From: "s@src.test", Rcpts: []Rcpt{{Addr: "a@x.test"}}})
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 1<<20)
	io.WriteString(in, big) // fails somewhere inside; the error is sticky
	err = in.Commit(context.Background())
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("commit error %v, want ErrNoSpace", err)
	}
	if files := spoolFiles(t, q); len(files) != 0 {
		t.Errorf("half-written spool file left: %v", files)
	}
	if st, _ := q.Stats(); st.Messages != 0 {
		t.Errorf("failed message visible: %+v", st)
	}
}

// Reports return the message as stored: prepended fields included (they
// are part of the message), with RET=HDRS as with the whole message.
func TestReportsIncludePrependedFields(t *testing.T) {
	d := newRecorder(map[string]int{"bad@x.test": 550})
	q := runQueue(t, Options{}, d)
	const added = "Authentication-Results: mx.test; spf=pass\r\n"
	for _, ret := range []string{"HDRS", ""} {
		in, err := q.NewMessage(Envelope{From: "s-" + strings.ToLower(ret) + "@src.test", Ret: ret, Rcpts: []Rcpt{{Addr: "bad@x.test"}}})
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(in, origBody)
		if err := in.Prepend([]byte(added)); err != nil {
			t.Fatal(err)
		}
		if err := in.Commit(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	calls := d.waitCalls(t, 4)
	b := reports(calls)
	if len(b) != 2 {
		t.Fatalf("%d reports, want 2", len(b))
	}
	for _, r := range b {
		if !strings.Contains(r.body, added+"Subject: original\r\n") {
			t.Errorf("report to %v lacks the prepended field on top of the returned header:\n%s", r.rcpts, r.body)
		}
		if full := strings.Contains(r.body, "the body"); full != (r.rcpts[0] == "s-@src.test") {
			t.Errorf("report to %v: body returned = %v", r.rcpts, full)
		}
	}
	for _, c := range calls {
		if c.from != "" && !strings.HasPrefix(c.body, added+"Subject: original") {
			t.Errorf("delivered message does not start with the prepended field: %q", c.body)
		}
	}
}

// Issue 16, section 3: the DSN parameters reach the Deliverer, and a
// "relayed" report (NOTIFY=SUCCESS) is sent only when the next hop did
// not take the parameters (it lacks DSN); with them, success is its job.
func TestDSNParametersPassedAndRelayedOnlyWithoutDSN(t *testing.T) {
	d := newRecorder(nil)
	d.dsn = map[string]bool{"withdsn@x.test": true}
	q := runQueue(t, Options{}, d)
	receiveEnv(t, q, Envelope{From: "a@src.test", Ret: "HDRS", EnvID: "env-1", Rcpts: []Rcpt{
		{Addr: "withdsn@x.test", Notify: []string{"SUCCESS", "FAILURE"}, ORcpt: "rfc822;list@x.test"},
	}}, origBody)
	receiveEnv(t, q, Envelope{From: "b@src.test", Rcpts: []Rcpt{
		{Addr: "nodsn@x.test", Notify: []string{"SUCCESS"}},
		{Addr: "plain@x.test"},
	}}, origBody)
	calls := d.waitCalls(t, 3) // 2 messages, 1 report
	b := reports(calls)
	if len(b) != 1 || b[0].rcpts[0] != "b@src.test" || !strings.Contains(b[0].body, "Action: relayed") ||
		!strings.Contains(b[0].body, "Final-Recipient: rfc822; nodsn@x.test") {
		t.Fatalf("reports %+v, want one relayed report for nodsn@x.test", b)
	}
	if strings.Contains(b[0].body, "plain@x.test") {
		t.Errorf("a recipient without NOTIFY=SUCCESS in the relayed report:\n%s", b[0].body)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var first *Message
	for _, m := range d.msgs {
		if m.From == "a@src.test" {
			first = m
		}
	}
	p := first.Params["withdsn@x.test"]
	if first.Ret != "HDRS" || first.EnvID != "env-1" || strings.Join(p.Notify, ",") != "SUCCESS,FAILURE" || p.ORcpt != "rfc822;list@x.test" {
		t.Errorf("message DSN parameters: ret %q envid %q params %+v", first.Ret, first.EnvID, first.Params)
	}
}
