package smtpd

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxedge/mxedge/internal/tlsname"
	"github.com/mxedge/mxedge/policy"
)

// Refusal log lines are rate-limited per client (policy.ClientKey): the
// first refusalBurst in a minute are logged, the rest only counted, and
// the count is logged once when the minute is over ("refusals not
// logged"), so that 10,000 refused RCPTs in one session are a handful of
// lines, not 10,000. Limit refusals (the session limit, the per-client
// limits) are their own budget of one line per client per minute: a flood
// of connections from one client is one line.
const (
	refusalBurst = 5
	refusalUnit  = time.Minute
)

type refusalLog struct {
	srv     *Server
	mu      sync.Mutex
	clients map[refusalKey]*refusalCount
}

type refusalKey struct {
	client netip.Prefix
	limit  bool
}

type refusalCount struct {
	window     time.Time
	n          int
	suppressed int
}

func newRefusalLog(s *Server) *refusalLog {
	return &refusalLog{srv: s, clients: map[refusalKey]*refusalCount{}}
}

// log calls write (which writes the refusal's line) unless the client's
// budget is used up; suppressed is the number of lines not written in
// the client's last minute, to be added to the line.
func (l *refusalLog) log(ip netip.Addr, limit bool, write func(suppressed int)) {
	burst := refusalBurst
	if limit {
		burst = 1
	}
	k := refusalKey{policy.ClientKey(ip), limit}
	now := l.srv.o.Now()
	l.mu.Lock()
	rc := l.clients[k]
	if rc == nil {
		if len(l.clients) >= 100000 {
			l.sweepLocked(now)
		}
		rc = &refusalCount{window: now}
		l.clients[k] = rc
	}
	suppressed := 0
	if now.Sub(rc.window) >= refusalUnit {
		suppressed = rc.suppressed
		rc.window, rc.n, rc.suppressed = now, 0, 0
	}
	rc.n++
	ok := rc.n <= burst
	if !ok {
		rc.suppressed++
	}
	l.mu.Unlock()
	if ok {
		write(suppressed)
	}
}

// sweep logs the counts of the windows that are over and forgets them.
func (l *refusalLog) sweep() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(l.srv.o.Now())
}

func (l *refusalLog) sweepLocked(now time.Time) {
	for k, rc := range l.clients {
		if now.Sub(rc.window) < refusalUnit {
			continue
		}
		if rc.suppressed > 0 {
			l.srv.log.Info("refusals not logged", "client", k.client.String(), "count", rc.suppressed,
				"in", refusalUnit.String(), "limit", k.limit)
		}
		delete(l.clients, k)
	}
}

// withSuppressed adds the count of lines not logged before to attrs.
func withSuppressed(attrs []any, suppressed int) []any {
	if suppressed > 0 {
		attrs = append(attrs, "not_logged_before", suppressed)
	}
	return attrs
}

// gateCounts are the refusals the gate decides itself, by stage ("limit":
// the session limit, "pregreet"), for the metrics; the chain counts the
// rest (policy.Chain.Refusals).
type gateCounts struct {
	limit, pregreet, drain atomic.Uint64
	// The listener's traffic (Server.Counters).
	open               atomic.Int64
	sessions           atomic.Uint64
	messages, msgBytes atomic.Uint64
	tlsIn              [tlsname.Labels]atomic.Uint64 // by tlsname.Index
}

// TLSSessions returns the sessions that ran under TLS (STARTTLS or
// implicit), by protocol version ("TLSv1.2", "TLSv1.3", ...; a fixed
// set, "other" for anything else), each counted once at its first
// EHLO/HELO under TLS.
func (s *Server) TLSSessions() map[string]uint64 {
	out := make(map[string]uint64, tlsname.Labels)
	for i := range s.counts.tlsIn {
		out[tlsname.LabelAt(i)] = s.counts.tlsIn[i].Load()
	}
	return out
}

func (s *Server) gateRefused(stage string) {
	switch stage {
	case "limit":
		s.counts.limit.Add(1)
	case "pregreet":
		s.counts.pregreet.Add(1)
	case "drain":
		s.counts.drain.Add(1)
	}
}

// Counters are a listener's traffic since it started, read from live
// counters (cheap enough for every metrics scrape).
type Counters struct {
	// Open sessions now, Sessions accepted since the start (past the
	// session limit; refused at connect included).
	Open     int64
	Sessions uint64
	// Messages committed to the queue (a 250 queued as), and their bytes.
	Messages, Bytes uint64
}

// Counters returns the listener's traffic counters.
func (s *Server) Counters() Counters {
	return Counters{Open: s.counts.open.Load(), Sessions: s.counts.sessions.Load(),
		Messages: s.counts.messages.Load(), Bytes: s.counts.msgBytes.Load()}
}

// Refusals returns the listener's refusals so far by stage: the gate's
// ("limit" for the session limit, "pregreet") added to the chain's by
// check name ("limit" for the per-client limits, "iprev", "dnsbl", ...).
func (s *Server) Refusals() map[string]uint64 {
	out := s.chain.Load().Refusals()
	s.retiredMu.Lock()
	for k, n := range s.retired {
		out[k] += n
	}
	s.retiredMu.Unlock()
	out["limit"] += s.counts.limit.Load()
	out["pregreet"] += s.counts.pregreet.Load()
	if n := s.counts.drain.Load(); n > 0 {
		out["drain"] += n
	}
	return out
}
