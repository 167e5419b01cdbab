package verifycache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// FileName is the cache's file in the data directory.
const FileName = "verify.db"

var (
	bucketEntries = []byte("entries") // address -> encoded Entry
	bucketDomains = []byte("domains") // domain -> JSON DomainCheck
)

// lockTimeout is how long Open waits for the file lock of verify.db (held
// by another running mxedge on the same data directory).
const lockTimeout = 2 * time.Second

// cleanupChunk is how many entries one cleanup transaction looks at, so
// that a pass over a million entries never holds the single writer long.
const cleanupChunk = 10000

// store is the bbolt file. Reads run concurrently (View). Each write is
// its own transaction (two fsyncs): writes come at the pace of probes,
// which the per-hop limits bound, and DB.Batch would make every probe
// result wait for its batch window (10 ms) before the RCPT is answered.
type store struct {
	db *bolt.DB
}

func openStore(path string, noSync bool) (*store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout, NoFreelistSync: true})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("verifycache: %s is in use by another mxedge", path)
	}
	if err != nil {
		return nil, fmt.Errorf("verifycache: open %s: %w", path, err)
	}
	db.NoSync = noSync
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketEntries, bucketDomains} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("verifycache: open %s: %w", path, err)
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

// get returns the entry of addr; ok is false when there is none.
func (s *store) get(addr string) (e Entry, ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketEntries).Get([]byte(addr))
		if v == nil {
			return nil
		}
		e, err = decodeEntry(addr, v)
		ok = err == nil
		return err
	})
	if err != nil {
		return Entry{}, false, fmt.Errorf("verifycache: get %s: %w", addr, err)
	}
	return e, ok, nil
}

// update applies fn to the entry of addr (have is false when there is none
// or it cannot be decoded) in one write transaction, so that a decision
// such as "keep a valid positive entry" sees the entry it replaces. fn
// returns the entry to store and whether to store it. update returns the
// entry as stored, or as it was when fn chose not to write.
func (s *store) update(addr string, fn func(cur Entry, have bool) (Entry, bool)) (Entry, bool, error) {
	var out Entry
	var have bool
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEntries)
		cur, ok := Entry{}, false
		if v := b.Get([]byte(addr)); v != nil {
			var err error
			cur, err = decodeEntry(addr, v)
			ok = err == nil
		}
		next, write := fn(cur, ok)
		if !write {
			out, have = cur, ok
			return nil
		}
		next.Addr = addr
		out, have = next, true
		return b.Put([]byte(addr), next.encode())
	})
	if err != nil {
		return Entry{}, false, fmt.Errorf("verifycache: store %s: %w", addr, err)
	}
	return out, have, nil
}

// remove deletes the entry of addr and reports whether there was one.
func (s *store) remove(addr string) (bool, error) {
	found := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEntries)
		found = b.Get([]byte(addr)) != nil
		if !found {
			return nil
		}
		return b.Delete([]byte(addr))
	})
	if err != nil {
		return false, fmt.Errorf("verifycache: forget %s: %w", addr, err)
	}
	return found, nil
}

// cleanup deletes the entries expired at now, a chunk per transaction,
// and returns how many it deleted.
func (s *store) cleanup(now time.Time) (int, error) {
	deleted := 0
	var from []byte
	for {
		var expired [][]byte
		var next []byte
		err := s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketEntries).Cursor()
			k, v := c.First()
			if from != nil {
				k, v = c.Seek(from)
			}
			for n := 0; k != nil; k, v = c.Next() {
				if n == cleanupChunk {
					next = bytes.Clone(k)
					break
				}
				n++
				if exp, ok := expiresAt(v); !ok || !now.Before(exp) {
					expired = append(expired, bytes.Clone(k))
				}
			}
			return nil
		})
		if err != nil {
			return deleted, fmt.Errorf("verifycache: cleanup: %w", err)
		}
		if len(expired) > 0 {
			err = s.db.Update(func(tx *bolt.Tx) error {
				b := tx.Bucket(bucketEntries)
				for _, k := range expired {
					// Refreshed since the scan? Then it stays.
					if exp, ok := expiresAt(b.Get(k)); ok && now.Before(exp) {
						continue
					}
					if err := b.Delete(k); err != nil {
						return err
					}
					deleted++
				}
				return nil
			})
			if err != nil {
				return deleted, fmt.Errorf("verifycache: cleanup: %w", err)
			}
		}
		if next == nil {
			return deleted, nil
		}
		from = next
	}
}

// counts returns the number of entries by state, expired ones counted
// apart as "expired".
func (s *store) counts(now time.Time) (map[string]int, error) {
	out := map[string]int{string(StateExists): 0, string(StateUnknown): 0, "expired": 0}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEntries).ForEach(func(k, v []byte) error {
			exp, ok := expiresAt(v)
			switch {
			case !ok || !now.Before(exp):
				out["expired"]++
			case v[1] == stateByte(StateExists):
				out[string(StateExists)]++
			case v[1] == stateByte(StateUnknown):
				out[string(StateUnknown)]++
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("verifycache: stats: %w", err)
	}
	return out, nil
}

// putDomain stores the catch-all state of a domain.
func (s *store) putDomain(d DomainCheck) error {
	v, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDomains).Put([]byte(d.Domain), v)
	})
}

// domains returns the stored catch-all states.
func (s *store) domains() (map[string]DomainCheck, error) {
	out := map[string]DomainCheck{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDomains).ForEach(func(k, v []byte) error {
			var d DomainCheck
			if json.Unmarshal(v, &d) == nil {
				out[string(k)] = d
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("verifycache: domains: %w", err)
	}
	return out, nil
}
