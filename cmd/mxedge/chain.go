package main

import (
	"fmt"
	"log/slog"

	"github.com/mxedge/mxedge/config"
	"github.com/mxedge/mxedge/policy"
	"github.com/mxedge/mxedge/smtpd"
	"github.com/mxedge/mxedge/submission"
)

// chainFor builds the policy chain of listener lc from its kind (profile):
// the ordered checks every SMTP stage runs (package policy; docs/flow.md
// shows the chain per kind). shared/PRINCIPLES.md gives the order: trusted
// clients first, then cheap checks, then recipient verification (the
// backend is spared), then relay control. Relay control runs before
// verification here because verification must never probe a domain that
// is not ours: both are RCPT checks, and the backend is asked only for
// recipients relay control let through.
//
// Where the checks of the next issues go, per stage:
//
//	connect  limits, pregreet, iprev, DNSBL
//	helo     HELO syntax, HELO claiming to be us
//	mail     SPF, sender access, sender domain
//	rcpt     relay, verify, greylisting
//	data     DKIM, DMARC, milter
//
// The submission kinds have their own chain (package submission: sender
// authorization and rate limits at MAIL, recipient limits at RCPT, the
// header fixes at DATA); no relay control and no verification, since an
// authenticated user may send anywhere.
func chainFor(cfg *config.Config, lc config.Listener, ver policy.Verifier, sub *submissionParts, log *slog.Logger) (*policy.Chain, error) {
	ch := &policy.Chain{}
	switch lc.Kind {
	case config.KindMX:
		ch.Add(policy.NewRelay(cfg.RelayDomains))
		if ver != nil {
			ch.Add(&policy.Verify{V: ver})
		}
	case config.KindSubmission, config.KindSubmissions:
		if sub == nil {
			return nil, fmt.Errorf("listener %q: kind %q without [auth]", lc.Name, lc.Kind)
		}
		ch = submission.Chain(submissionChecks(cfg, sub, log))
	default:
		return nil, fmt.Errorf("listener %q: unknown kind %q", lc.Name, lc.Kind)
	}
	return ch, nil
}

// listenerOptions maps a [[listener]] and the global limits and timeouts
// onto the listener's options.
func listenerOptions(cfg *config.Config, lc config.Listener) smtpd.Options {
	return smtpd.Options{
		Name:                 lc.Name,
		Kind:                 policy.Kind(lc.Kind),
		Address:              lc.Address,
		Hostname:             cfg.Hostname,
		MessageSize:          int64(cfg.Limits.MessageSize),
		Recipients:           cfg.Limits.Recipients,
		MaxSessions:          lc.MaxSessions,
		CommandTimeout:       cfg.Timeouts.Command.D(),
		DataTimeout:          cfg.Timeouts.DataBlock.D(),
		NormalizeLineEndings: lc.BareLineEndings == "normalize",
		HideClientIP:         lc.HideClientIP,
	}
}
