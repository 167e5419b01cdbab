package queue

import (
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// CommitObserver is told of each group commit of the queue's index: the
// bbolt write transaction that a received message (Incoming.Commit), an
// attempt's outcome and a removal share with concurrent ones (DB.Batch,
// Options.BatchSize). took is the time from the transaction's first update
// until it was durable (its fsyncs done); updates is how many it carried
// (1 for one alone). It is called after the commit, must return at once
// and must not call the queue. Admin changes (hold, release, delete),
// which commit alone, are not reported.
//
// Example: metrics.Metrics.Committed puts both into histograms.
type CommitObserver interface {
	Committed(took time.Duration, updates int)
}

// commitWatch counts the updates of each group commit for a
// CommitObserver. bbolt runs one write transaction at a time and the
// updates of a batch one after the other inside it, so an update in a
// transaction other than the last one seen starts a new count. The commit
// handler runs after bbolt released the writer lock, when the next
// transaction may have begun: it reads its own count.
type commitWatch struct {
	obs CommitObserver

	mu  sync.Mutex
	tx  *bolt.Tx    // the last write transaction seen
	cur *commitSize // its count
}

type commitSize struct {
	start time.Time
	n     int // under commitWatch.mu
}

// batch runs fn in a group commit (DB.Batch), counted for the
// CommitObserver if there is one. fn may run more than once (see
// DB.Batch); only the run that commits is counted.
func (q *Queue) batch(fn func(*bolt.Tx) error) error {
	if q.commits == nil {
		return q.db.Batch(fn)
	}
	return q.db.Batch(func(tx *bolt.Tx) error {
		q.commits.enter(tx)
		return fn(tx)
	})
}

func (w *commitWatch) enter(tx *bolt.Tx) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if tx != w.tx {
		c := &commitSize{start: time.Now()}
		w.tx, w.cur = tx, c
		// A transaction that rolls back (an update failed: bbolt retries
		// the others without it) runs no handler and is not reported.
		tx.OnCommit(func() {
			w.mu.Lock()
			n := c.n
			w.mu.Unlock()
			w.obs.Committed(time.Since(c.start), n)
		})
	}
	w.cur.n++
}
