package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/mxedge/mxedge/auth"
	"github.com/mxedge/mxedge/config"
	"github.com/mxedge/mxedge/queue"
	"github.com/mxedge/mxedge/submission"
)

// submissionParts is what the submission listeners of a relay share: the
// authenticator (backend and brute force guard), the sender rules of the
// logins and the rate limits' counters.
type submissionParts struct {
	auth    *auth.Authenticator
	senders auth.SenderMap
	store   *submission.Store
}

// storeFlush is how often the rate limit counters are written to disk.
const storeFlush = 5 * time.Second

// StoreFileName is the submission store in the data directory.
const storeFileName = "submission.db"

func hasSubmission(cfg *config.Config) bool {
	for _, lc := range cfg.Listeners {
		if lc.Kind != config.KindMX {
			return true
		}
	}
	return false
}

// openAuthBackend opens the [auth] backend: the users file (its errors
// file:line) or Dovecot's socket with the login map.
func openAuthBackend(cfg *config.Config, log *slog.Logger) (auth.Backend, auth.SenderMap, error) {
	switch cfg.Auth.Backend {
	case "dovecot":
		d := &auth.Dovecot{Socket: cfg.Auth.DovecotSocket}
		if cfg.Auth.LoginMap != "" {
			lm, err := auth.OpenLoginMap(cfg.Auth.LoginMap, log)
			if err != nil {
				return nil, nil, err
			}
			d.Logins = lm
		}
		return d, d, nil
	default:
		f, err := auth.OpenFile(cfg.Auth.UsersFile, log)
		if err != nil {
			return nil, nil, err
		}
		return f, f, nil
	}
}

// openSubmission opens what the submission listeners share, and starts
// writing the counters back until ctx ends. close closes the store.
func openSubmission(ctx context.Context, cfg *config.Config, log *slog.Logger) (*submissionParts, func(), error) {
	backend, senders, err := openAuthBackend(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	store, err := submission.OpenStore(filepath.Join(cfg.DataDir, storeFileName), nil)
	if err != nil {
		return nil, nil, err
	}
	a := cfg.Auth
	delay := a.FailureDelay.D()
	if delay == 0 {
		delay = -1 // GuardOptions: negative is no delay, 0 the default
	}
	guard := auth.NewGuard(auth.GuardOptions{
		Window: a.FailureWindow.D(), SlowAfter: a.FailuresSlow, LockAfter: a.FailuresLockout,
		Lockout: a.Lockout.D(), Delay: delay,
	})
	guard.LoadTrusted(store.Trusted())
	store.SaveTrusted(guard.Trusted)
	sctx, stop := context.WithCancel(ctx)
	go store.Run(sctx, storeFlush)
	p := &submissionParts{
		auth:    auth.New(auth.Options{Backend: backend, Guard: guard, Logger: log}),
		senders: senders,
		store:   store,
	}
	return p, func() { stop(); store.Close() }, nil
}

// submissionChecks maps the configuration onto the submission chain's
// checks.
func submissionChecks(cfg *config.Config, p *submissionParts, log *slog.Logger) submission.Checks {
	s := cfg.Submission
	return submission.Checks{
		Senders: p.senders,
		Limits: submission.Limits{MessagesPerHour: s.MessagesPerHour, MessagesPerDay: s.MessagesPerDay,
			RecipientsPerHour: s.RecipientsPerHour, RecipientsPerDay: s.RecipientsPerDay},
		HoldOverLimit: s.OverLimit == "hold",
		Store:         p.store,
		Hostname:      cfg.Hostname,
		Logger:        log,
	}
}

// loadDKIMKeys reads the [[dkim_sign]] keys; every error is reported.
func loadDKIMKeys(cfg *config.Config) ([]*submission.Key, error) {
	var keys []*submission.Key
	var errs []error
	for i, k := range cfg.DKIMSign {
		key, err := submission.LoadKey(k.Domain, k.Selector, k.KeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("dkim_sign[%d]: %w", i, err))
			continue
		}
		keys = append(keys, key)
	}
	return keys, errors.Join(errs...)
}

// liveMilters is the queue's content filter: the submission kinds'
// [[milter]] entries of the configuration in force (postQueueMilters). A
// reload replaces them for the messages filtered from then on (before
// their first attempt); one being filtered finishes with the old. No
// entries: every message passes as it is.
type liveMilters struct {
	ms atomic.Pointer[submission.Milters]
}

func (l *liveMilters) set(ms submission.Milters) { l.ms.Store(&ms) }

// Filter implements queue.ContentFilter.
func (l *liveMilters) Filter(ctx context.Context, m *queue.Message) (queue.Verdict, error) {
	return l.ms.Load().Filter(ctx, m)
}

// postQueueMilters are the [[milter]] entries for the submission kinds,
// asked by the queue before the first delivery attempt.
func postQueueMilters(cfg *config.Config, log *slog.Logger) submission.Milters {
	var ms submission.Milters
	for _, m := range cfg.Milters {
		if !slices.Contains(m.Kinds, config.KindSubmission) && !slices.Contains(m.Kinds, config.KindSubmissions) {
			continue
		}
		network, address, err := submission.ParseMilterAddress(m.Address)
		if err != nil {
			continue // Validate refused it already
		}
		ms = append(ms, &submission.Milter{Name: m.Name, Network: network, Address: address,
			ConnectTimeout: m.ConnectTimeout.D(), CommandTimeout: m.CommandTimeout.D(), ContentTimeout: m.ContentTimeout.D(),
			DefaultAction: m.DefaultAction, Hostname: cfg.Hostname, Logger: log})
	}
	return ms
}
