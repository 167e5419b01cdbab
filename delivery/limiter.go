package delivery

import (
	"context"
	"sync"
	"time"
)

// Concurrency limits, like Postfix's queue manager: at most max
// transactions in flight per destination (a domain's MX hosts, a route,
// the smarthost), at most global over all destinations.
//
// Slow start (Postfix initial_destination_concurrency and the
// concurrency feedback): a destination starts with a window of initial
// slots; each transaction that got a working connection widens it by one,
// up to max; an attempt in which no address could be connected halves it
// (at least 1). So a destination that is down or overloaded gets one or
// two connections, not max, while a healthy one grows to max within a
// burst.
//
// Choice of what happens at a full window: Deliver waits for a slot, with
// its context, up to lim.slotWait (DefaultSlotWait, 5 s). A burst to one
// destination queues up behind its slots for the fraction of a second a
// transaction takes, instead of being deferred for a whole backoff; a
// destination whose transactions are slow (a tarpit, a dead host with
// long connect timeouts) makes its waiters give up after slotWait with a
// deferral (Code 0, 4.4.5), which frees their places among the queue's
// concurrent attempts (queue.concurrency) for messages to other
// destinations. Waiting without a bound would let such a destination hold
// every attempt slot of the queue.

// DefaultSlotWait bounds the wait for a destination or global slot.
const DefaultSlotWait = 5 * time.Second

// limiter counts transactions in flight. Its zero value is not usable:
// see newLimiter.
type limiter struct {
	initial, max, global int

	mu      sync.Mutex
	inUse   int                   // all destinations
	dests   map[string]*destLimit // destinations used within pruneAfter
	changed chan struct{}         // closed and replaced when a slot frees or a window grows
	pruned  time.Time             // last prune
}

// destLimit is one destination's slow-start state.
type destLimit struct {
	inUse  int
	window int
	used   time.Time // last release; idle entries at the initial window are dropped
}

func newLimiter(initial, perDest, global int) *limiter {
	perDest = max(perDest, 1)
	return &limiter{initial: min(max(initial, 1), perDest), max: perDest, global: max(global, 1),
		dests: map[string]*destLimit{}, changed: make(chan struct{})}
}

// acquire takes a slot for dest, waiting at most wait (and not beyond
// ctx). On failure it says which limit was full. The caller calls release
// exactly once after a successful acquire.
func (l *limiter) acquire(ctx context.Context, dest string, wait time.Duration) (ok bool, why string) {
	var timeout <-chan time.Time
	for {
		l.mu.Lock()
		st := l.dests[dest]
		if st == nil {
			st = &destLimit{window: l.initial}
			l.dests[dest] = st
		}
		switch {
		case st.inUse >= st.window:
			why = "destination concurrency limit reached"
		case l.inUse >= l.global:
			why = "outbound connection limit reached"
		default:
			st.inUse++
			l.inUse++
			l.mu.Unlock()
			return true, ""
		}
		changed := l.changed
		l.mu.Unlock()
		if timeout == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-changed:
		case <-timeout:
			return false, why
		case <-ctx.Done():
			return false, why
		}
	}
}

// release returns dest's slot. good: the transaction had a working
// connection (window + 1); bad: no address could be connected (window
// halved); neither: no feedback (a policy failure, a cancelled attempt).
func (l *limiter) release(dest string, good, bad bool, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.dests[dest]
	st.inUse--
	l.inUse--
	switch {
	case good:
		st.window = min(st.window+1, l.max)
	case bad:
		st.window = max(st.window/2, 1)
	}
	st.used = now
	l.prune(now)
	close(l.changed)
	l.changed = make(chan struct{})
}

// pruneAfter: a destination unused this long forgets its window (it
// starts again at initial), so the map holds only recent destinations.
const pruneAfter = time.Minute

// prune drops idle destinations, at most once per pruneAfter; mu is held.
func (l *limiter) prune(now time.Time) {
	if now.Sub(l.pruned) < pruneAfter {
		return
	}
	l.pruned = now
	for k, st := range l.dests {
		if st.inUse == 0 && now.Sub(st.used) > pruneAfter {
			delete(l.dests, k)
		}
	}
}

// window returns dest's current window (for tests and logs).
func (l *limiter) window(dest string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.dests[dest]; st != nil {
		return st.window
	}
	return l.initial
}
