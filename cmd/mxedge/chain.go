package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/mxedge/mxedge/config"
	"github.com/mxedge/mxedge/policy"
	"github.com/mxedge/mxedge/smtpd"
	"github.com/mxedge/mxedge/submission"
)

// chainFor builds the policy chain of listener lc from its kind (profile):
// the ordered checks every SMTP stage runs (package policy; docs/flow.md
// shows the chain per kind). shared/PRINCIPLES.md gives the order: trusted
// clients first, then the cheap checks, then DNSBL, then recipient
// verification (the backend is spared) and relay control. Relay control
// runs before verification here because verification must never probe a
// domain that is not ours: both are RCPT checks, and the backend is asked
// only for recipients relay control let through.
//
// An MX listener's chain, per stage (a check added once runs at every
// stage it implements, in the order of the Add calls):
//
//	connect  allowlist, limit, access (client), iprev, dnsbl
//	helo     helo
//	mail     limit (message rate), access (sender), sender (domain), spf
//	rcpt     limit (recipient rate), relay, verify
//	data     dkim, dmarc, auth_results, then milter ([[milter]] of kind "mx", in order)
//
// The message authentication checks (spf, dkim, dmarc, auth_results) come
// from msgAuthChecks (cmd/mxedge/msgauth.go).
//
// The files (allowlist, access files) are read here; their errors name
// file and line. p holds what the chains share and keep across reloads.
//
// The submission kinds have their own chain (package submission: sender
// authorization and rate limits at MAIL, recipient limits at RCPT, the
// header fixes at DATA); no relay control and no verification, since an
// authenticated user may send anywhere; none of the MX edge defenses
// either (their clients authenticate), only the session's error limits and
// caps (listenerOptions).
//
// A greylist ([greylist] on) is the MX chain's last RCPT check: after
// relay control and verification.
func chainFor(cfg *config.Config, lc config.Listener, p *chainParts) (*policy.Chain, error) {
	ch := &policy.Chain{}
	switch lc.Kind {
	case config.KindMX:
		if err := addDefenses(ch, cfg, lc, p); err != nil {
			return nil, fmt.Errorf("listener %q: %w", lc.Name, err)
		}
		ch.Add(policy.NewRelay(cfg.RelayDomains))
		if p.ver != nil {
			ch.Add(&policy.Verify{V: p.ver})
		}
		auth, err := msgAuthChecks(cfg, p.dns)
		if err != nil {
			return nil, fmt.Errorf("listener %q: %w", lc.Name, err)
		}
		for _, c := range auth {
			ch.Add(c)
		}
		preQueueMilters(ch, cfg, p.log)
		if p.grey != nil {
			ch.Add(p.grey)
		}
	case config.KindSubmission, config.KindSubmissions:
		if p.sub == nil {
			return nil, fmt.Errorf("listener %q: kind %q without [auth]", lc.Name, lc.Kind)
		}
		ch = submission.Chain(submissionChecks(cfg, p.sub, p.log))
	default:
		return nil, fmt.Errorf("listener %q: unknown kind %q", lc.Name, lc.Kind)
	}
	return ch, nil
}

// chainParts is what the policy chains of a relay share, and keep across
// reloads: the verifier (nil: none), the resolver, the submission parts,
// the greylist check (nil: off) and the client limit counters of each MX
// listener.
type chainParts struct {
	ver  policy.Verifier
	dns  policy.DNS
	sub  *submissionParts
	grey policy.Check
	// limits are the client limits by listener name: a reload hands a
	// listener's counters to its new chain (limitsFor). nil: new ones for
	// every chain (checking the files only).
	limits map[string]*policy.Limits
	log    *slog.Logger
}

// limitsFor returns the client limits of lc: its counters of the chain
// before, if there was one, with lc's limits; nil when every limit of lc
// is off (the counters stay, for a reload that turns them on again).
func (p *chainParts) limitsFor(lc config.Listener) *policy.Limits {
	l := p.limits[lc.Name]
	if l == nil {
		l = &policy.Limits{}
		if p.limits != nil {
			p.limits[lc.Name] = l
		}
	}
	l.SetLimits(lc.ClientSessions, lc.ClientConnectionRate, lc.ClientMessageRate, lc.ClientRecipientRate)
	if lc.ClientSessions > 0 || lc.ClientConnectionRate > 0 || lc.ClientMessageRate > 0 || lc.ClientRecipientRate > 0 {
		return l
	}
	return nil
}

// addDefenses adds the edge defenses of lc, in order, leaving out those
// that are off.
func addDefenses(ch *policy.Chain, cfg *config.Config, lc config.Listener, p *chainParts) error {
	dns := p.dns
	if lc.Allowlist != "" {
		l, err := policy.LoadCIDRList(lc.Allowlist)
		if err != nil {
			return fmt.Errorf("allowlist: %w", err)
		}
		ch.Add(&policy.Allowlist{List: l})
	}
	if l := p.limitsFor(lc); l != nil {
		ch.Add(l)
	}
	if lc.ClientAccess != "" {
		m, err := policy.LoadAccessMap(lc.ClientAccess, false)
		if err != nil {
			return fmt.Errorf("client_access: %w", err)
		}
		ch.Add(&policy.ClientAccess{Map: m})
	}
	noPTR, mismatch := action(lc.ClientNoPTR), action(lc.ClientPTRMismatch)
	if noPTR != policy.ActionOff || mismatch != policy.ActionOff {
		ch.Add(&policy.Iprev{NoPTR: noPTR, Mismatch: mismatch})
	}
	if len(lc.DNSBLSites) > 0 {
		b := &policy.DNSBL{Threshold: lc.DNSBLThreshold, Timeout: lc.LookupTimeout.D(), DNS: dns}
		for _, spec := range lc.DNSBLSites {
			s, err := policy.ParseDNSBLSite(spec)
			if err != nil {
				return err // Validate has refused it already
			}
			b.Sites = append(b.Sites, s)
		}
		ch.Add(b)
	}
	h := &policy.Helo{Invalid: action(lc.HeloInvalid), IsUs: action(lc.HeloIsUs), Unknown: action(lc.HeloUnknown),
		Hostname: cfg.Hostname, Domains: map[string]bool{}, DNS: dns, Timeout: lc.LookupTimeout.D()}
	for _, d := range cfg.RelayDomains {
		h.Domains[d] = true
	}
	if h.Invalid != policy.ActionOff || h.IsUs != policy.ActionOff || h.Unknown != policy.ActionOff {
		ch.Add(h)
	}
	if lc.SenderAccess != "" {
		m, err := policy.LoadAccessMap(lc.SenderAccess, true)
		if err != nil {
			return fmt.Errorf("sender_access: %w", err)
		}
		ch.Add(&policy.SenderAccess{Map: m})
	}
	if a := action(lc.SenderUnknownDomain); a != policy.ActionOff {
		ch.Add(&policy.SenderDomain{Action: a, DNS: dns, Timeout: lc.LookupTimeout.D()})
	}
	return nil
}

// action is a validated action key.
func action(s string) policy.Action {
	a, _ := policy.ParseAction(s)
	return a
}

// checkListenerFiles reads the list files of every listener (allowlist,
// access files) and returns the first error, with file:line: they belong
// to the configuration and are reported like its errors, before anything
// starts.
func checkListenerFiles(cfg *config.Config) error {
	for _, lc := range cfg.Listeners {
		if lc.Kind != config.KindMX {
			continue
		}
		if err := addDefenses(&policy.Chain{}, cfg, lc, &chainParts{}); err != nil {
			return fmt.Errorf("listener %q: %w", lc.Name, err)
		}
	}
	if _, err := msgAuthChecks(cfg, nil); err != nil {
		return err
	}
	return nil
}

// listenerOptions maps a [[listener]] and the global limits and timeouts
// onto the listener's options; dns (nil: none) looks up the clients'
// reverse DNS.
func listenerOptions(cfg *config.Config, lc config.Listener, dns policy.DNS) smtpd.Options {
	o := smtpd.Options{
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
		PregreetWait:         lc.PregreetWait.D(),
		PregreetTTL:          lc.PregreetTTL.D(),
		LookupTimeout:        lc.LookupTimeout.D(),
		SoftErrors:           lc.SoftErrorLimit,
		HardErrors:           lc.HardErrorLimit,
		ErrorSleep:           lc.ErrorSleep.D(),
		JunkCommands:         lc.JunkCommandLimit,
		SessionTime:          lc.SessionTimeLimit.D(),
		SessionMessages:      lc.SessionMessageLimit,
		CaseSensitive:        map[string]bool{},
		HideClientIP:         lc.HideClientIP,
	}
	if o.ErrorSleep == 0 {
		o.ErrorSleep = -1 // "0s": no wait (smtpd's zero is its default)
	}
	if len(cfg.RelayDomains) > 0 {
		o.PostmasterDomain = cfg.RelayDomains[0]
	}
	for _, d := range cfg.CaseSensitiveDomains {
		o.CaseSensitive[d] = true
	}
	if dns != nil && needsReverse(lc) {
		o.ReverseLookup = func(ctx context.Context, ip netip.Addr) policy.Reverse {
			return policy.LookupReverse(ctx, dns, ip)
		}
	}
	return o
}

// needsReverse reports whether a check of lc uses the client's reverse
// DNS: iprev, or a client access file (its name entries). Without one the
// listener does not look it up and Received names the client "unknown".
func needsReverse(lc config.Listener) bool {
	return lc.Kind == config.KindMX && (lc.ClientNoPTR != "off" || lc.ClientPTRMismatch != "off" || lc.ClientAccess != "")
}
