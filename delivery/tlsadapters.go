package delivery

import (
	"context"
	"crypto/tls"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/dane"
	"github.com/mxedge/mxedge/mtasts"
)

// MTASTS adapts package mtasts's cache to STS (same contract: an error
// is "policy unknown now", nil is "no policy").
func MTASTS(c *mtasts.Cache) STS { return stsCache{c} }

type stsCache struct{ c *mtasts.Cache }

func (s stsCache) Policy(ctx context.Context, domain string) (*STSPolicy, error) {
	p, err := s.c.Get(ctx, domain)
	if err != nil || p == nil {
		return nil, err
	}
	return &STSPolicy{Mode: string(p.Mode), ID: p.ID, Match: p.Match}, nil
}

// DANEWith adapts package dane to DANE, with r for the TLSA lookups: the
// relay's *resolver.Resolver, whose servers must validate DNSSEC.
func DANEWith(r dane.Resolver) DANE { return daneImpl{r} }

type daneImpl struct{ r dane.Resolver }

func (x daneImpl) TLSA(ctx context.Context, host string, port uint16) ([]*dns.TLSA, error) {
	return dane.Lookup(ctx, x.r, host, port)
}

func (daneImpl) Usable(records []*dns.TLSA) []*dns.TLSA { return dane.Usable(records) }

func (daneImpl) Verify(cs tls.ConnectionState, records []*dns.TLSA, names []string) error {
	return dane.Verify(cs, records, names)
}
