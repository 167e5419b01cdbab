package main

import (
	"log/slog"
	"slices"

	"github.com/mxedge/mxedge/config"
	"github.com/mxedge/mxedge/internal/milterclient"
	"github.com/mxedge/mxedge/policy"
)

// preQueueMilters adds the [[milter]] entries of kind "mx" to an MX
// listener's chain, in order: DATA checks that decide before the reply.
func preQueueMilters(ch *policy.Chain, cfg *config.Config, log *slog.Logger) {
	for _, m := range cfg.Milters {
		if !slices.Contains(m.Kinds, config.KindMX) {
			continue
		}
		network, address, err := milterclient.ParseAddress(m.Address)
		if err != nil {
			continue // Validate refused it already
		}
		ch.Add(&policy.Milter{Config: milterclient.Config{Name: m.Name, Network: network, Address: address,
			ConnectTimeout: m.ConnectTimeout.D(), CommandTimeout: m.CommandTimeout.D(), ContentTimeout: m.ContentTimeout.D(),
			Hostname: cfg.Hostname}, DefaultAction: m.DefaultAction, Logger: log})
	}
}
