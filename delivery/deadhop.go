package delivery

import (
	"context"
	"fmt"
	"time"
)

// Dead next hops. A hop that cannot be connected to deadAfter times in a
// row (TCP connect refused or timed out, greeting or EHLO failed: the host,
// not a recipient, is the problem) is marked dead until a retry time, like
// Postfix's queue manager marks a destination dead after a failed cohort.
// While dead, its recipients are deferred at once without connecting: the
// queue does not pile connection timeouts onto a host that is down, and
// the other hops keep their delivery slots. Replies to MAIL, RCPT or DATA,
// whatever their code, show a working host and do not count.
//
// The first attempt after the dead period is a probe, alone: others are
// still deferred while it runs. If it connects, the hop is alive again; if
// not, it is dead for twice as long, up to deadMax. Any successful
// connection (or a transaction started on a cached one) resets the count.
// deadMin and deadMax are DefaultDeadMin and DefaultDeadMax, but never
// longer than queue.min_backoff and queue.max_backoff.
//
// The hop is a route or the smarthost as configured, or one address
// "ip:port" of an MX host: a dead MX address is skipped and the walk goes
// on to the next one (destination.go); all of them dead defers.

// hopState is a next hop with connection failures. Hops without are not
// in Deliverer.hops.
type hopState struct {
	failures  int           // consecutive connection failures
	deadUntil time.Time     // zero: not dead
	period    time.Duration // the current (last) dead period
	probing   bool          // a probe is running
}

// admit decides whether a transaction to hop may connect. If the hop is
// dead it returns the text to defer the recipients with; once the dead
// period is over, the first caller gets probe=true and must report the
// outcome of its connect (connOK or connFailed).
func (d *Deliverer) admit(hop string) (probe bool, deferText string) {
	d.hopMu.Lock()
	defer d.hopMu.Unlock()
	st := d.hops[hop]
	if st == nil || st.deadUntil.IsZero() {
		return false, ""
	}
	why := fmt.Sprintf("next hop %s marked dead after %d connection failures; ", hop, st.failures)
	if d.now().Before(st.deadUntil) {
		return false, why + "next try at " + st.deadUntil.Format(time.TimeOnly)
	}
	if st.probing {
		return false, why + "probe in progress"
	}
	st.probing = true
	return true, ""
}

// connFailed counts a connection failure to hop. Failures caused by
// cancelling ctx say nothing about the hop and are not counted (a probe
// cancelled that way is simply over).
func (d *Deliverer) connFailed(ctx context.Context, hop string, probe bool) {
	d.hopMu.Lock()
	defer d.hopMu.Unlock()
	st := d.hops[hop]
	if st == nil {
		st = &hopState{}
		d.hops[hop] = st
	}
	if probe {
		st.probing = false
	}
	if ctx.Err() != nil {
		return
	}
	st.failures++
	switch {
	case probe && !st.deadUntil.IsZero():
		st.period = min(2*st.period, d.lim.deadMax)
	case st.deadUntil.IsZero() && st.failures >= d.lim.deadAfter:
		st.period = d.lim.deadMin
	default:
		return
	}
	st.deadUntil = d.now().Add(st.period)
	d.log.Warn("next hop marked dead", "relay", hop, "failures", st.failures,
		"period", st.period.String(), "next_try", st.deadUntil.Format(time.TimeOnly))
}

// connOK records a working connection to hop: it clears the dead state,
// the failure count and the memory of a failure (destination.go).
func (d *Deliverer) connOK(hop string) {
	d.hopMu.Lock()
	defer d.hopMu.Unlock()
	delete(d.failed, hop)
	st := d.hops[hop]
	if st == nil {
		return
	}
	delete(d.hops, hop)
	if !st.deadUntil.IsZero() {
		d.log.Info("next hop alive again", "relay", hop, "failures", st.failures)
	}
}

// hopAlive is connOK for a transaction started on a cached connection.
func (d *Deliverer) hopAlive(hop string) { d.connOK(hop) }

// DeadHops counts the next hops marked dead now (for the metrics): a
// pass over the hops with connection failures only, under hopMu.
func (d *Deliverer) DeadHops() int {
	d.hopMu.Lock()
	defer d.hopMu.Unlock()
	n := 0
	for _, st := range d.hops {
		if !st.deadUntil.IsZero() {
			n++
		}
	}
	return n
}
