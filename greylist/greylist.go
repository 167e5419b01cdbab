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
// which the relay runs hourly, deletes the expired entries. A RCPT reads
// the file and writes only when the state changes: a retry too early
// writes nothing, and the last-use time of a known triplet or an
// allowlisted network is rewritten at most once per LastUseRefresh
// (1 hour, or PassTTL/100 when shorter), so last-use times, and the
// expiry counted from them, are kept to that precision, which does not
// matter against a 36-day PassTTL. A dictionary attack or a spambot
// hammering thus costs read transactions, not one fsync per RCPT.
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

// LastUseRefresh is how often CheckRcpt rewrites the last-use time of a
// known triplet or an allowlisted client network: at most once per hour
// (or per PassTTL/100, when that is shorter), so that a repeated sender
// costs a read transaction, not a committed (fsynced) write.
const LastUseRefresh = time.Hour

// params are a Greylist's settings with the defaults filled in.
type params struct {
	delay, window, ttl, refresh time.Duration
	auto                        int
}

func (g *Greylist) params() params {
	p := params{delay: or(g.Delay, DefaultDelay), window: or(g.Window, DefaultWindow),
		ttl: or(g.PassTTL, DefaultPassTTL), auto: or(g.AutoAllow, DefaultAutoAllow)}
	p.refresh = min(LastUseRefresh, p.ttl/100)
	return p
}

// state is what the store holds for one RCPT: the client network's entry
// and the triplet's (ok: it exists).
type state struct {
	client, triplet entry
	ok              bool
}

// decision is the answer to one RCPT and the entries it changes (nil:
// unchanged).
type decision struct {
	res             policy.Result
	client, triplet *entry
}

func (d decision) writes() bool { return d.client != nil || d.triplet != nil }

// decide answers a RCPT in state st at now. It is a pure function of its
// arguments, so CheckRcpt runs it on a read transaction's view and again
// inside the write transaction, on the current value.
func (p params) decide(st state, now time.Time) decision {
	ce, e := st.client, st.triplet
	if p.auto > 0 && int(ce.n) >= p.auto && now.Sub(ce.last) < p.ttl {
		d := decision{res: policy.Result{Reason: "client allowlisted"}}
		if now.Sub(ce.last) >= p.refresh {
			ce.last = now
			d.client = &ce
		}
		return d
	}
	switch {
	case st.ok && !e.last.IsZero() && now.Sub(e.last) < p.ttl:
		d := decision{res: policy.Result{Reason: "known"}}
		if now.Sub(e.last) >= p.refresh {
			e.last = now
			d.triplet = &e
		}
		return d
	case st.ok && e.last.IsZero() && now.Sub(e.first) >= p.delay && now.Sub(e.first) <= p.delay+p.window:
		e.last = now
		if now.Sub(ce.last) >= p.ttl {
			ce.n = 0
		}
		ce.n++
		ce.last = now
		return decision{res: policy.Result{Reason: "passed after " + now.Sub(e.first).String()}, client: &ce, triplet: &e}
	case st.ok && e.last.IsZero() && now.Sub(e.first) < p.delay:
		return decision{res: policy.Result{Reply: replyGreylisted, Reason: "too early, " + (p.delay - now.Sub(e.first)).String() + " to wait"}}
	}
	// New, or its retry window or memory expired: start over.
	return decision{res: policy.Result{Reply: replyGreylisted, Reason: "new"}, triplet: &entry{first: now}}
}

// key of a RCPT's entries: the client network's and the triplet's.
type key struct{ client, triplet []byte }

func (k key) load(tx *bolt.Tx) state {
	var st state
	st.client, _ = parseEntry(tx.Bucket(bucketClients).Get(k.client))
	st.triplet, st.ok = parseEntry(tx.Bucket(bucketTriplets).Get(k.triplet))
	return st
}

func (k key) store(tx *bolt.Tx, d decision) error {
	if d.client != nil {
		if err := tx.Bucket(bucketClients).Put(k.client, d.client.bytes()); err != nil {
			return err
		}
	}
	if d.triplet != nil {
		return tx.Bucket(bucketTriplets).Put(k.triplet, d.triplet.bytes())
	}
	return nil
}

// CheckRcpt implements policy.RcptCheck. It decides on a read transaction
// and takes bbolt's single writer only when the state must change (a new
// triplet, a retry that passes, an expired entry starting over, a due
// last-use refresh); a retry too early and a repeated known triplet write
// nothing. The write transaction decides again on the current value, so
// concurrent RCPTs of one new triplet end in one entry.
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
	p := g.params()
	net := Network(c.IP).String()
	k := key{client: []byte(net), triplet: []byte(net + "\x00" + strings.ToLower(t.From) + "\x00" + strings.ToLower(r.Addr))}
	var d decision
	err := g.Store.db.View(func(tx *bolt.Tx) error {
		d = p.decide(k.load(tx), now)
		return nil
	})
	if err == nil && d.writes() {
		err = g.Store.db.Update(func(tx *bolt.Tx) error {
			d = p.decide(k.load(tx), now)
			return k.store(tx, d)
		})
	}
	if err != nil {
		return policy.Result{Err: fmt.Errorf("greylist: %w", err)}
	}
	return d.res
}

// Cleanup deletes the entries expired at now: triplets not retried within
// their window, passed triplets and client networks unused for PassTTL.
// It returns the number deleted.
func (g *Greylist) Cleanup(now time.Time) (int, error) {
	p := g.params()
	n := 0
	err := g.Store.db.Update(func(tx *bolt.Tx) error {
		for _, b := range []*bolt.Bucket{tx.Bucket(bucketTriplets), tx.Bucket(bucketClients)} {
			c := b.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				e, ok := parseEntry(v)
				expired := !ok ||
					e.last.IsZero() && now.Sub(e.first) > p.delay+p.window ||
					!e.last.IsZero() && now.Sub(e.last) >= p.ttl
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
