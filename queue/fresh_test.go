package queue

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingDeliverer delivers everything, counting attempts per message
// and the most attempts running at once, and notes the scheduler's scan
// count when each attempt starts.
type countingDeliverer struct {
	q        *Queue
	mu       sync.Mutex
	attempts map[string]int
	scansAt  map[string]int64
	running  atomic.Int32
	maxRun   atomic.Int32
	done     chan string
}

func (d *countingDeliverer) Deliver(ctx context.Context, m *Message) []Result {
	n := d.running.Add(1)
	defer d.running.Add(-1)
	for {
		if old := d.maxRun.Load(); n <= old || d.maxRun.CompareAndSwap(old, n) {
			break
		}
	}
	d.mu.Lock()
	d.attempts[m.ID]++
	d.scansAt[m.ID] = d.q.scans.Load()
	d.mu.Unlock()
	rs := make([]Result, len(m.Rcpts))
	for i, r := range m.Rcpts {
		rs[i] = Result{Rcpt: r, Code: 250, Relay: "test"}
	}
	d.done <- m.ID
	return rs
}

func newCounting(q *Queue, buf int) *countingDeliverer {
	return &countingDeliverer{q: q, attempts: map[string]int{}, scansAt: map[string]int64{}, done: make(chan string, buf)}
}

// waitScans waits until the scheduler has scanned n times.
func waitScans(t *testing.T, q *Queue, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for q.scans.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("scheduler scanned %d times, want %d", q.scans.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// A message committed while Run runs starts without a scan of the
// schedule (which decodes every due record again): Commit hands it over.
func TestFreshMessageStartsWithoutScan(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{Concurrency: 4})
	t.Cleanup(func() { q.Close() })
	d := newCounting(q, 1)
	runOn(t, q, d)
	waitScans(t, q, 1) // the scan at start; with nothing queued, the last until a message

	id := receive(t, q, "Subject: x\r\n\r\nbody\r\n", "a@x.test")
	if got := <-d.done; got != id {
		t.Fatalf("delivered %s, want %s", got, id)
	}
	d.mu.Lock()
	at := d.scansAt[id]
	d.mu.Unlock()
	if at != 1 {
		t.Errorf("attempt started after %d scans, want 1 (the scan at start): Commit did not hand the message over", at)
	}
	waitEmpty(t, q)
	if s := q.scans.Load(); s != 1 {
		t.Errorf("%d scans after the delivery, want 1: a removal without a backlog needs none", s)
	}
}

// Fresh messages from many sessions at once: each attempted exactly once
// (never by both the hand-over and a scan), never more than Concurrency
// at a time, all removed.
func TestFreshMessagesOnceEachWithinConcurrency(t *testing.T) {
	const conc, sessions, per = 3, 8, 10
	q := openTest(t, t.TempDir(), Options{Concurrency: conc})
	t.Cleanup(func() { q.Close() })
	d := newCounting(q, sessions*per)
	runOn(t, q, d)

	var wg sync.WaitGroup
	ids := make(chan string, sessions*per)
	for s := 0; s < sessions; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				in, err := q.NewMessage(Envelope{From: "s@src.test", Rcpts: []Rcpt{{Addr: fmt.Sprintf("r%d@x.test", i)}}})
				if err != nil {
					t.Error(err)
					return
				}
				fmt.Fprintf(in, "Subject: %d\r\n\r\nbody\r\n", i)
				if err := in.Commit(context.Background()); err != nil {
					t.Error(err)
					return
				}
				ids <- in.ID()
			}
		}()
	}
	wg.Wait()
	close(ids)
	for range sessions * per {
		<-d.done
	}
	waitEmpty(t, q)
	d.mu.Lock()
	defer d.mu.Unlock()
	for id := range ids {
		if n := d.attempts[id]; n != 1 {
			t.Errorf("%s attempted %d times, want 1", id, n)
		}
	}
	if m := d.maxRun.Load(); m > conc {
		t.Errorf("%d attempts at once, Concurrency is %d", m, conc)
	}
}

// A message handed over when Run is stopping is not lost: its in-flight
// mark ends and the next Run finds it by the scan.
func TestFreshMessageLeftAtStopIsDue(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{Concurrency: 2})
	t.Cleanup(func() { q.Close() })
	q.mu.Lock()
	q.running = true // as Run between its start and its stop, taking nothing
	q.mu.Unlock()
	id := receive(t, q, "Subject: x\r\n\r\nbody\r\n", "a@x.test")
	if !q.isInflight(id) {
		t.Fatal("committed message not handed over")
	}
	q.stopFresh()
	if q.isInflight(id) {
		t.Fatal("still in flight after the stop")
	}
	d := newCounting(q, 1)
	runOn(t, q, d)
	select {
	case got := <-d.done:
		if got != id {
			t.Fatalf("delivered %s, want %s", got, id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("message left at the stop never attempted")
	}
}

// While due messages wait for a worker (a backlog), a new message is not
// handed over: it waits in the schedule behind them, in next-attempt
// order, so retries are not starved by a stream of new mail.
func TestFreshMessageWaitsBehindBacklog(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{Concurrency: 2})
	defer q.Close()
	q.mu.Lock()
	q.running, q.backlog = true, true // as Run after a look that found more due than workers
	q.mu.Unlock()
	id := receive(t, q, "Subject: x\r\n\r\nbody\r\n", "a@x.test")
	if q.isInflight(id) {
		t.Fatal("a new message was handed over past a backlog")
	}
	q.setBacklog(false)
	id2 := receive(t, q, "Subject: y\r\n\r\nbody\r\n", "a@x.test")
	if !q.isInflight(id2) {
		t.Fatal("without a backlog a new message was not handed over")
	}
	q.stopFresh()
}

// The scheduler sets the backlog when a message finds every worker busy,
// and clears it once a look at the schedule started every due message.
func TestBacklogSetWhenFullClearedAfterScan(t *testing.T) {
	g := &gatedDeliverer{started: make(chan string), release: make(chan struct{})}
	q := runQueue(t, Options{Concurrency: 1, MinBackoff: time.Hour, MaxBackoff: time.Hour}, g)
	waitScans(t, q, 1)

	a := receive(t, q, "Subject: a\r\n\r\nbody\r\n", "a@x.test")
	if got := <-g.started; got != a {
		t.Fatalf("started %s, want %s", got, a)
	}
	b := receive(t, q, "Subject: b\r\n\r\nbody\r\n", "b@x.test") // no free worker
	backlog := func() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.backlog }
	deadline := time.Now().Add(10 * time.Second)
	for !backlog() {
		if time.Now().After(deadline) {
			t.Fatal("no backlog while a message waits for the only worker")
		}
		time.Sleep(time.Millisecond)
	}
	g.release <- struct{}{} // a is deferred for an hour; the scan starts b
	if got := <-g.started; got != b {
		t.Fatalf("started %s, want %s", got, b)
	}
	if backlog() {
		t.Error("backlog still set after the scan started every due message")
	}
	g.release <- struct{}{}
}
