package queue

import (
	"context"
	"errors"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mxedge/mxedge/internal/fakeclock"
)

// gatedDeliverer defers every recipient (451), each attempt waiting until
// the test lets it finish.
type gatedDeliverer struct {
	started chan string
	release chan struct{}
	code    int // the reply to every recipient; 0: 451
}

func (g *gatedDeliverer) Deliver(ctx context.Context, m *Message) []Result {
	select {
	case g.started <- m.ID:
	case <-ctx.Done():
	}
	select {
	case <-g.release:
	case <-ctx.Done():
	}
	code := g.code
	if code == 0 {
		code = 451
	}
	rs := make([]Result, len(m.Rcpts))
	for i, r := range m.Rcpts {
		rs[i] = Result{Rcpt: r, Code: code, Text: "reply"}
	}
	return rs
}

// schedEntries are id's schedule entries.
func schedEntries(t *testing.T, q *Queue, id string) []time.Time {
	t.Helper()
	var out []time.Time
	err := q.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSched).ForEach(func(k, _ []byte) error {
			if at, kid := parseSchedKey(k); kid == id {
				out = append(out, at)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// An admin flush while the message's attempt runs moved its schedule
// entry; the attempt's result must replace that entry too. It used to
// stay: the message was due again at once, and after every attempt,
// ignoring the backoff (found by TestExpiryAndDelayWarning).
func TestFlushDuringAttemptLeavesOneScheduleEntry(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	g := &gatedDeliverer{started: make(chan string, 10), release: make(chan struct{})}
	q := runQueue(t, Options{Now: clock.Now, MinBackoff: time.Hour, MaxBackoff: time.Hour}, g)
	id := receiveEnv(t, q, Envelope{From: "s@src.test", Rcpts: []Rcpt{{Addr: "r@x.test"}}}, origBody)
	<-g.started
	clock.Advance(time.Minute)
	if err := q.Flush(id); err != nil { // in flight: moves the entry to now
		t.Fatal(err)
	}
	close(g.release)
	waitAttempts(t, q, id, 1)
	env, err := q.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	got := schedEntries(t, q, id)
	if len(got) != 1 || !got[0].Equal(env.NextAttempt) || !env.NextAttempt.After(clock.Now()) {
		t.Fatalf("schedule entries %v for next attempt %v (now %v): want exactly the backoff's", got, env.NextAttempt, clock.Now())
	}
	select {
	case <-g.started:
		t.Fatal("attempted again before its next attempt")
	default:
	}
}

// A stale entry (left by that race in an older version) is never due: the
// scheduler drops it instead of attempting the message.
func TestStaleScheduleEntryIsDropped(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	g := &gatedDeliverer{started: make(chan string, 10), release: make(chan struct{})}
	close(g.release)
	q := runQueue(t, Options{Now: clock.Now, MinBackoff: time.Hour, MaxBackoff: time.Hour}, g)
	id := receiveEnv(t, q, Envelope{From: "s@src.test", Rcpts: []Rcpt{{Addr: "r@x.test"}}}, origBody)
	<-g.started
	waitAttempts(t, q, id, 1)
	stale := clock.Now().Add(-time.Second)
	if err := q.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSched).Put(schedKey(stale, id), nil)
	}); err != nil {
		t.Fatal(err)
	}
	due, _, err := q.due(clock.Now(), 10)
	if err != nil || len(due) != 0 {
		t.Fatalf("due %d messages (%v), want none: the entry is not the record's", len(due), err)
	}
	env, _ := q.Get(id)
	if got := schedEntries(t, q, id); len(got) != 1 || !got[0].Equal(env.NextAttempt) {
		t.Fatalf("schedule entries %v, want only %v", got, env.NextAttempt)
	}
}

// The same race when the attempt delivers: remove takes the moved entry
// with the record.
func TestFlushDuringDeliveredAttemptLeavesNoScheduleEntry(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	g := &gatedDeliverer{started: make(chan string, 10), release: make(chan struct{}), code: 250}
	q := runQueue(t, Options{Now: clock.Now}, g)
	id := receiveEnv(t, q, Envelope{From: "s@src.test", Rcpts: []Rcpt{{Addr: "r@x.test"}}}, origBody)
	<-g.started
	clock.Advance(time.Minute)
	if err := q.Flush(id); err != nil {
		t.Fatal(err)
	}
	close(g.release)
	waitGone(t, q, id)
	if got := schedEntries(t, q, id); len(got) != 0 {
		t.Fatalf("schedule entries %v left for a delivered message", got)
	}
}

// CheckSpace asks the file system once per spaceFresh while far more than
// the reserve is free, and at every call when close to it (a sudden drop
// there is refused at once).
func TestCheckSpaceCachesOnlyPlenty(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	var calls int
	free := uint64(100 << 30)
	q := openTest(t, t.TempDir(), Options{Now: clock.Now, Reserve: 15 << 20,
		FreeSpace: func(string) (uint64, error) { calls++; return free, nil }})
	for range 3 {
		if err := q.CheckSpace(); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 1 {
		t.Errorf("%d statfs for 3 checks with 100 GiB free, want 1", calls)
	}
	clock.Advance(spaceFresh)
	free = 20 << 20 // within the margin: asked every time
	for range 2 {
		if err := q.CheckSpace(); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 3 {
		t.Errorf("%d statfs in all, want 3 (one more per check near the reserve)", calls)
	}
	free = 1 << 20
	if err := q.CheckSpace(); !errors.Is(err, ErrNoSpace) {
		t.Errorf("below the reserve: %v, want ErrNoSpace", err)
	}
}
