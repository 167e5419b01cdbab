package resolver

import (
	"context"
	"sync"
)

// flights coalesces identical concurrent queries: the first caller of a
// key starts the query, later callers wait for its result.
//
// The query runs on a context of its own (the first caller's values, not
// its cancellation or deadline), so one caller giving up does not fail
// the others; when every caller has given up it is cancelled. Each
// network exchange still has its own deadline (Config.Timeout).
type flights struct {
	mu sync.Mutex
	m  map[cacheKey]*flight
}

type flight struct {
	done    chan struct{} // closed when a and err are set
	a       *answer
	err     error
	waiters int // callers still waiting; guarded by flights.mu
	cancel  context.CancelFunc
}

// do returns fn's result for k, calling fn only if no call for k is in
// flight. If ctx ends first, do returns ctx's error.
func (fs *flights) do(ctx context.Context, k cacheKey, fn func(context.Context) (*answer, error)) (*answer, error) {
	fs.mu.Lock()
	if fs.m == nil {
		fs.m = map[cacheKey]*flight{}
	}
	f, ok := fs.m[k]
	if ok {
		f.waiters++
	} else {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight{done: make(chan struct{}), waiters: 1, cancel: cancel}
		fs.m[k] = f
		go func() {
			a, err := fn(fctx)
			fs.mu.Lock()
			if fs.m[k] == f {
				delete(fs.m, k)
			}
			fs.mu.Unlock()
			f.a, f.err = a, err
			close(f.done)
			cancel()
		}()
	}
	fs.mu.Unlock()

	select {
	case <-f.done:
		return f.a, f.err
	case <-ctx.Done():
		fs.mu.Lock()
		f.waiters--
		if f.waiters == 0 {
			// Nobody wants the answer any more; a later caller starts a
			// new flight.
			f.cancel()
			if fs.m[k] == f {
				delete(fs.m, k)
			}
		}
		fs.mu.Unlock()
		return nil, ctx.Err()
	}
}
