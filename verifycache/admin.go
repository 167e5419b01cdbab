package verifycache

import (
	"context"
	"errors"
	"fmt"
)

// Admin operations, served on the control socket ("mxedge verify ...").
// Addresses are normalized with Normalize first; a malformed one is an
// error wrapping ErrBadAddress.

var (
	// ErrBadAddress: the address cannot be normalized.
	ErrBadAddress = errors.New("bad address")
	// ErrNotProbed: the address's domain is not verified by probes (not a
	// relay domain, or mode "list" or "off").
	ErrNotProbed = errors.New("domain not verified by probes")
	// ErrNotFound: Forget found no entry.
	ErrNotFound = errors.New("no cache entry")
)

// Lookup is what the cache says about one address ("verify show").
type Lookup struct {
	Addr string `json:"addr"`
	// Mode of the address's domain: "probe", "list", "off", or "" when it
	// is not a relay domain.
	Mode string `json:"mode"`
	// Entry is the cache entry (a temporary failure held in memory shows
	// as state "tempfail"); nil when there is none.
	Entry *Entry `json:"entry,omitempty"`
	// Valid: Entry is used at RCPT (not expired).
	Valid bool `json:"valid"`
	// Answer is what RCPT would get now: "accept", "reject", "defer", or
	// "probe" (nothing valid cached: the next RCPT probes).
	Answer string `json:"answer"`
	// RefreshDue: a known address that the next RCPT will have probed
	// again in the background.
	RefreshDue bool `json:"refresh_due,omitempty"`
	// Probing: a probe of the address is in flight.
	Probing bool `json:"probing,omitempty"`
}

// Show returns what the cache knows about addr.
func (v *Verifier) Show(addr string) (Lookup, error) {
	addr, err := Normalize(addr)
	if err != nil {
		return Lookup{}, fmt.Errorf("%w: %v", ErrBadAddress, err)
	}
	l := Lookup{Addr: addr, Probing: v.flight.inFlight(addr)}
	pol, ok := v.cur().domains[domainOf(addr)]
	if ok {
		l.Mode = pol.Mode
	}
	switch {
	case !ok || pol.Mode == ModeOff:
		l.Answer = "accept"
	case pol.Mode == ModeList && pol.List.Has(addr):
		l.Answer = "accept"
	case pol.Mode == ModeList:
		l.Answer = "reject"
	}
	now := v.now()
	e, have, err := v.store.get(addr)
	if err != nil {
		return Lookup{}, err
	}
	if have {
		l.Entry, l.Valid = &e, e.Valid(now)
	} else if t, ok := v.temp.get(addr, now); ok {
		l.Entry = &Entry{Addr: addr, State: StateTempfail, Reply: t.reply, Route: t.route,
			LastProbe: t.at, Expires: t.until}
		l.Valid = true
	}
	if l.Answer != "" {
		return l, nil
	}
	switch {
	case l.Valid && l.Entry.State == StateExists:
		l.Answer = "accept"
		l.RefreshDue = now.Sub(e.Verified) >= v.cur().o.RefreshAfter
	case l.Valid && l.Entry.State == StateUnknown:
		l.Answer = "reject"
	case l.Valid: // a held temporary failure
		l.Answer = "defer"
	default:
		l.Answer = "probe"
		if _, ok := v.temp.get(addr, now); ok {
			l.Answer = "defer"
		}
	}
	return l, nil
}

// ProbeReport is the outcome of an admin probe ("verify probe").
type ProbeReport struct {
	ProbeResult
	// Cached is the entry after the probe (nil when none was stored).
	Cached *Entry `json:"cached,omitempty"`
	// Kept: the probe failed, but a still valid positive entry stays (a
	// failed probe never overwrites it; Forget removes it).
	Kept bool `json:"kept,omitempty"`
}

// Probe probes addr now on a new connection, with the dialogue recorded,
// and caches the result by the usual rules.
func (v *Verifier) Probe(ctx context.Context, addr string) (ProbeReport, error) {
	addr, err := Normalize(addr)
	if err != nil {
		return ProbeReport{}, fmt.Errorf("%w: %v", ErrBadAddress, err)
	}
	if pol, ok := v.cur().domains[domainOf(addr)]; !ok || pol.Mode != ModeProbe {
		mode := "not a relay domain"
		if ok {
			mode = "mode " + pol.Mode
		}
		return ProbeReport{}, fmt.Errorf("%w: %s (%s)", ErrNotProbed, domainOf(addr), mode)
	}
	v.mu.RLock()
	if v.closed {
		v.mu.RUnlock()
		return ProbeReport{}, errors.New("verifycache: closed")
	}
	v.wg.Add(1)
	v.mu.RUnlock()
	defer v.wg.Done()
	res := v.prober.probe(ctx, addr, true)
	e, have, err := v.record(res, "admin")
	rep := ProbeReport{ProbeResult: res}
	if err != nil {
		return rep, err
	}
	if have {
		rep.Cached = &e
		rep.Kept = res.Result != ResultExists && e.State == StateExists && e.Valid(v.now())
	}
	return rep, nil
}

// Forget removes the entry of addr (and a held temporary failure), so the
// next RCPT probes again. It returns ErrNotFound when there was none.
func (v *Verifier) Forget(addr string) (string, error) {
	addr, err := Normalize(addr)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadAddress, err)
	}
	found, err := v.store.remove(addr)
	if err != nil {
		return addr, err
	}
	if v.temp.remove(addr) {
		found = true
	}
	if !found {
		return addr, fmt.Errorf("%w for %s", ErrNotFound, addr)
	}
	return addr, nil
}
