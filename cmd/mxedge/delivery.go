package main

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/mxedge/mxedge/config"
	"github.com/mxedge/mxedge/delivery"
	"github.com/mxedge/mxedge/mtasts"
	"github.com/mxedge/mxedge/resolver"
)

// newResolver is the relay's one DNS resolver ([dns]), shared by every
// stage that asks DNS.
func newResolver(cfg *config.Config, obs resolver.Observer) *resolver.Resolver {
	return resolver.New(resolver.Config{Servers: cfg.DNS.Servers, Timeout: cfg.DNS.Timeout.D(), Observer: obs})
}

// mtastsRefresh is how often cached MTA-STS policies are checked for
// refresh before they expire.
const mtastsRefresh = time.Hour

// newDeliverer builds the delivery stage, the relay's one outbound SMTP
// client layer (recipient verification probes use it too): MX routing over
// res, MTA-STS (policy cache in data_dir, refreshed in the background until
// ctx ends) and DANE as configured.
func newDeliverer(ctx context.Context, cfg *config.Config, res *resolver.Resolver, log *slog.Logger) (*delivery.Deliverer, error) {
	o := deliveryOptions(cfg, log)
	o.Resolver = res
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
		o.STS = stsCache{c}
	}
	if cfg.Delivery.DANE {
		o.DANE = daneImpl{res}
	}
	return delivery.New(o), nil
}

// deliveryOptions maps [routes], [delivery], [tls_policy] and the
// timeouts onto the delivery stage's options.
func deliveryOptions(cfg *config.Config, log *slog.Logger) delivery.Options {
	dc := cfg.Delivery
	return delivery.Options{
		Hostname:                      cfg.Hostname,
		Routes:                        cfg.Routes,
		Smarthost:                     dc.Smarthost,
		SmarthostTLS:                  dc.SmarthostTLS,
		SmarthostAuthFile:             dc.SmarthostAuthFile,
		MXPort:                        dc.MXPort,
		TLSPolicy:                     cfg.TLSPolicy,
		DefaultTLSPolicy:              dc.DefaultTLSPolicy,
		SourceAddress:                 net.ParseIP(dc.SourceAddress),
		ConnectTimeout:                cfg.Timeouts.Connect.D(),
		ReplyTimeout:                  cfg.Timeouts.Reply.D(),
		DataTimeout:                   cfg.Timeouts.DataDone.D(),
		MaxRcptsPerTransaction:        dc.MaxRcptsPerTransaction,
		DestinationConcurrency:        dc.DestinationConcurrency,
		InitialDestinationConcurrency: dc.InitialDestinationConcurrency,
		Concurrency:                   dc.Concurrency,
		MaxIdle:                       cfg.Queue.Concurrency,
		MinBackoff:                    cfg.Queue.MinBackoff.D(),
		MaxBackoff:                    cfg.Queue.MaxBackoff.D(),
		Self:                          selfFunc(cfg),
		Logger:                        log,
	}
}

// selfFunc is the "this host is this relay" test of the MX walk: the
// hostname, and the listeners' addresses on the MX port.
func selfFunc(cfg *config.Config) func(host string, ip net.IP) bool {
	addrs := make([]string, len(cfg.Listeners))
	for i, l := range cfg.Listeners {
		addrs[i] = l.Address
	}
	return delivery.SelfFunc(cfg.Hostname, addrs, cfg.Delivery.MXPort)
}
