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

// CheckRcpt implements RcptCheck: the verdict becomes the reply (an
// unknown address quotes the next hop's reason) and its delay (dictionary
// attack). A client over dictionary_disconnect gets 450 4.7.1 and
// EndSession: the transaction finishes for the recipients already
// accepted (they must not be lost with the connection), its remaining
// RCPTs are deferred without probes, and the session ends after it.
func (vc *Verify) CheckRcpt(ctx context.Context, c *Conn, _ *Txn, r Rcpt) Result {
	v := vc.V.Verify(ctx, c.IP.String(), r.Addr)
	res := Result{Delay: v.Delay, Err: v.Err, Reason: v.Source}
	if v.Reply != "" {
		res.Reason += ": " + v.Reply
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
