package verifycache

import (
	"context"
	"crypto/rand"
	"strings"
	"time"
)

// catchAllRetry is how soon a catch-all test that failed temporarily is
// tried again.
const catchAllRetry = 5 * time.Minute

// DomainCheck is the catch-all state of one domain.
type DomainCheck struct {
	Domain string `json:"domain"`
	// CatchAll: the next hop accepted a random nonexistent address at the
	// last decisive test. Verification cannot tell users from typos there.
	CatchAll bool `json:"catch_all"`
	// Checked is the last decisive test (2xx or 5xx), Probe its address
	// and Reply its answer.
	Checked time.Time `json:"checked"`
	Probe   string    `json:"probe,omitempty"`
	Reply   string    `json:"reply,omitempty"`
	// LastTry is the last test, decisive or not.
	LastTry time.Time `json:"last_try"`
}

// A domain is tested once it is in use: right after the first probe for
// an RCPT of it since the start (not at start-up, when nobody asked
// anything of its next hop yet), then every CatchAllInterval by Maintain;
// a test that failed temporarily is retried after catchAllRetry.

// firstUse marks domain as in use and tests it if that is due. It runs in
// a probe's goroutine after the probe's result is recorded, but within its
// flight: the probe's waiters get their answer when the test is done (one
// more MAIL and RCPT on the probe's connection, which the test reuses; no
// second connection opened alongside).
func (v *Verifier) firstUse(domain string) {
	v.catchMu.Lock()
	first := !v.used[domain]
	v.used[domain] = true
	v.catchMu.Unlock()
	if first {
		v.checkCatchAll(v.ctx, domain, v.now())
	}
}

// checkCatchAllDue tests the probed domains in use whose test is due.
func (v *Verifier) checkCatchAllDue(ctx context.Context, now time.Time) {
	for _, d := range v.probeDomains() {
		v.catchMu.Lock()
		used := v.used[d]
		v.catchMu.Unlock()
		if used {
			v.checkCatchAll(ctx, d, now)
		}
	}
}

// checkCatchAll tests domain if its test is due at now.
func (v *Verifier) checkCatchAll(ctx context.Context, domain string, now time.Time) {
	every := v.cur().o.CatchAllInterval
	if every <= 0 || ctx.Err() != nil {
		return
	}
	v.catchMu.Lock()
	st, ok := v.catch[domain]
	v.catchMu.Unlock()
	due := !ok ||
		!now.Before(st.Checked.Add(every)) && !now.Before(st.LastTry.Add(catchAllRetry))
	if !due {
		return
	}
	if _, err := v.CheckCatchAll(ctx, domain); err != nil {
		v.log.Error("verify: catch-all test failed", "domain", domain, "err", err)
	}
}

// CheckCatchAll probes a random nonexistent local part of domain and
// records whether the next hop accepted it. The probe is not cached.
func (v *Verifier) CheckCatchAll(ctx context.Context, domain string) (DomainCheck, error) {
	addr := "mxedge-nx-" + strings.ToLower(rand.Text()[:16]) + "@" + domain
	res := v.prober.probe(ctx, addr, false)
	v.stats.probe(res)
	v.logProbe(res, "catchall")
	now := v.now()
	v.catchMu.Lock()
	d := v.catch[domain]
	d.Domain, d.LastTry = domain, now
	switch res.Result {
	case ResultExists:
		d.CatchAll, d.Checked, d.Probe, d.Reply = true, now, addr, res.Reply
	case ResultUnknown:
		d.CatchAll, d.Checked, d.Probe, d.Reply = false, now, addr, res.Reply
	}
	v.catch[domain] = d
	v.catchMu.Unlock()
	if res.Result == ResultExists {
		v.log.Warn("verify: catch-all next hop: it accepted a random nonexistent address, so recipient verification cannot work for this domain; make the backend reject unknown recipients",
			"domain", domain, "route", res.Route, "probe", "<"+addr+">", "reply", res.Reply)
	}
	return d, v.store.putDomain(d)
}
