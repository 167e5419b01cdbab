package delivery

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxedge/mxedge/internal/smtptest"
	"github.com/mxedge/mxedge/queue"
)

func TestSlowStart(t *testing.T) {
	l := newLimiter(2, 4, 100)
	ctx := context.Background()
	now := time.Now()
	take := func() bool {
		ok, _ := l.acquire(ctx, "d", 10*time.Millisecond)
		return ok
	}
	if !take() || !take() {
		t.Fatal("initial window of 2 not available")
	}
	if ok, why := l.acquire(ctx, "d", 10*time.Millisecond); ok || why != "destination concurrency limit reached" {
		t.Fatalf("third slot in a window of 2: %v %q", ok, why)
	}
	if ok, _ := l.acquire(ctx, "other", 10*time.Millisecond); !ok {
		t.Fatal("another destination is not limited by this one")
	}
	l.release("other", false, false, now)
	// Each success widens the window by one, up to the limit.
	l.release("d", true, false, now)
	l.release("d", true, false, now)
	if w := l.window("d"); w != 4 {
		t.Fatalf("window after 2 successes: %d, want 4", w)
	}
	for range 4 {
		if !take() {
			t.Fatal("window of 4 not available")
		}
	}
	if take() {
		t.Fatal("fifth slot above the limit of 4")
	}
	// A failed connection halves it.
	l.release("d", false, true, now)
	if w := l.window("d"); w != 2 {
		t.Fatalf("window after a failure: %d, want 2", w)
	}
	l.release("d", false, true, now)
	l.release("d", false, true, now)
	if w := l.window("d"); w != 1 {
		t.Fatalf("window after three failures: %d, want 1", w)
	}
	l.release("d", false, false, now)
	// A waiter gets the slot when it frees.
	if !take() {
		t.Fatal("window of 1 not available")
	}
	got := make(chan bool)
	go func() {
		ok, _ := l.acquire(ctx, "d", 5*time.Second)
		got <- ok
	}()
	time.Sleep(20 * time.Millisecond)
	l.release("d", true, false, now)
	if !<-got {
		t.Fatal("the waiter did not get the freed slot")
	}
}

func TestGlobalLimit(t *testing.T) {
	l := newLimiter(5, 20, 2)
	ctx := context.Background()
	for _, d := range []string{"a", "b"} {
		if ok, _ := l.acquire(ctx, d, time.Millisecond); !ok {
			t.Fatal(d)
		}
	}
	if ok, why := l.acquire(ctx, "c", time.Millisecond); ok || why != "outbound connection limit reached" {
		t.Fatalf("third connection over the global limit of 2: %v %q", ok, why)
	}
}

// A destination that is slow (it holds the greeting back) must not delay
// deliveries to a healthy one: deliveries to it beyond its window give up
// after slotWait, and the recipients of a healthy destination in the same
// message are delivered in parallel. Timing is asserted relative to the
// slow destination's delay.
func TestSlowDestinationDoesNotDelayHealthy(t *testing.T) {
	const slow = 3 * time.Second
	release := make(chan struct{})
	tarpit := startServer(t, "127.0.0.6:0")
	tarpit.On(smtptest.Greeting, func(*smtptest.Session, string) string {
		select {
		case <-release:
		case <-time.After(slow):
		}
		return ""
	})
	defer close(release)
	be := startServer(t, "127.0.0.3:0")
	d := newDeliverer(t, map[string]string{"slow.test": tarpit.Addr(), "fast.test": be.Addr()})
	d.lim.slotWait = slow / 10

	// Ten messages to the slow destination at once: the first
	// initial_destination_concurrency (5) connect and wait, the others
	// give up after slotWait.
	var wg sync.WaitGroup
	slowResults := make(chan queue.Result, 10)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slowResults <- d.Deliver(context.Background(), spooled(t, "s@src.test", "x\r\n", "a@slow.test"))[0]
		}()
	}
	if err := tarpit.WaitConns(5, slow/4); err != nil { // the slow deliveries hold their slots
		t.Fatal(err)
	}

	start := time.Now()
	// One message to both: the healthy recipient arrives while the slow
	// one still waits for its greeting.
	mixed := make(chan []queue.Result, 1)
	go func() {
		mixed <- d.Deliver(context.Background(), spooled(t, "s@src.test", "y\r\n", "b@slow.test", "c@fast.test"))
	}()
	if _, err := be.WaitMessages(1, slow); err != nil {
		t.Fatal(err)
	}
	fast := time.Since(start)
	// A message to the healthy destination alone.
	start = time.Now()
	if r := d.Deliver(context.Background(), spooled(t, "s@src.test", "z\r\n", "d@fast.test"))[0]; r.Code != 250 {
		t.Fatalf("healthy: %+v", r)
	}
	alone := time.Since(start)
	if fast > slow/4 || alone > slow/4 {
		t.Errorf("healthy deliveries took %v and %v while the slow destination takes %v", fast, alone, slow)
	}

	wg.Wait()
	close(slowResults)
	deferred := 0
	for r := range slowResults {
		switch {
		case r.Code == 250:
		case r.Code == 0 && r.Enhanced == "4.4.5" && strings.Contains(r.Text, "destination concurrency limit reached for "+tarpit.Addr()):
			deferred++
		default:
			t.Errorf("slow: %+v", r)
		}
	}
	if deferred < 4 {
		t.Errorf("%d of 10 deliveries to the slow destination deferred for its concurrency limit, want at least 4", deferred)
	}
	rs := byRcpt(<-mixed)
	if rs["c@fast.test"].Code != 250 {
		t.Errorf("mixed message, healthy recipient: %+v", rs["c@fast.test"])
	}
	if n := tarpit.Conns(); n > 6 {
		t.Errorf("%d connections to the slow destination, want at most its window", n)
	}
}
