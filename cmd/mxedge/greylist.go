package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/mxedge/mxedge/config"
	"github.com/mxedge/mxedge/greylist"
)

// openGreylist opens <data_dir>/greylist.db when [greylist] is enabled
// (nil otherwise) and starts its hourly cleanup; closeFn stops the cleanup
// and closes the file.
func openGreylist(cfg *config.Config, log *slog.Logger) (g *greylist.Greylist, closeFn func(), err error) {
	g0 := cfg.Greylist
	if !g0.Enabled {
		return nil, func() {}, nil
	}
	s, err := greylist.Open(filepath.Join(cfg.DataDir, "greylist.db"))
	if err != nil {
		return nil, nil, err
	}
	auto := g0.AutoAllowlist
	if auto == 0 {
		auto = -1 // never
	}
	g = &greylist.Greylist{Store: s, Delay: g0.Delay.D(), Window: g0.RetryWindow.D(), PassTTL: g0.PassTTL.D(), AutoAllow: auto}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		g.Run(ctx, time.Hour, func(n int, err error) {
			if err != nil {
				log.Warn("greylist cleanup failed", "err", err)
				return
			}
			log.Info("greylist cleanup", "deleted", n)
		})
	}()
	return g, func() { cancel(); wg.Wait(); s.Close() }, nil
}
