package queue

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Admin operations, used by the control socket (package control). Each is
// one bbolt transaction; they are safe while the scheduler runs. A message
// whose delivery attempt is in flight keeps that attempt: Hold and Delete
// take effect on its record, and the attempt's result respects them
// (store.go save); Bounce refuses until the attempt is over.

// ErrInFlight is returned by operations that cannot act on a message while
// a delivery attempt for it runs.
var ErrInFlight = errors.New("a delivery attempt is in flight; try again in a moment")

// ErrHeld is returned by Flush for a message on hold.
var ErrHeld = errors.New("message is on hold; release it first")

// State of a message, as listed.
const (
	StateActive   = "active"   // a delivery attempt runs now
	StateHold     = "hold"     // on hold
	StateDeferred = "deferred" // tried before, waiting for its next attempt
	StateIncoming = "incoming" // not tried yet
)

// State returns env's state.
func (q *Queue) State(env *Envelope) string {
	switch {
	case q.isInflight(env.ID):
		return StateActive
	case env.Held:
		return StateHold
	case env.Attempts > 0:
		return StateDeferred
	}
	return StateIncoming
}

// Filter selects messages for List. Empty fields match everything. Address
// and domain matches are case-insensitive.
type Filter struct {
	Sender    string // exact envelope sender ("<>" for the null sender)
	Recipient string // exact recipient address
	Domain    string // a recipient domain
	State     string // StateActive, StateHold, StateDeferred, StateIncoming
}

func (f Filter) match(q *Queue, env *Envelope) bool {
	if f.Sender != "" && !strings.EqualFold(f.Sender, env.From) && !(f.Sender == "<>" && env.From == "") {
		return false
	}
	if f.State != "" && q.State(env) != f.State {
		return false
	}
	if f.Recipient == "" && f.Domain == "" {
		return true
	}
	for _, rc := range env.Rcpts {
		if f.Recipient != "" && !strings.EqualFold(rc.Addr, f.Recipient) {
			continue
		}
		if f.Domain != "" && !strings.EqualFold(rc.Addr[strings.LastIndexByte(rc.Addr, '@')+1:], f.Domain) {
			continue
		}
		return true
	}
	return false
}

// listPage bounds how many records one read transaction decodes, so a slow
// reader of a huge queue never holds a bbolt read transaction for long
// (which would stall the file growth of writers, i.e. new mail).
const listPage = 500

// List calls fn for every message matching f, in arrival order (queue IDs
// sort by arrival). fn runs outside any transaction; returning an error
// stops the listing with that error.
func (q *Queue) List(f Filter, fn func(*Envelope) error) error {
	var after []byte
	for {
		var page []*Envelope
		var bad []string
		err := q.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketMsgs).Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if k != nil && string(k) == string(after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && len(page) < listPage; k, v = c.Next() {
				after = append(after[:0], k...)
				env, err := checkRecord(k, v)
				if err != nil {
					bad = append(bad, string(k))
					continue
				}
				page = append(page, env)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("queue: list: %w", err)
		}
		q.skipCorrupt(bad, "list")
		for _, env := range page {
			if f.match(q, env) {
				if err := fn(env); err != nil {
					return err
				}
			}
		}
		if len(page)+len(bad) < listPage {
			return nil
		}
	}
}

// update applies fn to the stored envelope of id in one transaction and
// writes it back with its schedule entry moved to the new NextAttempt (none
// while held).
func (q *Queue) update(id string, fn func(env *Envelope) error) error {
	var mv []stateMove
	err := q.db.Update(func(tx *bolt.Tx) error { return q.updateTx(tx, id, fn, &mv) })
	if err == nil {
		q.counts.apply(mv)
	}
	return err
}

// updateTx is update within tx; the state change is appended to mv, for
// the caller to apply once tx committed.
func (q *Queue) updateTx(tx *bolt.Tx, id string, fn func(env *Envelope) error, mv *[]stateMove) error {
	q.touch(id) // before the change: an attempt that ends meanwhile sees it
	msgs, sched := tx.Bucket(bucketMsgs), tx.Bucket(bucketSched)
	v := msgs.Get([]byte(id))
	if v == nil {
		return fmt.Errorf("queue: %s: %w", id, ErrNotFound)
	}
	env, err := decodeEnvelope(v)
	if err != nil {
		return err
	}
	oldNext, oldHeld, oldState := env.NextAttempt, env.Held, stateOf(env)
	if err := fn(env); err != nil {
		return err
	}
	if nv, err := encodeEnvelope(env); err != nil {
		return err
	} else if err := msgs.Put([]byte(id), nv); err != nil {
		return err
	}
	*mv = append(*mv, stateMove{oldState, stateOf(env)})
	if !oldHeld {
		if err := sched.Delete(schedKey(oldNext, id)); err != nil {
			return err
		}
	}
	if env.Held {
		return nil
	}
	return sched.Put(schedKey(env.NextAttempt, id), nil)
}

// Flush makes id due now (Postfix postqueue -i). A held message stays held.
func (q *Queue) Flush(id string) error {
	err := q.update(id, func(env *Envelope) error {
		if env.Held {
			return fmt.Errorf("queue: flush %s: %w", id, ErrHeld)
		}
		env.NextAttempt = q.now()
		return nil
	})
	if err == nil {
		q.log.Info("flushed", "queue_id", id)
		q.wake()
	}
	return err
}

// Requeue makes id due now as a fresh message (Postfix postsuper -r, in
// its simplest honest form): the attempt count goes back to 0, so the
// message is "incoming" again and a later temporary failure starts the
// backoff from MinBackoff instead of the doubled delay it had reached;
// its pending recipients are tried at the next attempt. What it does not
// redo: the content filter and the Signer ran once and are not called
// again, delivered or failed recipients stay so, and the lifetime still
// counts from the arrival. A held message stays held (ErrHeld); one
// whose attempt is in flight is refused (ErrInFlight), because that
// attempt's result would overwrite the reset.
func (q *Queue) Requeue(id string) error {
	if !validID(id) {
		return fmt.Errorf("queue: %q: %w", id, ErrNotFound)
	}
	if !q.claim(id) {
		return fmt.Errorf("queue: requeue %s: %w", id, ErrInFlight)
	}
	defer q.setInflight(id, false)
	var attempts int
	err := q.update(id, func(env *Envelope) error {
		if env.Held {
			return fmt.Errorf("queue: requeue %s: %w", id, ErrHeld)
		}
		attempts = env.Attempts
		env.Attempts = 0
		env.NextAttempt = q.now()
		return nil
	})
	if err == nil {
		q.log.Info("requeued", "queue_id", id, "attempts_before", attempts)
		q.wake()
	}
	return err
}

// FlushMatching makes every message matching f due now and returns how
// many (Postfix postqueue -s domain / -f). It updates up to 1000 messages
// per transaction, so flushing a huge queue costs few fsyncs.
func (q *Queue) FlushMatching(f Filter) (int, error) {
	var ids []string
	err := q.List(f, func(env *Envelope) error {
		if !env.Held {
			ids = append(ids, env.ID)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), 1000)]
		ids = ids[len(chunk):]
		now := q.now()
		var mv []stateMove
		err := q.db.Update(func(tx *bolt.Tx) error {
			for _, id := range chunk {
				err := q.updateTx(tx, id, func(env *Envelope) error {
					if env.Held {
						return ErrHeld
					}
					env.NextAttempt = now
					return nil
				}, &mv)
				switch {
				case err == nil:
					n++
				case errors.Is(err, ErrNotFound), errors.Is(err, ErrHeld):
					// gone or held since the listing: skip it
				default:
					return err
				}
			}
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("queue: flush: %w", err)
		}
		q.counts.apply(mv)
	}
	q.log.Info("flushed", "count", n)
	q.wake()
	return n, nil
}

// Hold takes id off the schedule until Release (Postfix postsuper -h).
func (q *Queue) Hold(id string) error {
	err := q.update(id, func(env *Envelope) error { env.Held = true; return nil })
	if err == nil {
		q.log.Info("held", "queue_id", id)
	}
	return err
}

// Release puts a held message back on the schedule, due now (postsuper -H).
func (q *Queue) Release(id string) error {
	err := q.update(id, func(env *Envelope) error {
		env.Held = false
		env.NextAttempt = q.now()
		return nil
	})
	if err == nil {
		q.log.Info("released", "queue_id", id)
		q.wake()
	}
	return err
}

// Delete removes id without telling the sender (postsuper -d).
func (q *Queue) Delete(id string) error {
	env, err := q.Get(id)
	if err != nil {
		return err
	}
	if err := q.removeRecord(env); err != nil {
		return err
	}
	q.log.Info("removed", "queue_id", id, "reason", "deleted by administrator")
	return nil
}

// Bounce returns id to its sender now: every pending recipient fails with
// 5.0.0 and a DSN goes out as for any permanent failure.
func (q *Queue) Bounce(id string) error {
	if !q.claim(id) { // keeps the scheduler away while we conclude
		return fmt.Errorf("queue: bounce %s: %w", id, ErrInFlight)
	}
	env, err := q.Get(id)
	if err != nil {
		q.setInflight(id, false)
		return err
	}
	now := q.now()
	failed := env.pendingRcpts()
	for _, rc := range failed {
		rc.Status, rc.DSN, rc.LastTry = StatusFailed, "5.0.0", now
		rc.LastReply = "550 5.0.0 message returned by the postmaster of " + q.opts.Hostname
		q.log.Info("delivery", "queue_id", id, "to", "<"+rc.Addr+">", "dsn", "5.0.0",
			"status", "bounced", "reply", rc.LastReply)
	}
	q.conclude(env, now, failed, nil) // clears the in-flight mark
	return nil
}

// Headers returns the header section of id's message as it is delivered
// (stored header block and our Received header included), at most 256 KiB.
func (q *Queue) Headers(id string) ([]byte, error) {
	if !validID(id) {
		return nil, fmt.Errorf("queue: %q: %w", id, ErrNotFound)
	}
	env, err := q.Get(id)
	if err != nil {
		return nil, err
	}
	body, err := q.openMessage(env)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	return readHeaders(body, 256<<10), nil
}

// Stats counts the queue (a full pass over the records: for admin use).
type Stats struct {
	Messages int            `json:"messages"`
	Bytes    int64          `json:"bytes"`
	Pending  int            `json:"pending_rcpts"`
	ByState  map[string]int `json:"by_state"`
	Oldest   time.Time      `json:"oldest,omitzero"`
}

// Stats reads the queue's counters.
func (q *Queue) Stats() (Stats, error) {
	st := Stats{ByState: map[string]int{}}
	err := q.List(Filter{}, func(env *Envelope) error {
		st.Messages++
		st.Bytes += env.Size
		st.Pending += len(env.pending())
		st.ByState[q.State(env)]++
		if st.Oldest.IsZero() || env.Arrival.Before(st.Oldest) {
			st.Oldest = env.Arrival
		}
		return nil
	})
	return st, err
}

// OpenMessage opens id's message as it is delivered (stored header block
// and our Received header included) for "mxedge queue show -body". The
// caller closes it.
func (q *Queue) OpenMessage(id string) (io.ReadCloser, error) {
	if !validID(id) {
		return nil, fmt.Errorf("queue: %q: %w", id, ErrNotFound)
	}
	env, err := q.Get(id)
	if err != nil {
		return nil, err
	}
	return q.openMessage(env)
}
