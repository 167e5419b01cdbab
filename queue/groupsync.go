package queue

import (
	"os"
	"sync"
)

// groupSync shares directory fsyncs between concurrent callers. A caller
// needs a sync that started after its own change to the directory; callers
// arriving while a sync runs all wait for the next one, which one of them
// runs for all (the same idea as a group commit).
type groupSync struct {
	path string

	mu       sync.Mutex
	cond     *sync.Cond
	running  bool
	started  uint64 // syncs started so far
	finished uint64 // highest sync number finished
	errGen   uint64 // number of the last sync that failed
	err      error
}

func newGroupSync(path string) *groupSync {
	g := &groupSync{path: path}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// Sync returns once a directory fsync that started after the call has
// completed, with that fsync's error.
func (g *groupSync) Sync() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	target := g.started + 1
	for g.finished < target {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		g.started++
		n := g.started
		g.mu.Unlock()
		err := syncDir(g.path)
		g.mu.Lock()
		g.running = false
		g.finished = n
		if err != nil {
			g.err, g.errGen = err, n
		}
		g.cond.Broadcast()
	}
	if g.errGen >= target {
		return g.err
	}
	return nil
}

func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
