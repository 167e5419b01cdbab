package main

import (
	"fmt"

	"github.com/mxedge/mxedge/config"
	"github.com/mxedge/mxedge/policy"
	"github.com/mxedge/mxedge/policy/msgauth"
)

// msgAuthChecks are the message authentication checks of an MX listener
// (package policy/msgauth), from [spf], [dkim_verify], [dmarc] and
// [auth_results], in the order the chain needs them: SPF (MAIL), then at
// DATA DKIM, DMARC (reads both) and last Authentication-Results (reports
// all three). Without a resolver (dns nil) only Authentication-Results
// is built. The DMARC exemption file is read here; its errors name
// file:line.
func msgAuthChecks(cfg *config.Config, dns policy.DNS) ([]policy.Check, error) {
	var out []policy.Check
	var exempt map[string]bool
	if cfg.DMARC.Enabled && cfg.DMARC.Exempt != "" {
		m, err := msgauth.LoadExemptions(cfg.DMARC.Exempt)
		if err != nil {
			return nil, fmt.Errorf("dmarc.exempt: %w", err)
		}
		exempt = m
	}
	if dns != nil {
		if s := cfg.SPF; s.Enabled {
			out = append(out, &msgauth.SPF{DNS: dns, Timeout: s.Timeout.D(), Fail: action(s.Fail),
				TempError: action(s.TempError), Helo: s.Helo})
		}
		if d := cfg.DKIMVerify; d.Enabled {
			out = append(out, &msgauth.DKIM{DNS: dns, Timeout: d.Timeout.D(), MaxSignatures: d.MaxSignatures})
		}
		if d := cfg.DMARC; d.Enabled {
			quarantine := policy.ActionLog
			if d.Quarantine == "reject" {
				quarantine = policy.ActionReject
			}
			out = append(out, &msgauth.DMARC{DNS: dns, Timeout: d.Timeout.D(), Reject: action(d.Reject),
				Quarantine: quarantine, Exempt: exempt})
		}
	}
	if a := cfg.AuthResults; a.Enabled {
		id := a.AuthservID
		if id == "" {
			id = cfg.Hostname
		}
		out = append(out, &msgauth.AuthResults{ServID: id})
	}
	return out, nil
}
