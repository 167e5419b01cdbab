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
// res, and the TLS policy of tp (MTA-STS, DANE) as configured.
func newDeliverer(cfg *config.Config, res *resolver.Resolver, tp *outboundTLS, log *slog.Logger) (*delivery.Deliverer, error) {
	o := deliveryOptions(cfg, log)
	o.Resolver = res
	self, err := selfFunc(cfg)
	if err != nil {
		return nil, err
	}
	o.Self = self
	if o.TLS, err = tp.policy(cfg); err != nil {
		return nil, err
	}
	return delivery.New(o), nil
}

// outboundTLS makes the delivery stage's TLS policy of a configuration
// ([tls_policy], delivery.default_tls_policy, delivery.mta_sts and
// delivery.dane), at start and at every reload. The MTA-STS policy cache
// (<data_dir>/mtasts.json) is opened by the first configuration that turns
// mta_sts on and kept, with its policies, until close (a reload that turns
// it off and on again finds them); while open it is refreshed in the
// background.
type outboundTLS struct {
	res *resolver.Resolver
	dir string // data_dir: the cache file's directory
	log *slog.Logger

	sts  *mtasts.Cache // nil until mta_sts is first on
	stop func()        // ends the refresh
}

// policy is the TLS policy of cfg; it opens the MTA-STS cache if cfg
// needs it and it is not open yet. Not safe for concurrent use (build,
// then reloads one at a time).
func (o *outboundTLS) policy(cfg *config.Config) (delivery.TLSPolicy, error) {
	p := delivery.TLSPolicy{Domains: cfg.TLSPolicy, Default: cfg.Delivery.DefaultTLSPolicy}
	if cfg.Delivery.MTASTS {
		if o.sts == nil {
			c, err := mtasts.New(mtasts.Options{Resolver: o.res, Dir: o.dir, Log: o.log})
			if err != nil {
				return delivery.TLSPolicy{}, err
			}
			o.sts = c
			o.stop = every(mtastsRefresh, c.Refresh)
		}
		p.STS = stsCache{o.sts}
	}
	if cfg.Delivery.DANE {
		p.DANE = daneImpl{o.res}
	}
	return p, nil
}

// close ends the MTA-STS refresh, if it runs.
func (o *outboundTLS) close() {
	if o.stop != nil {
		o.stop()
	}
}

// deliveryOptions maps [routes], [delivery] and the timeouts onto the
// delivery stage's options; the TLS policy comes from outboundTLS.
func deliveryOptions(cfg *config.Config, log *slog.Logger) delivery.Options {
	dc := cfg.Delivery
	return delivery.Options{
		Hostname:                      cfg.Hostname,
		Routes:                        cfg.Routes,
		Smarthost:                     dc.Smarthost,
		SmarthostTLS:                  dc.SmarthostTLS,
		SmarthostAuthFile:             dc.SmarthostAuthFile,
		MXPort:                        dc.MXPort,
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
		Logger:                        log,
	}
}

// selfLookupTimeout bounds the lookups of selfFunc: this host's
// interface addresses and those of listeners given by name.
const selfLookupTimeout = 10 * time.Second

// selfFunc is the "this host is this relay" test of the MX walk: the
// hostname, and the listeners' addresses on the MX port. It fails (and
// the relay does not start) if those addresses cannot be learnt: not
// knowing them would loop mail through this relay.
func selfFunc(cfg *config.Config) (func(host string, ip net.IP) bool, error) {
	addrs := make([]string, len(cfg.Listeners))
	for i, l := range cfg.Listeners {
		addrs[i] = l.Address
	}
	ctx, cancel := context.WithTimeout(context.Background(), selfLookupTimeout)
	defer cancel()
	return delivery.SelfFunc(ctx, cfg.Hostname, addrs, cfg.Delivery.MXPort)
}
