package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/mxedge/mxedge/config"
	"github.com/mxedge/mxedge/greylist"
	"github.com/mxedge/mxedge/policy"
)

// greylister is the relay's greylisting ([greylist]): the store,
// <data_dir>/greylist.db, and the check of the configuration in force.
// The store is opened by the first configuration that turns greylisting
// on (at start or at a reload) and stays open until close, also when a
// reload turns it off (sessions in flight may still ask it); its entries
// are cleaned up hourly with the settings in force. A reload replaces
// the settings (delay, retry window, pass TTL, auto-allowlist) for the
// next RCPT; the entries stay.
type greylister struct {
	dir string // data_dir
	log *slog.Logger

	store *greylist.Store                   // nil until greylisting is first on
	cur   atomic.Pointer[greylist.Greylist] // the check in force; nil: off
	stop  func()                            // ends the hourly cleanup
}

// check returns the check of cfg's [greylist], nil when greylisting is
// off, opening the store if needed; use puts it in force. Not safe for
// concurrent use (build, then reloads one at a time).
func (g *greylister) check(cfg *config.Config) (*greylist.Greylist, error) {
	gc := cfg.Greylist
	if !gc.Enabled {
		return nil, nil
	}
	if g.store == nil {
		s, err := greylist.Open(filepath.Join(g.dir, "greylist.db"))
		if err != nil {
			return nil, err
		}
		g.store = s
		g.stop = every(time.Hour, g.cleanup)
	}
	auto := gc.AutoAllowlist
	if auto == 0 {
		auto = -1 // never
	}
	return &greylist.Greylist{Store: g.store, Delay: gc.Delay.D(), Window: gc.RetryWindow.D(), PassTTL: gc.PassTTL.D(), AutoAllow: auto}, nil
}

// use makes check (nil: off) the one the cleanup goes by.
func (g *greylister) use(check *greylist.Greylist) { g.cur.Store(check) }

// asCheck is check as a chain's policy.Check, nil (no check) for a nil
// check.
func asCheck(check *greylist.Greylist) policy.Check {
	if check == nil {
		return nil
	}
	return check
}

// cleanup deletes the expired entries under the settings in force (none
// while greylisting is off).
func (g *greylister) cleanup(context.Context) {
	check := g.cur.Load()
	if check == nil {
		return
	}
	n, err := check.Cleanup(time.Now())
	if err != nil {
		g.log.Warn("greylist cleanup failed", "err", err)
		return
	}
	g.log.Info("greylist cleanup", "deleted", n)
}

// close stops the cleanup and closes the store, if it was opened.
func (g *greylister) close() {
	if g.store == nil {
		return
	}
	g.stop()
	g.store.Close()
}
