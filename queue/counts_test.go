package queue

import (
	"context"
	"errors"
	"testing"
	"time"
)

// codeDeliverer answers every recipient with code; seen records the
// live counts while the attempt runs.
type codeDeliverer struct {
	q    *Queue
	code int
	seen Counts
}

func (d *codeDeliverer) Deliver(_ context.Context, m *Message) []Result {
	d.seen, _ = d.q.Counts()
	var rs []Result
	for _, r := range m.Rcpts {
		rs = append(rs, Result{Rcpt: r, Code: d.code, Relay: "test"})
	}
	return rs
}

// TestLiveCounts: the counts behind mxedge_queue_messages move exactly
// with receive, defer, hold, release, deliver, bounce and delete, agree
// with the full pass of Stats at every step, and survive a restart.
func TestLiveCounts(t *testing.T) {
	dir := t.TempDir()
	clock := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	q := openTest(t, dir, Options{Now: now})
	defer func() { q.Close() }()

	check := func(step string, incoming, deferred, hold int, oldest time.Time) {
		t.Helper()
		c, err := q.Counts()
		if err != nil {
			t.Fatal(err)
		}
		if c.Incoming != incoming || c.Deferred != deferred || c.Hold != hold || c.Active != 0 || !c.Oldest.Equal(oldest) {
			t.Errorf("%s: counts %+v, want incoming %d deferred %d hold %d oldest %v", step, c, incoming, deferred, hold, oldest)
		}
		st, err := q.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.ByState[StateIncoming] != c.Incoming || st.ByState[StateDeferred] != c.Deferred || st.ByState[StateHold] != c.Hold {
			t.Errorf("%s: counts %+v disagree with the scan %v", step, c, st.ByState)
		}
	}
	attempt := func(id string, code int) Counts {
		t.Helper()
		env, err := q.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		env, ok := q.claimDue(env)
		if !ok {
			t.Fatalf("%s not due", id)
		}
		d := &codeDeliverer{q: q, code: code}
		q.attempt(context.Background(), d, env)
		return d.seen
	}

	check("empty", 0, 0, 0, time.Time{})
	t0 := clock
	a := receive(t, q, "a\r\n", "a@x.test")
	clock = clock.Add(time.Minute)
	b := receive(t, q, "b\r\n", "b@x.test")
	clock = clock.Add(time.Minute)
	c := receive(t, q, "c\r\n", "c@x.test")
	check("received 3", 3, 0, 0, t0)

	if err := q.Hold(c); err != nil {
		t.Fatal(err)
	}
	check("held c", 2, 0, 1, t0)

	during := attempt(a, 451)
	if during.Active != 1 || during.Incoming != 2 {
		t.Errorf("during the attempt: %+v, want active 1 (counted in incoming 2)", during)
	}
	check("a deferred", 1, 1, 1, t0)

	if _, err := q.FlushMatching(Filter{}); err != nil {
		t.Fatal(err)
	}
	check("flushed", 1, 1, 1, t0) // due now, still deferred

	attempt(b, 250)
	check("b delivered", 0, 1, 1, t0)

	if err := q.Release(c); err != nil {
		t.Fatal(err)
	}
	check("c released", 1, 1, 0, t0)

	if err := q.Hold(a); err != nil {
		t.Fatal(err)
	}
	check("a held", 1, 0, 1, t0)
	if err := q.Release(a); err != nil {
		t.Fatal(err)
	}
	check("a released", 1, 1, 0, t0) // tried before: deferred again

	// A permanent failure removes c and queues its bounce (a new message).
	attempt(c, 550)
	check("c bounced", 1, 1, 0, t0)

	if err := q.Delete(a); err != nil {
		t.Fatal(err)
	}
	check("a deleted", 1, 0, 0, clock) // only the bounce is left

	// Restart: Open's pass counts what is stored.
	q.Close()
	q = openTest(t, dir, Options{Now: now})
	check("reopened", 1, 0, 0, clock)
}

// TestRequeue: a deferred message deep in its backoff is due now with
// its attempt count reset, so the next temporary failure waits
// MinBackoff again; held and in-flight messages are refused.
func TestRequeue(t *testing.T) {
	clock := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	q := openTest(t, t.TempDir(), Options{Now: func() time.Time { return clock },
		MinBackoff: time.Minute, MaxBackoff: time.Hour})
	defer q.Close()
	id := receive(t, q, "x\r\n", "a@x.test", "b@x.test")
	for range 5 { // five temporary failures: the backoff has grown
		env, _ := q.Get(id)
		clock = env.NextAttempt
		env, ok := q.claimDue(env)
		if !ok {
			t.Fatal("not due")
		}
		q.attempt(context.Background(), &codeDeliverer{q: q, code: 451}, env)
	}
	before, _ := q.Get(id)
	if before.Attempts != 5 || before.NextAttempt.Sub(clock) < 10*time.Minute {
		t.Fatalf("setup: %d attempts, next in %v", before.Attempts, before.NextAttempt.Sub(clock))
	}
	if err := q.Requeue(id); err != nil {
		t.Fatal(err)
	}
	env, _ := q.Get(id)
	if env.Attempts != 0 || !env.NextAttempt.Equal(clock) || q.State(env) != StateIncoming || len(env.pending()) != 2 {
		t.Errorf("after requeue: attempts %d, next %v (now %v), state %s, pending %v",
			env.Attempts, env.NextAttempt, clock, q.State(env), env.pending())
	}
	if c, _ := q.Counts(); c.Incoming != 1 || c.Deferred != 0 {
		t.Errorf("counts after requeue: %+v", c)
	}
	due, _, _ := q.due(clock, 10)
	if len(due) != 1 || due[0].ID != id {
		t.Fatalf("due after requeue: %v", due)
	}
	// The next temporary failure waits the first backoff again.
	env, _ = q.claimDue(due[0])
	q.attempt(context.Background(), &codeDeliverer{q: q, code: 451}, env)
	env, _ = q.Get(id)
	if wait := env.NextAttempt.Sub(clock); env.Attempts != 1 || wait > 72*time.Second {
		t.Errorf("after the next failure: attempts %d, retry in %v, want 1 and about 1m", env.Attempts, wait)
	}

	if !q.claim(id) {
		t.Fatal("claim")
	}
	if err := q.Requeue(id); !errors.Is(err, ErrInFlight) {
		t.Errorf("requeue in flight: %v, want ErrInFlight", err)
	}
	q.setInflight(id, false)
	if err := q.Hold(id); err != nil {
		t.Fatal(err)
	}
	if err := q.Requeue(id); !errors.Is(err, ErrHeld) {
		t.Errorf("requeue held: %v, want ErrHeld", err)
	}
	if err := q.Requeue("0000000000000000"); !errors.Is(err, ErrNotFound) {
		t.Errorf("requeue unknown: %v, want ErrNotFound", err)
	}
}
