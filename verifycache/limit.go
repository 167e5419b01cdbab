package verifycache

import (
	"context"
	"sync"
	"time"
)

// limiter bounds the probes per next hop: at most conc in flight, and
// starts paced to rate per second with a burst of one second's worth
// (generic cell rate algorithm). It measures real time (now is time.Now
// outside tests): it paces network traffic, unlike the cache's TTLs.
type limiter struct {
	conc int
	rate float64
	now  func() time.Time

	mu   sync.Mutex
	hops map[string]*hopLimit
}

type hopLimit struct {
	sem chan struct{}
	mu  sync.Mutex
	tat time.Time // theoretical arrival time of the next start
}

func newLimiter(conc int, rate float64, now func() time.Time) *limiter {
	return &limiter{conc: max(conc, 1), rate: rate, now: now, hops: map[string]*hopLimit{}}
}

func (l *limiter) hop(hop string) *hopLimit {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.hops[hop]
	if h == nil {
		h = &hopLimit{sem: make(chan struct{}, l.conc)}
		l.hops[hop] = h
	}
	return h
}

// acquire waits for a slot and the pace of hop. On success the caller
// must call release when its probe ends; on ctx's end it returns ctx's
// error.
func (l *limiter) acquire(ctx context.Context, hop string) (release func(), err error) {
	h := l.hop(hop)
	select {
	case h.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	release = func() { <-h.sem }
	if l.rate <= 0 {
		return release, nil
	}
	interval := time.Duration(float64(time.Second) / l.rate)
	tolerance := time.Duration(max(l.rate-1, 0)) * interval
	h.mu.Lock()
	now := l.now()
	start := now
	if earliest := h.tat.Add(-tolerance); earliest.After(start) {
		start = earliest
	}
	if h.tat.After(start) {
		h.tat = h.tat.Add(interval)
	} else {
		h.tat = start.Add(interval)
	}
	h.mu.Unlock()
	if wait := start.Sub(now); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			release()
			return nil, ctx.Err()
		}
	}
	return release, nil
}
