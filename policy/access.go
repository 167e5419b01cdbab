package policy

import (
	"context"
	"net/netip"
)

// Allowlist is the trusted clients check, first at connect (Postfix
// permit_mynetworks, postscreen_access_list): a client in the list is
// accepted (OK) before the banner, so the rest of the connect stage
// (limits, client access, iprev, DNSBL: no DNS queries are sent for it)
// does not run, and the listener treats it as Trusted: no pregreet test,
// no per-client limits, no HELO and sender checks. Relay control and
// recipient verification still apply: trust never makes the MX listener
// an open relay.
type Allowlist struct {
	List *CIDRList
}

// Name implements Check.
func (*Allowlist) Name() string { return "allowlist" }

// CheckConnect implements ConnectCheck.
func (a *Allowlist) CheckConnect(_ context.Context, c *Conn) Result {
	if a.List.Contains(c.IP) {
		return Result{OK: true, Reason: "allowlist"}
	}
	return Result{}
}

// ClientAccess is the static client access file (Postfix
// check_client_access): its entries for the client's address decide
// before the banner; those for host names need the client's reverse name
// and decide at the first RCPT (Later). OK ends the connect stage (before
// the banner it also makes the client Trusted); REJECT and DEFER are held
// and answered at RCPT, as Postfix's smtpd_delay_reject does.
type ClientAccess struct {
	Map *AccessMap
}

// Name implements Check.
func (*ClientAccess) Name() string { return "access" }

// CheckConnect implements ConnectCheck.
func (a *ClientAccess) CheckConnect(_ context.Context, c *Conn) Result {
	if e, ok := a.Map.MatchIP(c.IP); ok {
		return clientAccessResult(e, c.IP)
	}
	if !a.Map.HasNames() {
		return Result{}
	}
	return Result{Later: func(context.Context) Result {
		if c.Reverse.Status != ReversePass {
			return Result{} // Postfix: the name is "unknown" unless confirmed
		}
		if e, ok := a.Map.MatchDomain(c.Reverse.Name); ok {
			return clientAccessResult(e, c.IP)
		}
		return Result{}
	}}
}

func clientAccessResult(e AccessEntry, ip netip.Addr) Result {
	reason := "client access line " + itoa(e.Line) + ": " + e.Key
	switch e.Action {
	case AccessOK:
		return Result{OK: true, Reason: reason}
	case AccessDefer:
		return Result{Reply: replyClientAccess(450, e.Text, ip), Reason: reason}
	}
	return Result{Reply: replyClientAccess(554, e.Text, ip), Reason: reason}
}

// SenderAccess is the static sender access file (Postfix
// check_sender_access), at MAIL FROM: OK skips the rest of the MAIL
// checks (not the RCPT ones), REJECT and DEFER refuse the sender.
type SenderAccess struct {
	Map *AccessMap
}

// Name implements Check.
func (*SenderAccess) Name() string { return "access" }

// CheckMail implements MailCheck.
func (a *SenderAccess) CheckMail(_ context.Context, _ *Conn, t *Txn) Result {
	e, ok := a.Map.MatchSender(t.From)
	if !ok {
		return Result{}
	}
	reason := "sender access line " + itoa(e.Line) + ": " + e.Key
	switch e.Action {
	case AccessOK:
		return Result{OK: true, Reason: reason}
	case AccessDefer:
		return Result{Reply: replySenderAccess(450, e.Text, t.From), Reason: reason}
	}
	return Result{Reply: replySenderAccess(554, e.Text, t.From), Reason: reason}
}
