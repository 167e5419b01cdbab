package policy

import (
	"context"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Limits are the per-client limits (Postfix anvil: smtpd_client_*_limit):
// concurrent sessions and new connections per minute at connect, messages
// (MAIL commands) per minute at MAIL, recipients (RCPT commands) per
// minute at RCPT. A client is an IPv4 address or an IPv6 /64 (ClientKey).
// Over a limit the client gets "421 4.7.0" and is disconnected; the counts
// are per listener, in memory. Trusted clients are not counted. Every
// attempt counts, also a refused one (as anvil counts).
//
// Rates are counted in a window of a minute from the client's first event
// in it, as anvil does (anvil_rate_time_unit). At most MaxClients clients
// are tracked; a new client beyond that is let through uncounted rather
// than refused (a flood from many addresses must not lock out everyone).
//
// Once in use, the four limits change only through SetLimits (a
// configuration reload hands the same Limits, with its counts, to the
// listener's new chain).
type Limits struct {
	Sessions int // concurrent sessions per client; 0: no limit
	ConnRate int // new connections per client per minute; 0: no limit
	MsgRate  int // MAIL commands per client per minute; 0: no limit
	RcptRate int // RCPT commands per client per minute; 0: no limit
	// MaxClients bounds the clients tracked [100000].
	MaxClients int
	// Now is the clock of the rate windows [time.Now].
	Now func() time.Time

	mu      sync.Mutex
	clients map[netip.Prefix]*clientCount
	swept   time.Time
}

// limitWindow is the rate limits' time unit.
const limitWindow = time.Minute

type clientCount struct {
	sessions           int
	window             time.Time // start of the rate window
	conns, msgs, rcpts int
}

// Name implements Check.
func (*Limits) Name() string { return "limit" }

// CheckConnect implements ConnectCheck: the session and connection rate
// limits. An admitted session is counted until the connection closes.
func (l *Limits) CheckConnect(_ context.Context, c *Conn) Result {
	if c.Trusted {
		return Result{}
	}
	key := ClientKey(c.IP)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Sessions <= 0 && l.ConnRate <= 0 {
		return Result{}
	}
	cc := l.client(key)
	if cc == nil {
		return Result{}
	}
	cc.conns++
	switch {
	case l.Sessions > 0 && cc.sessions >= l.Sessions:
		return limitRefusal(replyTooManyConnections(c.IP), "client_sessions", cc.sessions)
	case l.ConnRate > 0 && cc.conns > l.ConnRate:
		return limitRefusal(replyConnectionRate(c.IP), "client_connection_rate", cc.conns)
	}
	cc.sessions++
	c.AtClose(func() {
		l.mu.Lock()
		cc.sessions--
		l.mu.Unlock()
	})
	return Result{}
}

// CheckMail implements MailCheck: the message rate.
func (l *Limits) CheckMail(_ context.Context, c *Conn, _ *Txn) Result {
	if c.Trusted {
		return Result{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.MsgRate <= 0 {
		return Result{}
	}
	if cc := l.client(ClientKey(c.IP)); cc != nil {
		if cc.msgs++; cc.msgs > l.MsgRate {
			return limitRefusal(replyMessageRate(c.IP), "client_message_rate", cc.msgs)
		}
	}
	return Result{}
}

// CheckRcpt implements RcptCheck: the recipient rate.
func (l *Limits) CheckRcpt(_ context.Context, c *Conn, _ *Txn, _ Rcpt) Result {
	if c.Trusted {
		return Result{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.RcptRate <= 0 {
		return Result{}
	}
	if cc := l.client(ClientKey(c.IP)); cc != nil {
		if cc.rcpts++; cc.rcpts > l.RcptRate {
			return limitRefusal(replyRecipientRate(c.IP), "client_recipient_rate", cc.rcpts)
		}
	}
	return Result{}
}

// SetLimits replaces the four limits (0: no limit) while the check is in
// use, keeping every client's counts: a client already over a new, lower
// limit is refused at its next event, and the sessions in flight stay
// counted.
func (l *Limits) SetLimits(sessions, connRate, msgRate, rcptRate int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.Sessions, l.ConnRate, l.MsgRate, l.RcptRate = sessions, connRate, msgRate, rcptRate
}

func limitRefusal(r *Reply, limit string, n int) Result {
	return Result{Reply: r, Disconnect: true, Reason: limit + " count=" + strconv.Itoa(n)}
}

// client returns key's counts with the rate window brought up to date,
// nil if there is no room for a new client. l.mu is held.
func (l *Limits) client(key netip.Prefix) *clientCount {
	now := l.now()
	if l.clients == nil {
		l.clients = map[netip.Prefix]*clientCount{}
	}
	if now.Sub(l.swept) >= limitWindow {
		l.sweep(now)
	}
	cc := l.clients[key]
	if cc == nil {
		max := l.MaxClients
		if max <= 0 {
			max = 100000
		}
		if len(l.clients) >= max {
			return nil
		}
		cc = &clientCount{window: now}
		l.clients[key] = cc
	}
	if now.Sub(cc.window) >= limitWindow {
		cc.window, cc.conns, cc.msgs, cc.rcpts = now, 0, 0, 0
	}
	return cc
}

// sweep forgets clients without sessions whose window is over. l.mu is
// held.
func (l *Limits) sweep(now time.Time) {
	l.swept = now
	for k, cc := range l.clients {
		if cc.sessions == 0 && now.Sub(cc.window) >= limitWindow {
			delete(l.clients, k)
		}
	}
}

// Tracked is the number of clients counted now (for tests and metrics).
func (l *Limits) Tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}

func (l *Limits) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}
