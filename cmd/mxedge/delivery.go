package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/mxedge/mxedge/config"
	"github.com/mxedge/mxedge/delivery"
	"github.com/mxedge/mxedge/mtasts"
	"github.com/mxedge/mxedge/resolver"
)

// newResolver is the relay's one DNS resolver ([dns]), shared by every
// stage that asks DNS.
func newResolver(cfg *config.Config) *resolver.Resolver {
	return resolver.New(resolver.Config{Servers: cfg.DNS.Servers, Timeout: cfg.DNS.Timeout.D()})
}

// mtastsRefresh is how often cached MTA-STS policies are checked for
// refresh before they expire.
const mtastsRefresh = time.Hour

// newDeliverer builds the delivery stage: MX routing over res, MTA-STS
// (policy cache in data_dir, refreshed in the background until ctx ends)
// and DANE as configured.
func newDeliverer(ctx context.Context, cfg *config.Config, res *resolver.Resolver, log *slog.Logger) (*delivery.Deliverer, error) {
	opts := []delivery.Option{delivery.WithResolver(res)}
	if cfg.Delivery.MTASTS {
		c, err := mtasts.New(mtasts.Options{Resolver: res, Dir: cfg.DataDir, Log: log})
		if err != nil {
			return nil, err
		}
		go func() {
			t := time.NewTicker(mtastsRefresh)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					c.Refresh(ctx)
				}
			}
		}()
		opts = append(opts, delivery.WithMTASTS(delivery.MTASTS(c)))
	}
	if cfg.Delivery.DANE {
		opts = append(opts, delivery.WithDANE(delivery.DANEWith(res)))
	}
	return delivery.New(cfg, log, opts...), nil
}
