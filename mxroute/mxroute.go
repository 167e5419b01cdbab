// Package mxroute finds where to deliver mail for a domain: the next-hop
// hosts and their addresses, in the order to try them, by the rules of
// RFC 5321 section 5.1 and RFC 7505 (null MX). Delivery uses it for every
// domain without a configured route, and recipient verification for its
// probes.
//
// Gather runs one small function per step, each citing its rule:
//
//  1. canonicalDomain: follow a CNAME of the domain (section 5.1: "If a
//     CNAME record is found, the resulting name is processed as if it
//     were the initial name").
//  2. lookupMX: the MX records; NXDOMAIN is a permanent failure, NODATA
//     means "no MX", a lookup error is temporary and never falls back to
//     the address records.
//  3. isNullMX: a null MX (RFC 7505 section 3) is a permanent failure.
//  4. orderMX (or implicitMX without MX records): by preference, equal
//     preferences shuffled.
//  5. resolveHosts: the addresses of each host.
//  6. dropSelf: this relay and every host not preferred to it are dropped
//     (mail loop); if this relay is the best MX, mail loops.
//  7. keepResolved and limitAddrs: hosts without addresses go, and at
//     most Options.MaxAddrs addresses are kept, in preference order.
//
// # Error contract
//
// Gather returns either a Route with at least one host with at least one
// address, or an *Error, never both. An *Error says whether the failure is
// temporary (the queue keeps the recipient and tries again later: every
// DNS lookup failure, SERVFAIL, timeout) or permanent (the recipient fails
// with a DSN: the domain does not exist, null MX, mail loop, no host has
// an address), with an RFC 3463 enhanced status code and a text fit for a
// DSN and the log:
//
//	4.4.3  temporary DNS failure ("directory server failure")
//	5.1.2  the domain does not exist, or has neither MX nor address
//	5.1.10 the domain has a null MX (RFC 7505)
//	5.4.4  no MX host of the domain has an address ("unable to route")
//	5.4.6  this relay is the best MX: mail would loop ("routing loop")
package mxroute

import (
	"context"
	"math/rand/v2"
	"net"
	"strings"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/resolver"
)

// Resolver is the DNS that Gather needs; *resolver.Resolver implements it.
// Errors follow the resolver package's contract: resolver.ErrNotExist
// (NXDOMAIN) and resolver.ErrNoRecords (NODATA) are permanent answers,
// anything else is a temporary failure (resolver.IsTemporary). A fake for
// tests returns those errors (wrapped or not):
//
//	func (f fake) LookupMX(ctx context.Context, name string) ([]*dns.MX, resolver.Result, error) {
//		return nil, resolver.Result{}, resolver.ErrNoRecords // no MX: implicit MX
//	}
type Resolver interface {
	// LookupCNAME returns the canonical name of name (name itself if it
	// is not an alias).
	LookupCNAME(ctx context.Context, name string) (string, resolver.Result, error)
	// LookupMX returns the MX records of name, in any order.
	LookupMX(ctx context.Context, name string) ([]*dns.MX, resolver.Result, error)
	// LookupIP returns the IPv4 and IPv6 addresses of host.
	LookupIP(ctx context.Context, host string) ([]net.IP, resolver.Result, error)
}

var _ Resolver = (*resolver.Resolver)(nil)

// DefaultMaxAddrs is the number of addresses tried per delivery attempt
// when Options.MaxAddrs is 0 (Postfix smtp_mx_address_limit).
const DefaultMaxAddrs = 5

// Options of Gather.
type Options struct {
	// MaxAddrs limits the addresses in the Route, all hosts together;
	// 0 means DefaultMaxAddrs, negative means no limit.
	MaxAddrs int
	// Self reports whether a host (lowercase, no trailing dot) or one of
	// its addresses is this relay: it is called with ip nil for each
	// host's name, and with each address. Nil: nothing is this relay.
	Self func(host string, ip net.IP) bool
	// Rand shuffles hosts of equal preference; nil uses the global,
	// randomly seeded source. A *rand.Rand is not safe for concurrent
	// use: give each goroutine its own (tests: a seeded one).
	Rand *rand.Rand
}

// Route is where to deliver a domain's mail: Hosts in the order to try
// them, each with at least one address.
type Route struct {
	// Domain is the recipient domain asked for (lowercase, no trailing
	// dot).
	Domain string
	// Canonical is Domain after following its CNAME (RFC 5321 section
	// 5.1), Domain if it is not an alias; the name whose MX was used.
	Canonical string
	// Hosts are the next hops, most preferred first.
	Hosts []Host
	// ImplicitMX: the domain has no MX records; Hosts is the domain
	// itself (RFC 5321 section 5.1).
	ImplicitMX bool
	// Authentic: the CNAME and MX answers were DNSSEC-validated (AD bit),
	// the condition for DANE to apply to the MX hosts (RFC 7672 section
	// 2.2.1).
	Authentic bool
}

// Host is one next-hop host.
type Host struct {
	Name  string   // lowercase, no trailing dot
	Pref  uint16   // MX preference; 0 for an implicit MX
	Addrs []net.IP // IPv4 first, then IPv6, as resolved
	// Authentic: the address answers were DNSSEC-validated (AD bit).
	Authentic bool
}

// Gather returns the route for mail to domain (an A-label domain, without
// brackets: address literals and configured routes are the caller's).
// See the package documentation for the steps and the error contract.
func Gather(ctx context.Context, r Resolver, domain string, opt Options) (*Route, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if domain == "" {
		return nil, permanent("5.1.2", "empty destination domain", nil)
	}
	canon, cnameAuth, err := canonicalDomain(ctx, r, domain)
	if err != nil {
		return nil, err
	}
	route := &Route{Domain: domain, Canonical: canon}
	mxs, mxAuth, err := lookupMX(ctx, r, canon)
	if err != nil {
		return nil, err
	}
	route.Authentic = cnameAuth && mxAuth
	var hosts []Host
	switch {
	case len(mxs) == 0:
		route.ImplicitMX = true
		hosts = implicitMX(canon)
	case isNullMX(mxs):
		return nil, permanent("5.1.10", "domain "+domain+" does not accept mail (null MX)", nil)
	default:
		hosts = orderMX(mxs, opt.Rand)
	}
	hosts, tempErr := resolveHosts(ctx, r, hosts)
	hosts, err = dropSelf(hosts, opt.Self, domain)
	if err != nil {
		return nil, err
	}
	if hosts, err = keepResolved(hosts, route.ImplicitMX, domain, tempErr); err != nil {
		return nil, err
	}
	route.Hosts = limitAddrs(hosts, opt.MaxAddrs)
	return route, nil
}
