package dane

import (
	"context"
	"fmt"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/resolver"
)

// Resolver looks up TLSA records; *resolver.Resolver is one. Result must
// carry the AD bit of the answer (Authentic), and errors must classify
// with resolver.IsNotFound and resolver.IsTemporary.
type Resolver interface {
	LookupTLSA(ctx context.Context, port uint16, proto, host string) ([]*dns.TLSA, resolver.Result, error)
}

// Lookup returns the TLSA records of an SMTP server, "_<port>._tcp.<host>"
// (RFC 6698 section 3), all of them (pass them to Usable), but only
// if the answer was authenticated by DNSSEC (the AD bit of a validating
// resolver; RFC 7672 section 2.1.1: records without it are as good as
// none):
//
//   - records, nil: a secure answer with records.
//   - nil, nil: no TLSA record (NXDOMAIN or NODATA, secure or not), or an
//     insecure answer: DANE does not apply.
//   - nil, error: the lookup failed (SERVFAIL, timeout: resolver.IsTemporary
//     is true). RFC 7672 section 2.1.1: the server must not be used
//     without knowing its TLSA records; try another MX host or defer.
func Lookup(ctx context.Context, r Resolver, host string, port uint16) ([]*dns.TLSA, error) {
	records, res, err := r.LookupTLSA(ctx, port, "tcp", host)
	switch {
	case resolver.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("dane: TLSA lookup _%d._tcp.%s: %w", port, host, err)
	case !res.Authentic:
		return nil, nil
	}
	return records, nil
}
