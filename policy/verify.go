package policy

import (
	"context"

	"github.com/mxedge/mxedge/verifycache"
)

// Verifier decides whether a recipient of a relay domain exists;
// *verifycache.Verifier implements it. Verify gets the recipient in wire
// form and the client's IP address, and returns within its own bound
// (verify.inline_wait) or when ctx ends. It never answers Reject for an
// internal error: that is a Defer with Err set.
type Verifier interface {
	Verify(ctx context.Context, clientIP, addr string) verifycache.Verdict
}

// Verify is recipient verification (Postfix reject_unverified_recipient),
// the RCPT check after Relay on an MX listener (shared/PRINCIPLES.md: the
// backend is asked only for recipients relay control let through). Never
// for senders.
type Verify struct {
	V Verifier
}

// Name implements Check.
func (*Verify) Name() string { return "verify" }

// UTF8Hops is an optional addition to a Verifier that knows, from its
// probes' EHLO, whether a routed domain's next hop supports SMTPUTF8;
// *verifycache.Verifier implements it. It reports false when it does not
// know (no probe yet, an MX destination).
type UTF8Hops interface {
	NextHopLacksSMTPUTF8(domain string) bool
}

// checkUTF8 refuses a recipient accepted by verification whose message
// will need SMTPUTF8 (RFC 6531 section 3.4: SMTPUTF8 given and the
// sender or this recipient not ASCII, which no downgrade can fix) when
// the domain's next hop is known to lack it: 553 5.6.7 now instead of a
// bounce later. A message that only announced SMTPUTF8 is delivered
// without it (delivery), so an ASCII envelope passes here.
func (vc *Verify) checkUTF8(t *Txn, r Rcpt) Result {
	u, ok := vc.V.(UTF8Hops)
	if !ok || t == nil || !t.Mail.UTF8 || isASCII(r.Addr) && isASCII(t.From) {
		return Result{}
	}
	if !u.NextHopLacksSMTPUTF8(r.Domain) {
		return Result{}
	}
	return Result{Reply: replyNextHopNoUTF8(r.Addr), Reason: "next hop of " + r.Domain + " lacks SMTPUTF8"}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// CheckRcpt implements RcptCheck: the verdict becomes the reply (an
// unknown address quotes the next hop's reason) and its delay (dictionary
// attack). A client over dictionary_disconnect gets 450 4.7.1 and
// EndSession: the transaction finishes for the recipients already
// accepted (they must not be lost with the connection), its remaining
// RCPTs are deferred without probes, and the session ends after it.
func (vc *Verify) CheckRcpt(ctx context.Context, c *Conn, t *Txn, r Rcpt) Result {
	v := vc.V.Verify(ctx, c.IP.String(), r.Addr)
	res := Result{Delay: v.Delay, Err: v.Err, Reason: v.Source}
	if v.Reply != "" {
		res.Reason += ": " + v.Reply
	}
	if v.Action == verifycache.Accept || v.Action == verifycache.Defer {
		// The probe (even one that failed: its MAIL needs SMTPUTF8 too)
		// has just learnt the next hop's extensions.
		if u := vc.checkUTF8(t, r); u.Reply != nil {
			return u
		}
	}
	switch v.Action {
	case verifycache.Accept:
		return Result{}
	case verifycache.Reject:
		res.Reply = replyUnknownRcpt(r.Addr, v.Reply)
	case verifycache.Disconnect:
		res.Reply, res.EndSession = replyTooManyUnknown(), true
	default:
		if v.Err == nil {
			res.Reply = replyUnverified(r.Addr)
		}
	}
	return res
}
