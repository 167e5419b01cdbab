package main

import (
	"context"
	"crypto/tls"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/dane"
	"github.com/mxedge/mxedge/delivery"
	"github.com/mxedge/mxedge/mtasts"
)

// stsCache adapts package mtasts's cache to delivery.STS (same contract:
// an error is "policy unknown now", nil is "no policy").
type stsCache struct{ c *mtasts.Cache }

func (s stsCache) Policy(ctx context.Context, domain string) (*delivery.STSPolicy, error) {
	p, err := s.c.Get(ctx, domain)
	if err != nil || p == nil {
		return nil, err
	}
	return &delivery.STSPolicy{Mode: string(p.Mode), ID: p.ID, Match: p.Match}, nil
}

// daneImpl adapts package dane to delivery.DANE, with r for the TLSA
// lookups: the relay's *resolver.Resolver, whose servers must validate
// DNSSEC.
type daneImpl struct{ r dane.Resolver }

func (x daneImpl) TLSA(ctx context.Context, host string, port uint16) ([]*dns.TLSA, error) {
	return dane.Lookup(ctx, x.r, host, port)
}

func (daneImpl) Usable(records []*dns.TLSA) []*dns.TLSA { return dane.Usable(records) }

func (daneImpl) Verify(cs tls.ConnectionState, records []*dns.TLSA, names []string) error {
	return dane.Verify(cs, records, names)
}
