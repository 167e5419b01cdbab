package verifycache

import (
	"context"
	"fmt"
	"net"

	"github.com/mxedge/mxedge/mxroute"
)

// Router tells the probe where a domain's mail goes: the next hops
// delivery would use, in the order delivery would try them.
//
// Contract: Route returns at least one "host:port" on success. An error
// means the route cannot be determined now (a DNS failure, later); the
// probe counts it as a temporary failure, so the recipient is deferred,
// never refused. Route is called concurrently.
//
// Implementations: StaticRoutes, the fixed next hops of [routes]; and
// MXRoutes, which adds the MX hosts of other domains, lowest preference
// first (RFC 5321 section 5.1). The probe walks several hops in order: on
// to the next host when one cannot be reached, stopping at the first reply
// to RCPT.
type Router interface {
	Route(ctx context.Context, domain string) ([]string, error)
}

// StaticRoutes is [routes]: domain to a next hop "host:port" used as is,
// as delivery uses it.
type StaticRoutes map[string]string

// Route implements Router.
func (r StaticRoutes) Route(_ context.Context, domain string) ([]string, error) {
	hop, ok := r[domain]
	if !ok {
		return nil, fmt.Errorf("no route for %s", domain)
	}
	return []string{hop}, nil
}

// MXRoutes is the Router for delivery by MX: a domain with a fixed next hop
// in Static uses it, as delivery does; any other domain is probed at its MX
// hosts' addresses, most preferred first, gathered by mxroute (RFC 5321
// section 5.1: CNAME, MX order, implicit MX, null MX, self loop). Every
// Gather error, even a permanent one such as a null MX, is reported as an
// error and so counts as temporary (Router contract): a relay domain whose
// DNS says "no mail" is a configuration problem, not an unknown user.
type MXRoutes struct {
	Static   StaticRoutes
	Resolver mxroute.Resolver
	Options  mxroute.Options // Rand must be nil: Route runs concurrently
	Port     string          // SMTP port of MX hosts; "" means 25
}

// Route implements Router.
func (r MXRoutes) Route(ctx context.Context, domain string) ([]string, error) {
	if hop, ok := r.Static[domain]; ok {
		return []string{hop}, nil
	}
	rt, err := mxroute.Gather(ctx, r.Resolver, domain, r.Options)
	if err != nil {
		return nil, fmt.Errorf("route %s: %w", domain, err)
	}
	port := r.Port
	if port == "" {
		port = "25"
	}
	var hops []string
	for _, h := range rt.Hosts {
		for _, ip := range h.Addrs {
			hops = append(hops, net.JoinHostPort(ip.String(), port))
		}
	}
	if len(hops) == 0 {
		return nil, fmt.Errorf("route %s: no addresses", domain)
	}
	return hops, nil
}
