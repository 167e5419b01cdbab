package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

func encodeEnvelope(env *Envelope) ([]byte, error) { return json.Marshal(env) }

// storedEnvelope is a record as read from bbolt: an Envelope, and the
// keys that records written before Origin existed have at the top level.
type storedEnvelope struct {
	*Envelope
	LegacyClientIP string `json:"client_ip"`
	LegacyHelo     string `json:"helo"`
}

func decodeEnvelope(v []byte) (*Envelope, error) {
	rec := storedEnvelope{Envelope: new(Envelope)}
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, fmt.Errorf("queue: decode record: %w", err)
	}
	env := rec.Envelope
	env.stored, env.storedOK = stateOf(env), true
	if env.Origin.ClientIP == "" {
		env.Origin.ClientIP = rec.LegacyClientIP
	}
	if env.Origin.Helo == "" {
		env.Origin.Helo = rec.LegacyHelo
	}
	return env, nil
}

// pendingRcpts returns the recipients still to be delivered.
func (env *Envelope) pendingRcpts() []*Rcpt {
	var out []*Rcpt
	for i := range env.Rcpts {
		if env.Rcpts[i].Status == StatusPending {
			out = append(out, &env.Rcpts[i])
		}
	}
	return out
}

// pending returns the addresses still to be delivered.
func (env *Envelope) pending() []string {
	var out []string
	for _, r := range env.Rcpts {
		if r.Status == StatusPending {
			out = append(out, r.Addr)
		}
	}
	return out
}

func schedKey(t time.Time, id string) []byte {
	k := make([]byte, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(t.UnixNano()))
	copy(k[8:], id)
	return k
}

func parseSchedKey(k []byte) (time.Time, string) {
	return time.Unix(0, int64(binary.BigEndian.Uint64(k[:8]))), string(k[8:])
}

// appendFill is the bbolt page fill for buckets whose new keys sort last.
const appendFill = 0.9

// insert stores a new message due at once, in a group commit: envelope,
// schedule entry, inline data (body, nil for a spooled message) and header
// block (head; no entry when empty). The batch function may run more than
// once; it only puts, so it is idempotent.
//
// claimed: the message was marked in flight before its commit for Run to
// take it without the scan (claimFresh); the caller then hands it over
// (handOff), which ends the mark if Run cannot take it.
func (q *Queue) insert(ctx context.Context, env *Envelope, head, body []byte) (claimed bool, err error) {
	env.NextAttempt = env.Arrival
	v, err := encodeEnvelope(env)
	if err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	claimed = !env.Held && q.claimFresh(env.ID)
	err = q.batch(func(tx *bolt.Tx) error {
		msgs, bodies, sched := tx.Bucket(bucketMsgs), tx.Bucket(bucketBodies), tx.Bucket(bucketSched)
		// Queue IDs and new schedule keys grow with time, so inserts append:
		// fill pages fully instead of bbolt's default half (a smaller file).
		msgs.FillPercent, bodies.FillPercent, sched.FillPercent = appendFill, appendFill, appendFill
		if err := msgs.Put([]byte(env.ID), v); err != nil {
			return err
		}
		if env.Inline {
			if err := bodies.Put([]byte(env.ID), body); err != nil {
				return err
			}
		}
		if len(head) > 0 {
			heads := tx.Bucket(bucketHeads)
			heads.FillPercent = appendFill
			if err := heads.Put([]byte(env.ID), head); err != nil {
				return err
			}
		}
		if env.Held { // held from the start (Incoming.Hold): not scheduled
			return nil
		}
		return sched.Put(schedKey(env.NextAttempt, env.ID), nil)
	})
	if err != nil {
		if claimed {
			q.setInflight(env.ID, false)
		}
		return false, err
	}
	env.stored, env.storedOK = stateOf(env), true
	q.counts.move(recNone, env.stored)
	return claimed, nil
}

func (q *Queue) exists(id string) bool {
	found := false
	_ = q.db.View(func(tx *bolt.Tx) error {
		found = tx.Bucket(bucketMsgs).Get([]byte(id)) != nil
		return nil
	})
	return found
}

// Get returns the stored envelope of a message.
func (q *Queue) Get(id string) (*Envelope, error) {
	var env *Envelope
	err := q.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMsgs).Get([]byte(id))
		if v == nil {
			return fmt.Errorf("queue: %s: %w", id, ErrNotFound)
		}
		var err error
		env, err = decodeEnvelope(v)
		return err
	})
	return env, err
}

// due returns up to max messages whose next attempt is at or before now and
// that are not in flight, in next-attempt order, and the time of the first
// future entry (zero if none).
func (q *Queue) due(now time.Time, max int) ([]*Envelope, time.Time, error) {
	var out []*Envelope
	var next time.Time
	nowKey := schedKey(now, "")
	var bad []string
	var stale [][]byte
	q.scans.Add(1)
	more := true // more due than max, or the scan failed: a backlog
	defer func() { q.setBacklog(more) }()
	defer func() { q.skipCorrupt(bad, "scheduler"); q.dropStale(stale) }()
	err := q.db.View(func(tx *bolt.Tx) error {
		msgs := tx.Bucket(bucketMsgs)
		c := tx.Bucket(bucketSched).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if bytes.Compare(k[:8], nowKey) > 0 {
				next, _ = parseSchedKey(k)
				more = false
				return nil
			}
			if len(out) >= max {
				return nil
			}
			id := k[8:] // not made a string: most entries are in flight
			if q.isInflightKey(id) {
				continue
			}
			v := msgs.Get(id)
			if v == nil {
				continue // index entry without record: removed by the next update
			}
			env, err := checkRecord(id, v)
			if err != nil {
				bad = append(bad, string(id)) // skipped, moved aside after this transaction
				continue
			}
			if at, _ := parseSchedKey(k); env.Held || !env.NextAttempt.Equal(at) {
				// Not the record's entry (left by a race that save and
				// remove now close, or by an older version): never due.
				stale = append(stale, append([]byte(nil), k...))
				continue
			}
			env.raw = bytes.Clone(v) // v lives only as long as the transaction
			out = append(out, env)
		}
		more = false
		return nil
	})
	return out, next, err
}

// dropStale deletes schedule entries that due found pointing at a record
// with another next attempt (or on hold), unless the record has moved
// back to that time meanwhile.
func (q *Queue) dropStale(keys [][]byte) {
	if len(keys) == 0 {
		return
	}
	err := q.db.Update(func(tx *bolt.Tx) error {
		msgs, sched := tx.Bucket(bucketMsgs), tx.Bucket(bucketSched)
		for _, k := range keys {
			at, id := parseSchedKey(k)
			if _, next, held := storedSched(msgs.Get([]byte(id))); !held && next.Equal(at) {
				continue
			}
			if err := sched.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		q.log.Warn("removing stale schedule entries failed", "count", len(keys), "err", err)
	}
}

// save writes the envelope after an attempt and moves its schedule entry
// from old to env.NextAttempt, in a group commit (idempotent). The
// attempt's Signer output (env.signature) goes on top of the stored header
// block in the same transaction, unless the record says it is there.
func (q *Queue) save(env *Envelope, old time.Time) error {
	v, err := encodeEnvelope(env)
	if err != nil {
		return err
	}
	mv := stateMove{recNone, recNone} // of the run that committed
	err = q.batch(func(tx *bolt.Tx) error {
		mv = stateMove{recNone, recNone}
		msgs, sched := tx.Bucket(bucketMsgs), tx.Bucket(bucketSched)
		cur := msgs.Get([]byte(env.ID))
		if cur == nil {
			return nil // deleted by an admin while the attempt ran
		}
		if err := sched.Delete(schedKey(old, env.ID)); err != nil {
			return err
		}
		stored, err := decodeEnvelope(cur)
		if err != nil {
			return err
		}
		// An admin change while the attempt ran (flush, hold, release)
		// moved the entry: the attempt's result replaces it too, or the
		// old one would make the message due again at once, every time.
		if !stored.Held && !stored.NextAttempt.Equal(old) {
			if err := sched.Delete(schedKey(stored.NextAttempt, env.ID)); err != nil {
				return err
			}
		}
		if len(env.signature) > 0 && !stored.Signed {
			if err := prependHead(tx, env.ID, env.signature); err != nil {
				return err
			}
		}
		held := stored.Held || env.Held // by an admin meanwhile, or by the Filter
		v := v
		if held { // put on hold while the attempt ran: stays held, unscheduled
			e := *env
			e.Held = true
			var err error
			if v, err = encodeEnvelope(&e); err != nil {
				return err
			}
		}
		if err := msgs.Put([]byte(env.ID), v); err != nil {
			return err
		}
		mv = stateMove{stateOf(stored), recDeferred}
		if held {
			mv.to = recHold
			return nil
		}
		if env.Attempts == 0 {
			mv.to = recIncoming
		}
		return sched.Put(schedKey(env.NextAttempt, env.ID), nil)
	})
	if err == nil {
		q.counts.move(mv.from, mv.to)
		env.stored, env.storedOK = mv.to, mv.to != recNone
	}
	return err
}

// remove deletes a finished message: record and index first (one commit),
// then the spool file. A crash in between leaves an orphan file that the
// next Open deletes.
func (q *Queue) remove(env *Envelope, sched time.Time) error {
	was := recNone
	err := q.batch(func(tx *bolt.Tx) error {
		sb := tx.Bucket(bucketSched)
		if err := sb.Delete(schedKey(sched, env.ID)); err != nil {
			return err
		}
		v := tx.Bucket(bucketMsgs).Get([]byte(env.ID))
		switch {
		case q.wasTouched(env.ID):
			// As in save: an admin change while the attempt ran moved the entry.
			var next time.Time
			var held bool
			was, next, held = storedSched(v)
			if !held && !next.IsZero() && !next.Equal(sched) {
				if err := sb.Delete(schedKey(next, env.ID)); err != nil {
					return err
				}
			}
		case v == nil:
			was = recNone
		case env.storedOK: // the record is the one env was read as or saved
			was = env.stored
		default:
			was = storedState(v)
		}
		return deleteRecord(tx, env.ID)
	})
	if err == nil {
		q.counts.move(was, recNone)
	}
	return q.removeFinish(env, err)
}

// removeRecord deletes env whatever its schedule entry (admin delete).
func (q *Queue) removeRecord(env *Envelope) error {
	was := recNone
	err := q.db.Update(func(tx *bolt.Tx) error {
		if !env.Held {
			if err := tx.Bucket(bucketSched).Delete(schedKey(env.NextAttempt, env.ID)); err != nil {
				return err
			}
		}
		was = storedState(tx.Bucket(bucketMsgs).Get([]byte(env.ID)))
		return deleteRecord(tx, env.ID)
	})
	if err == nil {
		q.counts.move(was, recNone)
	}
	return q.removeFinish(env, err)
}

// prependHead puts fields on top of id's stored header block.
func prependHead(tx *bolt.Tx, id string, fields []byte) error {
	heads := tx.Bucket(bucketHeads)
	cur := heads.Get([]byte(id))
	v := make([]byte, 0, len(fields)+len(cur))
	v = append(append(v, fields...), cur...)
	return heads.Put([]byte(id), v)
}

// deleteRecord deletes a message's record, inline body and header block.
func deleteRecord(tx *bolt.Tx, id string) error {
	if err := tx.Bucket(bucketBodies).Delete([]byte(id)); err != nil {
		return err
	}
	if err := tx.Bucket(bucketHeads).Delete([]byte(id)); err != nil {
		return err
	}
	return tx.Bucket(bucketMsgs).Delete([]byte(id))
}

func (q *Queue) removeFinish(env *Envelope, err error) error {
	if err != nil {
		return fmt.Errorf("queue: remove %s: %w", env.ID, err)
	}
	if env.Inline {
		return nil
	}
	if err := removeFile(q.bodyPath(env.ID)); err != nil {
		return fmt.Errorf("queue: remove %s: %w", env.ID, err)
	}
	return nil
}
