package delivery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"math/rand/v2"
	"net"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/mxroute"
)

// Option configures a Deliverer beyond its configuration file; see New.
type Option func(*Deliverer)

// WithResolver makes domains without a route (and without a smarthost)
// deliverable by MX (RFC 5321 section 5.1, package mxroute). Without it,
// such domains are deferred as a configuration error. *resolver.Resolver
// implements mxroute.Resolver.
func WithResolver(r mxroute.Resolver) Option {
	return func(d *Deliverer) { d.resolver = r }
}

// WithRootCAs replaces the system roots for certificate checks (tls
// policies "verify" and MTA-STS, smarthost_tls "verify"); tests inject
// their CA here.
func WithRootCAs(pool *x509.CertPool) Option {
	return func(d *Deliverer) { d.roots = pool }
}

// WithMTASTS sets the source of MTA-STS policies (RFC 8461). Without it
// no MTA-STS policy applies.
func WithMTASTS(s STS) Option {
	return func(d *Deliverer) { d.sts = s }
}

// WithDANE sets the DANE implementation (RFC 7672). Without it no TLSA
// record is looked up, and the tls policy "dane" defers every delivery.
func WithDANE(x DANE) Option {
	return func(d *Deliverer) { d.dane = x }
}

// WithSelf replaces the test for "this host is this relay" in the MX
// walk (mxroute.Options.Self); by default: the configured hostname, and
// the listeners' addresses on the MX port (every local interface address
// for a listener on a wildcard address).
func WithSelf(self func(host string, ip net.IP) bool) Option {
	return func(d *Deliverer) { d.self = self }
}

// WithRand seeds the shuffle of MX hosts of equal preference, for tests
// that check the spread; each Gather gets its own generator drawn from r
// (under a lock), so concurrent deliveries stay safe.
func WithRand(r *rand.Rand) Option {
	return func(d *Deliverer) { d.rng = r }
}

// STS is where MTA-STS policies come from (RFC 8461): package mtasts's
// cache, behind a small adapter in cmd/mxedge.
//
// Contract: Policy returns the policy in force for a recipient domain
// (the domain itself, not its CNAME target), from a cache refreshed
// before expiry, or nil if the domain has none (no record, or a policy
// that could not be fetched: RFC 8461 section 3.3). An error means that
// the policy in force is unknown now (a temporary DNS failure and nothing
// cached): the MX hosts without DANE are then not used and the
// recipients deferred (4.4.3), never delivered as if there were no
// policy. Policy is called concurrently.
//
// Example: a domain that enforces a policy for its two MX hosts
//
//	func (fixed) Policy(ctx context.Context, domain string) (*delivery.STSPolicy, error) {
//		return &delivery.STSPolicy{Mode: "enforce", ID: "20251123",
//			Match: func(mx string) bool { return mx == "mx1.example.org" || mx == "mx2.example.org" }}, nil
//	}
type STS interface {
	Policy(ctx context.Context, domain string) (*STSPolicy, error)
}

// STSPolicy is the part of an MTA-STS policy that delivery uses.
type STSPolicy struct {
	// Mode: "enforce" (MX hosts not matching are not used, and their
	// certificate must verify for the MX name), "testing" (the same
	// checks, failures only logged) or "none".
	Mode string
	// ID is the policy id, for the log.
	ID string
	// Match reports whether an MX host name (lowercase, no trailing dot)
	// matches one of the policy's mx patterns (RFC 8461 section 4.1).
	Match func(mxHost string) bool
}

// DANE is the DANE implementation (RFC 7672): package dane, behind a
// small adapter in cmd/mxedge.
//
// Contract: TLSA returns the TLSA records of host at port only if the
// answer was DNSSEC-validated (AD bit), nil if there are none or they are
// not validated; an error only for a temporary lookup failure (SERVFAIL,
// timeout), which must not be taken for "no records" (RFC 7672 section
// 2.2: the host is then not used). Usable filters the records delivery can
// check: DANE-TA(2) and DANE-EE(3) with known selectors and matching
// types. Verify checks a finished handshake's certificates against the
// usable records; names are the reference identifiers for DANE-TA (the
// MX host name and the next-hop domain, RFC 7672 section 3.2.2).
type DANE interface {
	TLSA(ctx context.Context, host string, port uint16) ([]*dns.TLSA, error)
	Usable(records []*dns.TLSA) []*dns.TLSA
	Verify(cs tls.ConnectionState, records []*dns.TLSA, names []string) error
}
