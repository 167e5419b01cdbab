package verifycache

import (
	"context"
	"fmt"
)

// Router tells the probe where a domain's mail goes: the next hops
// delivery would use, in the order delivery would try them.
//
// Contract: Route returns at least one "host:port" on success. An error
// means the route cannot be determined now (a DNS failure, later); the
// probe counts it as a temporary failure, so the recipient is deferred,
// never refused. Route is called concurrently.
//
// Today the only implementation is StaticRoutes, the fixed next hops of
// [routes]. MX routing does not exist yet; an MX Router will return the
// MX hosts of the domain, lowest preference first (RFC 5321 section 5.1),
// and the probe walks them exactly as it walks several static hops: on
// to the next host when one cannot be reached, stopping at the first
// reply to RCPT.
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
