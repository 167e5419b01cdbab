package verifycache

import (
	"net/netip"
	"sync"
	"time"
)

// maxTrackedIPs bounds the guard's memory. Beyond it, new clients are not
// counted until windows end; the per-hop probe limits still hold.
const maxTrackedIPs = 100000

// guard counts unknown recipients per client IP address within a window,
// against dictionary attacks (Postfix counts errors per session:
// smtpd_soft_error_limit 10, smtpd_hard_error_limit 20; per IP here, so
// that reconnecting does not reset the count).
//
//	count < limit               normal: misses are probed
//	limit <= count < disconnect no probes for this client; refusals delayed
//	count >= disconnect         421 and disconnect; until the window ends,
//	                            only addresses known to exist are accepted
//
// An IPv6 client is counted by its /64: one host usually has a whole /64
// to pick addresses from.
type guard struct {
	now func() time.Time

	mu                sync.Mutex
	limit, disconnect int // set guards these four (a reload)
	window            time.Duration
	delay             time.Duration
	ips               map[string]*ipCount
}

type ipCount struct {
	n     int
	start time.Time // of the window
}

func newGuard(limit, disconnect int, window, delay time.Duration, now func() time.Time) *guard {
	return &guard{limit: limit, disconnect: disconnect, window: window, delay: delay, now: now,
		ips: map[string]*ipCount{}}
}

// set replaces the thresholds, the window and the delay; the counts
// stay.
func (g *guard) set(limit, disconnect int, window, delay time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.limit, g.disconnect, g.window, g.delay = limit, disconnect, window, delay
}

// limited reports whether ip is over the limit now: it is not probed.
func (g *guard) limited(ip string) bool {
	ip = clientKey(ip)
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.countLocked(ip) >= g.limit
}

// clientKey is what the guard counts by: an IPv4 address, or the /64 of
// an IPv6 address.
func clientKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Is4() || a.Is4In6() {
		return ip
	}
	p, err := a.Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}

// count returns the unknown recipients of ip in its current window.
func (g *guard) count(ip string) int {
	ip = clientKey(ip)
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.countLocked(ip)
}

// countLocked is count of a client key, with g.mu held.
func (g *guard) countLocked(key string) int {
	c := g.ips[key]
	if c == nil || !g.now().Before(c.start.Add(g.window)) {
		return 0
	}
	return c.n
}

// add counts one unknown recipient of ip and returns the new count, and
// the thresholds and delay in force.
func (g *guard) add(ip string) (n, limit, disconnect int, delay time.Duration) {
	ip = clientKey(ip)
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	c := g.ips[ip]
	if c == nil || !now.Before(c.start.Add(g.window)) {
		if c == nil && len(g.ips) >= maxTrackedIPs {
			g.sweepLocked(now)
			if len(g.ips) >= maxTrackedIPs {
				return 1, g.limit, g.disconnect, g.delay
			}
		}
		c = &ipCount{start: now}
		g.ips[ip] = c
	}
	c.n++
	return c.n, g.limit, g.disconnect, g.delay
}

// sweep forgets ended windows and returns how many clients are over the
// limit and over the disconnect threshold now.
func (g *guard) sweep() (limited, cut int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sweepLocked(g.now())
	for _, c := range g.ips {
		if c.n >= g.limit {
			limited++
		}
		if c.n >= g.disconnect {
			cut++
		}
	}
	return limited, cut
}

func (g *guard) sweepLocked(now time.Time) {
	for ip, c := range g.ips {
		if !now.Before(c.start.Add(g.window)) {
			delete(g.ips, ip)
		}
	}
}
