package verifycache

import (
	"sync"
	"time"
)

// maxTemp bounds the temporary results held in memory. When it is full,
// new ones are not held (the per-hop probe limits still protect the next
// hop).
const maxTemp = 100000

// tempCache holds temporary probe failures in memory for TempfailTTL:
// worth nothing after a restart, and not worth an fsync each during an
// outage.
type tempCache struct {
	mu sync.Mutex
	m  map[string]tempEntry
}

type tempEntry struct {
	until time.Time
	reply string
	route string
	at    time.Time
}

func newTempCache() *tempCache { return &tempCache{m: map[string]tempEntry{}} }

func (t *tempCache) get(addr string, now time.Time) (tempEntry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[addr]
	if !ok || !now.Before(e.until) {
		return tempEntry{}, false
	}
	return e, true
}

func (t *tempCache) put(addr string, e tempEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.m[addr]; !ok && len(t.m) >= maxTemp {
		t.sweepLocked(e.at)
		if len(t.m) >= maxTemp {
			return
		}
	}
	t.m[addr] = e
}

func (t *tempCache) remove(addr string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.m[addr]
	delete(t.m, addr)
	return ok
}

// sweep forgets expired results and returns how many are left.
func (t *tempCache) sweep(now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweepLocked(now)
	return len(t.m)
}

func (t *tempCache) sweepLocked(now time.Time) {
	for k, e := range t.m {
		if !now.Before(e.until) {
			delete(t.m, k)
		}
	}
}
