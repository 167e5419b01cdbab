package verifycache

import "sync"

// flight makes concurrent probes of one address one probe: the first
// lookup starts it, later ones wait for the same result. (A tiny
// singleflight; golang.org/x/sync is not a dependency.)
type flight struct {
	mu    sync.Mutex
	calls map[string]*call
}

// call is one probe in flight. done is closed once the result is in res
// and in the cache.
type call struct {
	done  chan struct{}
	res   ProbeResult
	entry Entry // the entry after the probe, if have
	have  bool
	err   error // storing the result failed
}

// join returns the call for key and whether the caller must run it (it
// is new). The runner calls finish when done.
func (f *flight) join(key string) (c *call, run bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c = f.calls[key]; c != nil {
		return c, false
	}
	if f.calls == nil {
		f.calls = map[string]*call{}
	}
	c = &call{done: make(chan struct{})}
	f.calls[key] = c
	return c, true
}

// finish publishes c's result: later lookups find it in the cache, so
// the call is forgotten.
func (f *flight) finish(key string, c *call) {
	f.mu.Lock()
	delete(f.calls, key)
	f.mu.Unlock()
	close(c.done)
}

// inFlight reports whether a probe of key is running.
func (f *flight) inFlight(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[key] != nil
}
