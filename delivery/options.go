package delivery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"math/rand/v2"
	"net"
	"time"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/mxroute"
)

// Options configure a Deliverer; cmd/mxedge maps the configuration
// ([routes], [delivery], [tls_policy], timeouts) onto them. Zero values
// take the defaults in brackets.
type Options struct {
	// Hostname is the EHLO name ["localhost"].
	Hostname string
	// Routes maps a domain (normal form) to its fixed next hop "host:port"
	// (Postfix transport_maps with smtp:[host]:port).
	Routes map[string]string
	// Smarthost is the next hop of every domain without a route, instead
	// of its MX hosts; "" for none. SmarthostTLS: "verify" or "encrypt"
	// ["verify"]; SmarthostAuthFile holds "user:password" for AUTH PLAIN.
	Smarthost, SmarthostTLS, SmarthostAuthFile string
	// MXPort is the SMTP port of MX hosts [25].
	MXPort int
	// TLS is the outbound TLS policy (per domain, the default ["may"],
	// MTA-STS and DANE); SetTLSPolicy replaces it.
	TLS TLSPolicy
	// SourceAddress binds outbound connections of its address family;
	// nil lets the system choose (Postfix smtp_bind_address).
	SourceAddress net.IP

	ConnectTimeout time.Duration // TCP connect [30s]
	ReplyTimeout   time.Duration // each reply, the TLS handshake [5m]
	DataTimeout    time.Duration // each body write and the reply to "." [10m]

	MaxRcptsPerTransaction        int // [50]
	DestinationConcurrency        int // per destination [20]
	InitialDestinationConcurrency int // slow-start window [5]
	Concurrency                   int // all destinations [100]
	// MaxIdle is the number of idle connections kept per next hop [20].
	MaxIdle int
	// MinBackoff and MaxBackoff are the queue's retry delays: a failed
	// address is tried last for MinBackoff, and dead periods stay within
	// them [5m, 4000s].
	MinBackoff, MaxBackoff time.Duration

	// Resolver makes domains without a route (and without a smarthost)
	// deliverable by MX (RFC 5321 section 5.1, package mxroute); nil:
	// such domains are deferred as a configuration error.
	// *resolver.Resolver implements mxroute.Resolver.
	Resolver mxroute.Resolver
	// Self tells whether an MX host is this relay (mxroute.Options.Self)
	// [the hostname only]; see SelfFunc.
	Self func(host string, ip net.IP) bool
	// RootCAs replaces the system roots for certificate checks (tls
	// policies "verify" and MTA-STS, smarthost_tls "verify").
	RootCAs *x509.CertPool
	// Rand seeds the shuffle of MX hosts of equal preference, for tests
	// that check the spread; each Gather gets its own generator drawn
	// from it (under a lock). nil: mxroute's random source.
	Rand *rand.Rand

	Logger *slog.Logger // [slog.Default()]
}

func (o *Options) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	seti := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	if o.Hostname == "" {
		o.Hostname = "localhost"
	}
	if o.SmarthostTLS == "" {
		o.SmarthostTLS = levelVerify
	}
	seti(&o.MXPort, 25)
	set(&o.ConnectTimeout, 30*time.Second)
	set(&o.ReplyTimeout, 5*time.Minute)
	set(&o.DataTimeout, 10*time.Minute)
	seti(&o.MaxRcptsPerTransaction, 50)
	seti(&o.DestinationConcurrency, 20)
	seti(&o.InitialDestinationConcurrency, 5)
	seti(&o.Concurrency, 100)
	seti(&o.MaxIdle, 20)
	set(&o.MinBackoff, 5*time.Minute)
	set(&o.MaxBackoff, 4000*time.Second)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
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
