package verifycache

import (
	"sync"
	"time"
)

const (
	// idleTimeout: how long a connection waits in the pool for the next
	// probe. Well under the 5 minutes a server waits for a command
	// (RFC 5321 section 4.5.3.2.7), so the far end rarely closes first.
	idleTimeout = 30 * time.Second
	// quitTimeout bounds the QUIT of a connection being closed.
	quitTimeout = 2 * time.Second
)

// pool keeps greeted connections between probes, per next hop, at most
// max each; the most recently used is reused first.
type pool struct {
	max int
	now func() time.Time // real time

	mu     sync.Mutex
	idle   map[string][]*pconn
	closed bool
}

func newPool(max int, now func() time.Time) *pool {
	return &pool{max: max, now: now, idle: map[string][]*pconn{}}
}

// get returns an idle connection to hop, or nil.
func (p *pool) get(hop string) *pconn {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[hop]
	for len(list) > 0 {
		pc := list[len(list)-1]
		list = list[:len(list)-1]
		if p.now().Sub(pc.since) < idleTimeout {
			p.idle[hop] = list
			return pc
		}
		go pc.quit()
	}
	delete(p.idle, hop)
	return nil
}

// put keeps pc for the next probe, or closes it when the pool is full or
// closed.
func (p *pool) put(pc *pconn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle[pc.hop]) >= p.max {
		go pc.quit()
		return
	}
	pc.since = p.now()
	p.idle[pc.hop] = append(p.idle[pc.hop], pc)
}

// reap closes connections idle for longer than idleTimeout.
func (p *pool) reap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for hop, list := range p.idle {
		keep := list[:0]
		for _, pc := range list {
			if p.now().Sub(pc.since) < idleTimeout {
				keep = append(keep, pc)
			} else {
				go pc.quit()
			}
		}
		if len(keep) == 0 {
			delete(p.idle, hop)
		} else {
			p.idle[hop] = keep
		}
	}
}

// close says QUIT on every idle connection and waits for it (each bounded
// by quitTimeout); later puts close their connection.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	var all []*pconn
	for _, list := range p.idle {
		all = append(all, list...)
	}
	p.idle = map[string][]*pconn{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, pc := range all {
		wg.Add(1)
		go func() { defer wg.Done(); pc.quit() }()
	}
	wg.Wait()
}
