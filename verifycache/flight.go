package verifycache

import (
	"sync"

	"golang.org/x/sync/singleflight"
)

// flight makes concurrent probes of one address one probe
// (golang.org/x/sync singleflight): the first lookup starts it, later ones
// wait for the same result. It also knows which probes are in flight
// (admin show, refreshes), which singleflight alone does not say.
type flight struct {
	g  singleflight.Group
	mu sync.Mutex
	in map[string]bool // addresses being probed
}

// outcome is one probe's result, as its waiters see it.
type outcome struct {
	res   ProbeResult
	entry Entry // the entry after the probe, if have
	have  bool
}

// start returns the channel on which the probe of key delivers its outcome
// (Err: storing the result failed), running run in its own goroutine if no
// probe of key is in flight; joined reports that one was.
func (f *flight) start(key string, run func() (outcome, error)) (ch <-chan singleflight.Result, joined bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	joined = f.in[key]
	if !joined {
		if f.in == nil {
			f.in = map[string]bool{}
		}
		f.in[key] = true
	}
	return f.g.DoChan(key, func() (any, error) {
		o, err := run()
		// Forgotten before anyone is told: a lookup that comes after
		// the outcome is in the cache starts afresh.
		f.mu.Lock()
		f.g.Forget(key)
		delete(f.in, key)
		f.mu.Unlock()
		return o, err
	}), joined
}

// inFlight reports whether a probe of key is running.
func (f *flight) inFlight(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.in[key]
}
