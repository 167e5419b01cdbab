package policy

import (
	"context"
	"strings"
)

// Relay is relay control (Postfix reject_unauth_destination), the first
// RCPT check of an MX listener: a recipient is accepted only if its domain
// is a relay domain and its local part carries no sender-specified routing
// ("user%other@relay", "other!user@relay", "user@other@relay" from a quoted
// local part), which a backend honouring the %-hack or a UUCP path would
// relay on. An address literal is never a relay domain.
type Relay struct {
	// Domains are the relay domains, in domainname's normal form.
	Domains map[string]bool
}

// NewRelay returns relay control for domains (normal form).
func NewRelay(domains []string) *Relay {
	r := &Relay{Domains: make(map[string]bool, len(domains))}
	for _, d := range domains {
		r.Domains[d] = true
	}
	return r
}

// Name implements Check.
func (*Relay) Name() string { return "relay" }

// CheckRcpt implements RcptCheck.
func (rc *Relay) CheckRcpt(_ context.Context, _ *Conn, _ *Txn, r Rcpt) Result {
	if strings.ContainsAny(r.Local, "@%!") || !rc.Domains[r.Domain] {
		return Result{Reply: replyRelayDenied(r.Raw)}
	}
	return Result{}
}
