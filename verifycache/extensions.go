package verifycache

import (
	"sync"
	"time"
)

// The probes talk EHLO to each routed domain's next hop, so they learn
// what it supports. The MX listener needs one answer before it accepts a
// recipient: will the next hop take a message that needs SMTPUTF8 (RFC
// 6531 section 3.4: a message with a non-ASCII envelope cannot be
// downgraded)? Accepting it and bouncing it later with 5.6.7 would be the
// accept-then-bounce a relay exists to avoid.

// extensionsTTL is how long a next hop's extensions learnt by a probe
// count; after it the hop is taken as unknown again until the next probe.
const extensionsTTL = 24 * time.Hour

// hopFeatures are the extensions of the next hops of routed domains, by
// domain, as the last probe of the domain saw them.
type hopFeatures struct {
	mu sync.Mutex
	m  map[string]features
}

type features struct {
	utf8 bool
	seen time.Time
}

// note records that domain's next hop announced SMTPUTF8 or not.
func (h *hopFeatures) note(domain string, utf8 bool, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string]features{}
	}
	h.m[domain] = features{utf8: utf8, seen: now}
}

// lacksUTF8 reports whether domain's next hop is known (from a probe
// within extensionsTTL) not to announce SMTPUTF8.
func (h *hopFeatures) lacksUTF8(domain string, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	f, ok := h.m[domain]
	return ok && !f.utf8 && now.Sub(f.seen) < extensionsTTL
}

// NextHopLacksSMTPUTF8 reports whether the next hop of domain, a probed
// relay domain, is known not to support SMTPUTF8: its last probe's EHLO
// (within a day) did not announce it. False when nothing is known (no
// probe yet, a domain in list or off mode, an MX destination).
func (v *Verifier) NextHopLacksSMTPUTF8(domain string) bool {
	return v.prober.features.lacksUTF8(domain, v.prober.now())
}
