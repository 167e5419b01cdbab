package auth

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Guard counts authentication failures against brute force, per client
// network (an IPv4 address, an IPv6 /64) and per user name:
//
//   - after SlowAfter failures of a network within Window, every further
//     AUTH reply to it is delayed by Delay;
//   - at LockAfter failures it gets "421 4.7.0" and is locked out of AUTH
//     for Lockout (every AUTH answered 421 at once, the connection closed);
//   - a user name that failed UserSlowAfter times within Window, from any
//     networks, is answered with Delay too: slowed down, never locked out;
//     and not even slowed for a network from which it authenticated
//     successfully within TrustFor (its rightful owner's home or office).
//
// The counters are in memory (a restart forgives); the trusted
// user/network pairs can be saved and loaded (Trusted, LoadTrusted) so
// that they survive restarts. Safe for concurrent use.
type Guard struct {
	o GuardOptions

	mu      sync.Mutex
	nets    map[netip.Prefix]*failures
	users   map[string]*failures
	trusted map[trustKey]time.Time // last success
	sweep   time.Time

	failed, lockouts atomic.Uint64 // since the start (Counts)
}

// GuardCounts are a Guard's totals since it was made, for the metrics.
type GuardCounts struct {
	Failures uint64 // failed authentications (Failed calls)
	Lockouts uint64 // networks locked out
}

// Counts returns the totals; no lock is taken.
func (g *Guard) Counts() GuardCounts {
	return GuardCounts{Failures: g.failed.Load(), Lockouts: g.lockouts.Load()}
}

// GuardOptions tune a Guard; zero values take the defaults in brackets.
type GuardOptions struct {
	Window        time.Duration    // failures counted within [15m]
	SlowAfter     int              // failures of a network before replies are delayed [5]
	LockAfter     int              // failures of a network that lock it out [10]
	Lockout       time.Duration    // how long [15m]
	Delay         time.Duration    // delay of a reply once slowed [2s]
	UserSlowAfter int              // failures of a user name, all networks, before it is slowed [10]
	TrustFor      time.Duration    // a success exempts the user on that network this long [30d]
	Now           func() time.Time // [time.Now]
}

func (o *GuardOptions) defaults() {
	if o.Window <= 0 {
		o.Window = 15 * time.Minute
	}
	if o.SlowAfter <= 0 {
		o.SlowAfter = 5
	}
	if o.LockAfter <= 0 {
		o.LockAfter = 10
	}
	if o.Lockout <= 0 {
		o.Lockout = 15 * time.Minute
	}
	if o.Delay < 0 {
		o.Delay = 0
	} else if o.Delay == 0 {
		o.Delay = 2 * time.Second
	}
	if o.UserSlowAfter <= 0 {
		o.UserSlowAfter = 10
	}
	if o.TrustFor <= 0 {
		o.TrustFor = 30 * 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

type failures struct {
	times  []time.Time // within the window, oldest first
	locked time.Time   // locked out until
}

type trustKey struct {
	user string
	net  netip.Prefix
}

// NewGuard returns a guard with options o.
func NewGuard(o GuardOptions) *Guard {
	o.defaults()
	return &Guard{o: o, nets: map[netip.Prefix]*failures{}, users: map[string]*failures{}, trusted: map[trustKey]time.Time{}}
}

// Network is the unit failures are counted in: the address itself for
// IPv4, its /64 for IPv6 (one customer's network).
func Network(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64)
	return p
}

// Verdict is what the guard says about one AUTH attempt.
type Verdict struct {
	// Locked: refuse with 421 and close; the network is locked out.
	Locked bool
	// Delay: wait this long before the reply.
	Delay time.Duration
	// Failures of the network within the window, this one included.
	Failures int
}

// Locked reports whether ip's network is locked out of AUTH now.
func (g *Guard) Locked(ip netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.nets[Network(ip)]
	return f != nil && g.o.Now().Before(f.locked)
}

// Failed records a failed authentication of user from ip and returns what
// to do with its reply.
func (g *Guard) Failed(ip netip.Addr, user string) Verdict {
	g.failed.Add(1)
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.o.Now()
	g.maybeSweep(now)
	n := Network(ip)
	f := g.nets[n]
	if f == nil {
		f = &failures{}
		g.nets[n] = f
	}
	f.add(now, g.o.Window, g.o.LockAfter)
	v := Verdict{Failures: len(f.times)}
	if len(f.times) >= g.o.LockAfter {
		f.locked = now.Add(g.o.Lockout)
		g.lockouts.Add(1)
		v.Locked = true
		return v
	}
	if len(f.times) > g.o.SlowAfter {
		v.Delay = g.o.Delay
	}
	u := g.users[user]
	if u == nil {
		u = &failures{}
		g.users[user] = u
	}
	u.add(now, g.o.Window, g.o.UserSlowAfter)
	if len(u.times) >= g.o.UserSlowAfter && !g.isTrusted(user, n, now) {
		v.Delay = g.o.Delay
	}
	return v
}

// Succeeded records a successful authentication of user from ip: its
// network is trusted for user from now on for TrustFor.
func (g *Guard) Succeeded(ip netip.Addr, user string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.trusted[trustKey{user, Network(ip)}] = g.o.Now()
}

func (g *Guard) isTrusted(user string, n netip.Prefix, now time.Time) bool {
	t, ok := g.trusted[trustKey{user, n}]
	return ok && now.Sub(t) < g.o.TrustFor
}

// add records a failure at now, keeping only those within window (and at
// most keep of them).
func (f *failures) add(now time.Time, window time.Duration, keep int) {
	i := 0
	for i < len(f.times) && now.Sub(f.times[i]) >= window {
		i++
	}
	f.times = append(f.times[i:], now)
	if len(f.times) > keep {
		f.times = f.times[len(f.times)-keep:]
	}
}

// maybeSweep drops expired counters and trusted pairs, at most once a
// window, so that the maps stay bounded by recent activity.
func (g *Guard) maybeSweep(now time.Time) {
	if now.Sub(g.sweep) < g.o.Window {
		return
	}
	g.sweep = now
	for k, f := range g.nets {
		if now.After(f.locked) && (len(f.times) == 0 || now.Sub(f.times[len(f.times)-1]) >= g.o.Window) {
			delete(g.nets, k)
		}
	}
	for k, f := range g.users {
		if len(f.times) == 0 || now.Sub(f.times[len(f.times)-1]) >= g.o.Window {
			delete(g.users, k)
		}
	}
	for k, t := range g.trusted {
		if now.Sub(t) >= g.o.TrustFor {
			delete(g.trusted, k)
		}
	}
}

// Trusted returns the trusted user/network pairs with their last success,
// keyed "user network" (network in CIDR form), for saving.
func (g *Guard) Trusted() map[string]time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]time.Time, len(g.trusted))
	for k, t := range g.trusted {
		out[k.user+" "+k.net.String()] = t
	}
	return out
}

// LoadTrusted adds pairs saved by Trusted; malformed keys are skipped.
func (g *Guard) LoadTrusted(m map[string]time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k, t := range m {
		i := len(k) - 1
		for i >= 0 && k[i] != ' ' {
			i--
		}
		if i <= 0 {
			continue
		}
		p, err := netip.ParsePrefix(k[i+1:])
		if err != nil {
			continue
		}
		if old, ok := g.trusted[trustKey{k[:i], p}]; !ok || t.After(old) {
			g.trusted[trustKey{k[:i], p}] = t
		}
	}
}
