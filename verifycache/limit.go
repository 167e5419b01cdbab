package verifycache

import (
	"context"
	"sync"

	"golang.org/x/time/rate"
)

// limiter bounds the probes per next hop: at most conc in flight, and
// starts paced to perSec per second with a burst of one second's worth
// (golang.org/x/time/rate). It measures real time: it paces network
// traffic, unlike the cache's TTLs.
type limiter struct {
	conc   int
	perSec float64

	mu   sync.Mutex
	hops map[string]*hopLimit
}

type hopLimit struct {
	sem  chan struct{}
	pace *rate.Limiter // nil: no rate limit
}

func newLimiter(conc int, perSec float64) *limiter {
	return &limiter{conc: max(conc, 1), perSec: perSec, hops: map[string]*hopLimit{}}
}

func (l *limiter) hop(hop string) *hopLimit {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.hops[hop]
	if h == nil {
		h = &hopLimit{sem: make(chan struct{}, l.conc)}
		if l.perSec > 0 {
			h.pace = rate.NewLimiter(rate.Limit(l.perSec), max(int(l.perSec), 1))
		}
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
	if h.pace != nil {
		if err := h.pace.Wait(ctx); err != nil {
			release()
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return nil, err
		}
	}
	return release, nil
}
