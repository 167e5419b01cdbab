package queue

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openTest(t testing.TB, dir string, opts Options) *Queue {
	t.Helper()
	opts.Logger = quietLog()
	q, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func receive(t *testing.T, q *Queue, body string, rcpts ...string) string {
	t.Helper()
	env := Envelope{From: "sender@src.test"}
	for _, r := range rcpts {
		env.Rcpts = append(env.Rcpts, Rcpt{Addr: r})
	}
	in, err := q.NewMessage(env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(in, body); err != nil {
		t.Fatal(err)
	}
	if err := in.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	return in.ID()
}

func spoolFiles(t *testing.T, q *Queue) []string {
	t.Helper()
	es, err := os.ReadDir(q.spoolDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestCommitAbortAndRestart(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inline int
	}{{"inline in bbolt", 0}, {"spool file", -1}} {
		t.Run(tc.name, func(t *testing.T) { testCommitAbortAndRestart(t, tc.inline) })
	}
}

func testCommitAbortAndRestart(t *testing.T, inline int) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{InlineMax: inline})
	const body = "Subject: hi\r\n\r\nbody\r\n"
	id := receive(t, q, body, "a@x.test", "b@x.test")

	// Aborted message: no record, no file.
	in, err := q.NewMessage(Envelope{Rcpts: []Rcpt{{Addr: "c@x.test"}}})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(in, strings.Repeat("partial\r\n", 10000))
	in.Abort()
	if _, err := q.Get(in.ID()); err == nil {
		t.Fatal("aborted message is visible")
	}

	// Unacknowledged message left behind by a crash: a spool file without
	// a record (Commit never reached bbolt). 100 KiB: past any inline size.
	crashed, err := q.NewMessage(Envelope{Rcpts: []Rcpt{{Addr: "d@x.test"}}})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(crashed, strings.Repeat("half a message\r\n", 7000))
	crashed.w.Flush()
	crashed.f.Close()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	q = openTest(t, dir, Options{InlineMax: inline})
	defer q.Close()
	env, err := q.Get(id)
	if err != nil {
		t.Fatalf("acknowledged message lost across restart: %v", err)
	}
	if env.Size != int64(len(body)) || len(env.Rcpts) != 2 || env.Rcpts[0].Status != StatusPending {
		t.Errorf("envelope after restart: %+v", env)
	}
	wantFiles := []string{id}
	if env.Inline {
		wantFiles = nil
	}
	if files := spoolFiles(t, q); strings.Join(files, ",") != strings.Join(wantFiles, ",") {
		t.Errorf("spool after restart = %v, want %v", files, wantFiles)
	}
	msg, err := q.Message(id)
	if err != nil {
		t.Fatal(err)
	}
	r, err := msg.Open()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if string(got) != body {
		t.Errorf("body after restart = %q", got)
	}
}

func TestIDsSortByArrivalAndAreUnique(t *testing.T) {
	var g idGen
	t0 := time.Unix(1_800_000_000, 0)
	var ids []string
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := g.next(t0.Add(time.Duration(i/10) * time.Microsecond)) // same instant 10 times
		if seen[id] || !validID(id) {
			t.Fatalf("id %q duplicate or invalid", id)
		}
		seen[id] = true
		ids = append(ids, id)
	}
	if !sort.StringsAreSorted(ids) {
		t.Error("IDs do not sort by arrival")
	}
	if validID("../../etc/pass") || validID("0123456789ABCDEU") {
		t.Error("validID accepts a bad name")
	}
}

func TestBackoff(t *testing.T) {
	q := &Queue{opts: Options{MinBackoff: 300 * time.Second, MaxBackoff: 4000 * time.Second}}
	for n, want := range map[int]float64{1: 300, 2: 600, 3: 1200, 4: 2400, 5: 4000, 20: 4000} {
		for i := 0; i < 50; i++ {
			got := q.backoff(n).Seconds()
			if got < 0.8*want || got >= 1.2*want {
				t.Fatalf("backoff(%d) = %vs, want %vs +-20%%", n, got, want)
			}
		}
	}
	// Float arithmetic: a 1.5s minimum must not truncate to 1s.
	q.opts.MinBackoff, q.opts.MaxBackoff = 1500*time.Millisecond, time.Hour
	if got := q.backoff(1); got < 1200*time.Millisecond {
		t.Errorf("backoff(1) with 1.5s minimum = %v", got)
	}
}

// scripted answers each recipient with the code in its map (default 250)
// and records attempts.
type scripted struct {
	mu       sync.Mutex
	codes    map[string][]int // per recipient, one code per attempt
	attempts map[string]int
	done     chan string
}

func (s *scripted) Deliver(ctx context.Context, m *Message) []Result {
	rc, err := m.Open()
	if err != nil {
		panic(err)
	}
	rc.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	var rs []Result
	for _, r := range m.Rcpts {
		code := 250
		if c := s.codes[r]; s.attempts[r] < len(c) {
			code = c[s.attempts[r]]
		}
		s.attempts[r]++
		rs = append(rs, Result{Rcpt: r, Code: code, Relay: "test"})
		s.done <- r
	}
	return rs
}

func TestDeliveryOutcomes(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{MinBackoff: 20 * time.Millisecond, MaxBackoff: 40 * time.Millisecond})
	d := &scripted{
		codes: map[string][]int{
			"bad@x.test":   {550},
			"flaky@x.test": {451, 0, 250},
		},
		attempts: map[string]int{},
		done:     make(chan string, 100),
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error)
	go func() { ran <- q.Run(ctx, d, time.Second) }()

	id := receive(t, q, "x\r\n", "ok@x.test", "bad@x.test", "flaky@x.test")
	want := map[string]int{"ok@x.test": 1, "bad@x.test": 1, "flaky@x.test": 3}
	total := 5
	for i := 0; i < total; i++ {
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d attempts happened", i, total)
		}
	}
	// Wait for the message to be removed after the last attempt.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := q.Get(id); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("message not removed after all recipients are final")
		}
		time.Sleep(5 * time.Millisecond) // polling queue state; no event to await
	}
	cancel()
	<-ran
	d.mu.Lock()
	for r, n := range want {
		if d.attempts[r] != n {
			t.Errorf("%s: %d attempts, want %d (a final recipient must not be retried)", r, d.attempts[r], n)
		}
	}
	d.mu.Unlock()
	if files := spoolFiles(t, q); len(files) != 0 {
		t.Errorf("spool files left after removal: %v", files)
	}
	q.Close()
}

func TestDeferredStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{MinBackoff: time.Hour, MaxBackoff: time.Hour})
	d := &scripted{codes: map[string][]int{"a@x.test": {421}}, attempts: map[string]int{}, done: make(chan string, 10)}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error)
	go func() { ran <- q.Run(ctx, d, time.Second) }()
	id := receive(t, q, "x\r\n", "a@x.test")
	<-d.done
	// The result is stored after Deliver returns; wait for Attempts to show.
	var env *Envelope
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var err error
		if env, err = q.Get(id); err == nil && env.Attempts == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("attempt not recorded")
		}
	}
	cancel()
	<-ran
	q.Close()

	q = openTest(t, dir, Options{})
	defer q.Close()
	env, err := q.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if env.Rcpts[0].Status != StatusPending || env.Rcpts[0].LastReply != "421 4.0.0" || env.Attempts != 1 {
		t.Errorf("after restart: %+v", env.Rcpts[0])
	}
	if d := env.NextAttempt.Sub(env.Arrival); d < 40*time.Minute {
		t.Errorf("next attempt after %v, want about an hour", d)
	}
	due, _, err := q.due(time.Now(), 10)
	if err != nil || len(due) != 0 {
		t.Errorf("deferred message is due at once: %v %v", due, err)
	}
}

func TestFlushMatchingSkipsHeld(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	defer q.Close()
	later := time.Now().Add(time.Hour)
	var ids []string
	for _, r := range []string{"a@one.test", "b@two.test", "c@one.test"} {
		id := receive(t, q, "x\r\n", r)
		if err := q.update(id, func(env *Envelope) error { env.NextAttempt = later; return nil }); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := q.Hold(ids[2]); err != nil {
		t.Fatal(err)
	}
	n, err := q.FlushMatching(Filter{Domain: "one.test"})
	if err != nil || n != 1 {
		t.Fatalf("flushed %d, %v; want 1 (the other one.test message is held)", n, err)
	}
	due, _, _ := q.due(time.Now().Add(time.Second), 10)
	if len(due) != 1 || due[0].ID != ids[0] {
		t.Errorf("due after flush: %v", due)
	}
}
