package delivery

import (
	"crypto/tls"
	"slices"
	"sync"

	"github.com/mxedge/mxedge/internal/tlsname"
)

// TLS sessions out, for the metrics: one count per session that got
// past its TLS step (STARTTLS done, or plaintext where the policy
// allows it), by protocol version and the policy that decided it.

// tlsOutPolicies are the fixed policy values of TLSSessions; anything
// else is "other" (versions: "none", and tlsname.Label: TLSv1.0 to
// TLSv1.3, "other").
var tlsOutPolicies = []string{levelNone, levelMay, levelEncrypt, levelVerify, levelDANE, "dane-unusable", "mta-sts"}

// TLSCount is the number of outbound sessions with one version and policy.
type TLSCount struct {
	Version string // "none" (plaintext), "TLSv1.2", "TLSv1.3", ...
	Policy  string // none, may, encrypt, verify, dane, dane-unusable, mta-sts
	N       uint64
}

type tlsCounts struct {
	mu sync.Mutex
	n  map[[2]string]uint64
}

func (c *tlsCounts) add(cs *tls.ConnectionState, policy string) {
	v := "none"
	if cs != nil {
		v = tlsname.Label(cs.Version)
	}
	if !slices.Contains(tlsOutPolicies, policy) {
		policy = "other"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[[2]string]uint64{}
	}
	c.n[[2]string{v, policy}]++
}

// TLSSessions returns the outbound sessions so far by TLS version and
// policy (only the pairs seen).
func (d *Deliverer) TLSSessions() []TLSCount {
	d.tlsOut.mu.Lock()
	defer d.tlsOut.mu.Unlock()
	out := make([]TLSCount, 0, len(d.tlsOut.n))
	for k, n := range d.tlsOut.n {
		out = append(out, TLSCount{Version: k[0], Policy: k[1], N: n})
	}
	return out
}
