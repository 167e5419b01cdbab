package submission

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Store keeps the per-user counters of the rate limits (and the brute
// force guard's trusted networks) in <data_dir>/submission.db (bbolt), so
// that a restart does not reset them. Counters are kept in memory and
// written back every few seconds (Run) and at Close: a crash forgets at
// most that much. Safe for concurrent use.
type Store struct {
	db  *bolt.DB
	now func() time.Time

	mu      sync.Mutex
	users   map[string]*Usage
	dirty   map[string]bool
	trusted func() map[string]time.Time // saved with the counters; nil: none
}

// Usage is one user's counters: messages and recipients in the current
// hour and day (fixed windows, each starting with the first message after
// the previous one ended).
type Usage struct {
	HourStart    time.Time `json:"hour_start"`
	HourMessages int       `json:"hour_messages"`
	HourRcpts    int       `json:"hour_rcpts"`
	DayStart     time.Time `json:"day_start"`
	DayMessages  int       `json:"day_messages"`
	DayRcpts     int       `json:"day_rcpts"`
	// OverLimit is when the user was last logged as over a limit (once an
	// hour).
	OverLimit time.Time `json:"over_limit,omitzero"`
}

var (
	bucketUsage   = []byte("usage")
	bucketTrusted = []byte("trusted")
)

// OpenStore opens (creating) the store at path. now is its clock [time.Now].
func OpenStore(path string, now func() time.Time) (*Store, error) {
	if now == nil {
		now = time.Now
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("submission store: %w", err)
	}
	s := &Store{db: db, now: now, users: map[string]*Usage{}, dirty: map[string]bool{}}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketUsage)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketTrusted); err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			var u Usage
			if json.Unmarshal(v, &u) == nil {
				s.users[string(k)] = &u
			}
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("submission store: %w", err)
	}
	return s, nil
}

// ReadUsage reads one user's counters from a store file that no daemon
// holds open ("mxedge user show" with the relay stopped).
func ReadUsage(path, user string) (Usage, bool, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		return Usage{}, false, fmt.Errorf("submission store: %w", err)
	}
	defer db.Close()
	var u Usage
	found := false
	err = db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketUsage); b != nil {
			if v := b.Get([]byte(user)); v != nil {
				found = true
				return json.Unmarshal(v, &u)
			}
		}
		return nil
	})
	return u, found, err
}

// SaveTrusted makes every flush also store what fn returns (the guard's
// trusted user/network pairs).
func (s *Store) SaveTrusted(fn func() map[string]time.Time) {
	s.mu.Lock()
	s.trusted = fn
	s.mu.Unlock()
}

// Trusted returns the trusted pairs saved last.
func (s *Store) Trusted() map[string]time.Time {
	out := map[string]time.Time{}
	_ = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTrusted).ForEach(func(k, v []byte) error {
			var t time.Time
			if t.UnmarshalText(v) == nil {
				out[string(k)] = t
			}
			return nil
		})
	})
	return out
}

// roll starts new windows that are due; call with mu held.
func (s *Store) roll(user string) *Usage {
	u := s.users[user]
	if u == nil {
		u = &Usage{}
		s.users[user] = u
	}
	now := s.now()
	if now.Sub(u.HourStart) >= time.Hour {
		u.HourStart, u.HourMessages, u.HourRcpts = now, 0, 0
	}
	if now.Sub(u.DayStart) >= 24*time.Hour {
		u.DayStart, u.DayMessages, u.DayRcpts = now, 0, 0
	}
	return u
}

// Usage returns user's counters now.
func (s *Store) Usage(user string) Usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.roll(user)
}

// record counts one message with rcpts recipients for user.
func (s *Store) record(user string, rcpts int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.roll(user)
	u.HourMessages++
	u.DayMessages++
	u.HourRcpts += rcpts
	u.DayRcpts += rcpts
	s.dirty[user] = true
}

// markLogged reports whether an over-limit line for user is due (once an
// hour) and records it.
func (s *Store) markLogged(user string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.roll(user)
	now := s.now()
	if !u.OverLimit.IsZero() && now.Sub(u.OverLimit) < time.Hour {
		return false
	}
	u.OverLimit = now
	s.dirty[user] = true
	return true
}

// Flush writes the changed counters (and the trusted pairs).
func (s *Store) Flush() error {
	s.mu.Lock()
	vals := make(map[string][]byte, len(s.dirty))
	for user := range s.dirty {
		v, _ := json.Marshal(s.users[user])
		vals[user] = v
	}
	s.dirty = map[string]bool{}
	trusted := s.trusted
	s.mu.Unlock()
	var tr map[string]time.Time
	if trusted != nil {
		tr = trusted()
	}
	if len(vals) == 0 && tr == nil {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsage)
		for user, v := range vals {
			if err := b.Put([]byte(user), v); err != nil {
				return err
			}
		}
		if tr != nil {
			if err := tx.DeleteBucket(bucketTrusted); err != nil {
				return err
			}
			tb, err := tx.CreateBucket(bucketTrusted)
			if err != nil {
				return err
			}
			for k, t := range tr {
				v, _ := t.MarshalText()
				if err := tb.Put([]byte(k), v); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// Run flushes every interval until ctx ends.
func (s *Store) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = s.Flush()
		}
	}
}

// Close flushes and closes the store.
func (s *Store) Close() error {
	err := s.Flush()
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	return err
}
