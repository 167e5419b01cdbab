package queue

import (
	"encoding/json"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Live counts (for metrics): how many records are in each stored state,
// kept in atomic counters that Open initialises with one pass over the
// records and that every transaction changing a record's state adjusts
// after it committed (insert, save, remove, the admin updates). Reading
// them (Counts) takes no lock and no transaction; the oldest message is
// the first record of the msgs bucket (queue IDs sort by arrival), one
// read transaction and one cursor step. Offline tools (Recover, Compact,
// Check) write before Open and are counted by its pass.
//
// Cost, 2 shared cores: the pass at Open decodes each record's attempts
// and held fields, 100-140 ms for 50 000 deferred messages (so about 2-3
// s at Open for a million); Counts takes about 4 us.

// Record states kept live; a record is in exactly one of them.
const (
	recNone     = -1
	recIncoming = iota - 1 // not tried yet
	recDeferred            // tried before, waiting for its next attempt
	recHold                // on hold
	recStates
)

// stateOf is the stored state of env (StateIncoming, StateDeferred or
// StateHold, without the in-flight overlay of State).
func stateOf(env *Envelope) int {
	switch {
	case env.Held:
		return recHold
	case env.Attempts > 0:
		return recDeferred
	}
	return recIncoming
}

// storedState is stateOf of a stored record, decoding only what it needs;
// recNone for nil (no record) or an undecodable one.
func storedState(v []byte) int {
	state, _, _ := storedSched(v)
	return state
}

// storedSched returns a stored record's state (stateOf), next attempt and
// hold flag, decoding only those (recNone, zero, false for none or an
// undecodable one).
func storedSched(v []byte) (state int, next time.Time, held bool) {
	if v == nil {
		return recNone, time.Time{}, false
	}
	var s struct {
		Attempts    int       `json:"attempts"`
		NextAttempt time.Time `json:"next_attempt"`
		Held        bool      `json:"held"`
	}
	if json.Unmarshal(v, &s) != nil {
		return recNone, time.Time{}, false
	}
	return stateOf(&Envelope{Attempts: s.Attempts, Held: s.Held}), s.NextAttempt, s.Held
}

// liveCounts are the records per state.
type liveCounts struct{ n [recStates]atomic.Int64 }

// move accounts one record going from state from to state to (recNone:
// created or removed).
func (c *liveCounts) move(from, to int) {
	if from == to {
		return
	}
	if from != recNone {
		c.n[from].Add(-1)
	}
	if to != recNone {
		c.n[to].Add(1)
	}
}

// stateMove is one record's state change within a transaction, applied
// to the counts once the transaction committed.
type stateMove struct{ from, to int }

func (c *liveCounts) apply(ms []stateMove) {
	for _, m := range ms {
		c.move(m.from, m.to)
	}
}

// initCounts counts the records (Open).
func (q *Queue) initCounts() error {
	return q.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMsgs).ForEach(func(_, v []byte) error {
			q.counts.move(recNone, storedState(v))
			return nil
		})
	})
}

// Counts are the queue's live counts (see Queue.Counts).
type Counts struct {
	Incoming int // not tried yet
	Deferred int // tried before, waiting for their next attempt
	Hold     int // on hold
	// Active: delivery attempts in flight now; these messages are also
	// counted in Incoming or Deferred.
	Active int
	// Oldest is the arrival time of the oldest message; zero when the
	// queue is empty.
	Oldest time.Time
}

// Counts returns the live counts without a scan and without the write
// lock: atomic counters, the in-flight set, and one read transaction for
// the oldest message. For metrics scraped every few seconds; Stats is the
// full pass for admin use.
func (q *Queue) Counts() (Counts, error) {
	c := Counts{
		Incoming: int(q.counts.n[recIncoming].Load()),
		Deferred: int(q.counts.n[recDeferred].Load()),
		Hold:     int(q.counts.n[recHold].Load()),
		Active:   q.inflightCount(),
	}
	err := q.db.View(func(tx *bolt.Tx) error {
		cur := tx.Bucket(bucketMsgs).Cursor()
		// Skip a few undecodable records (moved aside by list or the
		// scheduler when they meet them), not the whole queue.
		n := 0
		for k, v := cur.First(); k != nil && n < 16; k, v = cur.Next() {
			var s struct {
				Arrival time.Time `json:"arrival"`
			}
			if json.Unmarshal(v, &s) == nil {
				c.Oldest = s.Arrival
				return nil
			}
			n++
		}
		return nil
	})
	return c, err
}
