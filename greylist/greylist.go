// Package greylist is mxedge's greylisting (off by default): a RCPT check
// that answers a first delivery attempt of an unknown (client network,
// sender, recipient) triplet with 450 4.7.1 and accepts its retry after
// the delay (the technique of Harris's "The Next Step in the Spam Control
// War: Greylisting", 2003, and postgrey; RFC 6647 describes it and its
// costs). Real MTAs retry (RFC 5321 section 4.5.4.1), most spambots do
// not.
//
//   - The triplet is the client's /24 (IPv4) or /64 (IPv6) network (a
//     sender's pool of outbound servers shares it), the envelope sender
//     and the recipient, both lowercased.
//   - A retry is accepted from Delay (5 min) after the first attempt until
//     Delay + Window (1 day); later it starts over. A triplet that passed
//     is remembered for PassTTL (36 days) from its last use.
//   - A client network with AutoAllow (5) passed triplets is allowlisted
//     for PassTTL: its new triplets are not delayed.
//   - Skipped: trusted clients (the listener's allowlist), clients a DNS
//     allow list (DNSWL: an entry of negative weight in dnsbl_sites)
//     matched, and authenticated sessions. Bounces (the null sender)
//     are greylisted like any mail: their senders retry too.
//
// The state is a bbolt file in the data directory (greylist.db); Cleanup,
// which the relay runs hourly, deletes the expired entries.
//
// An MX-10 pair greylists independently: a sender whose retry goes to the
// other MX is delayed again there. Senders retry the same host first in
// practice, but the worst case is two delays; keep Delay short (5 min)
// and Window long (1 day), or greylist on one MX only.
package greylist

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mxedge/mxedge/policy"
)

// Defaults.
const (
	DefaultDelay     = 5 * time.Minute
	DefaultWindow    = 24 * time.Hour
	DefaultPassTTL   = 36 * 24 * time.Hour
	DefaultAutoAllow = 5
)

var (
	bucketTriplets = []byte("triplets")
	bucketClients  = []byte("clients")
)

// Store is the greylisting state in a bbolt file.
type Store struct {
	db *bolt.DB
}

// Open opens (creating) the store at path.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("greylist: open %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketTriplets, bucketClients} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("greylist: open %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// entry of a triplet: first attempt, last pass (zero: not passed yet).
// Of a client network: the number of passed triplets and the last pass.
type entry struct {
	first, last time.Time
	n           uint32
}

func (e entry) bytes() []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint64(b, uint64(e.first.Unix()))
	binary.BigEndian.PutUint64(b[8:], uint64(e.last.Unix()))
	binary.BigEndian.PutUint32(b[16:], e.n)
	return b
}

func parseEntry(b []byte) (entry, bool) {
	if len(b) != 20 {
		return entry{}, false
	}
	unix := func(v uint64) time.Time {
		if v == 0 {
			return time.Time{}
		}
		return time.Unix(int64(v), 0)
	}
	return entry{first: unix(binary.BigEndian.Uint64(b)), last: unix(binary.BigEndian.Uint64(b[8:])),
		n: binary.BigEndian.Uint32(b[16:])}, true
}

// Greylist is the RCPT check.
type Greylist struct {
	Store     *Store
	Delay     time.Duration // [5m]
	Window    time.Duration // [24h] retry window after Delay
	PassTTL   time.Duration // [36d]
	AutoAllow int           // [5] passed triplets that allowlist a client network; <0: never
	Now       func() time.Time
}

func (g *Greylist) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

// Name is the stage label of its refusals.
func (*Greylist) Name() string { return "greylist" }

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Network is the client's greylisting network: /24 or /64.
func Network(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := 64
	if ip.Is4() {
		bits = 24
	}
	p, _ := ip.Prefix(bits)
	return p
}

var replyGreylisted = &policy.Reply{Code: 450, Enhanced: [3]int{4, 7, 1}, Text: "Greylisted, please try again later"}

// CheckRcpt implements policy.RcptCheck.
func (g *Greylist) CheckRcpt(ctx context.Context, c *policy.Conn, t *policy.Txn, r policy.Rcpt) policy.Result {
	switch {
	case c.Trusted:
		return policy.Result{Reason: "trusted client"}
	case c.AuthUser != "":
		return policy.Result{Reason: "authenticated"}
	case c.DNSWL:
		return policy.Result{Reason: "dnswl"}
	case !c.IP.IsValid():
		return policy.Result{}
	}
	now := time.Unix(g.now().Unix(), 0)
	delay, window, ttl := or(g.Delay, DefaultDelay), or(g.Window, DefaultWindow), or(g.PassTTL, DefaultPassTTL)
	auto := or(g.AutoAllow, DefaultAutoAllow)
	net := Network(c.IP).String()
	key := []byte(net + "\x00" + strings.ToLower(t.From) + "\x00" + strings.ToLower(r.Addr))
	var res policy.Result
	err := g.Store.db.Update(func(tx *bolt.Tx) error {
		tb, cb := tx.Bucket(bucketTriplets), tx.Bucket(bucketClients)
		ce, _ := parseEntry(cb.Get([]byte(net)))
		if auto > 0 && int(ce.n) >= auto && now.Sub(ce.last) < ttl {
			res = policy.Result{Reason: "client allowlisted"}
			ce.last = now
			return cb.Put([]byte(net), ce.bytes())
		}
		e, ok := parseEntry(tb.Get(key))
		switch {
		case ok && !e.last.IsZero() && now.Sub(e.last) < ttl:
			e.last = now
			res = policy.Result{Reason: "known"}
			return tb.Put(key, e.bytes())
		case ok && e.last.IsZero() && now.Sub(e.first) >= delay && now.Sub(e.first) <= delay+window:
			e.last = now
			if now.Sub(ce.last) >= ttl {
				ce.n = 0
			}
			ce.n++
			ce.last = now
			res = policy.Result{Reason: "passed after " + now.Sub(e.first).String()}
			if err := cb.Put([]byte(net), ce.bytes()); err != nil {
				return err
			}
			return tb.Put(key, e.bytes())
		case ok && e.last.IsZero() && now.Sub(e.first) < delay:
			res = policy.Result{Reply: replyGreylisted, Reason: "too early, " + (delay - now.Sub(e.first)).String() + " to wait"}
			return nil
		}
		// New, or its retry window or memory expired: start over.
		res = policy.Result{Reply: replyGreylisted, Reason: "new"}
		return tb.Put(key, entry{first: now}.bytes())
	})
	if err != nil {
		return policy.Result{Err: fmt.Errorf("greylist: %w", err)}
	}
	return res
}

// Cleanup deletes the entries expired at now: triplets not retried within
// their window, passed triplets and client networks unused for PassTTL.
// It returns the number deleted.
func (g *Greylist) Cleanup(now time.Time) (int, error) {
	delay, window, ttl := or(g.Delay, DefaultDelay), or(g.Window, DefaultWindow), or(g.PassTTL, DefaultPassTTL)
	n := 0
	err := g.Store.db.Update(func(tx *bolt.Tx) error {
		for _, b := range []*bolt.Bucket{tx.Bucket(bucketTriplets), tx.Bucket(bucketClients)} {
			c := b.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				e, ok := parseEntry(v)
				expired := !ok ||
					e.last.IsZero() && now.Sub(e.first) > delay+window ||
					!e.last.IsZero() && now.Sub(e.last) >= ttl
				if expired {
					if err := c.Delete(); err != nil {
						return err
					}
					n++
				}
			}
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("greylist: cleanup: %w", err)
	}
	return n, nil
}

var _ policy.RcptCheck = (*Greylist)(nil)
