package submission

import (
	"context"

	"github.com/mxedge/mxedge/auth"
	"github.com/mxedge/mxedge/policy"
)

// Sender is the MAIL check of sender authorization (Postfix
// reject_sender_login_mismatch with smtpd_sender_login_maps): the envelope
// sender must be one of the login's addresses (auth.Senders), else 553
// 5.7.1. The null sender is allowed (delivery and read receipts are sent
// from <>); the From: header is checked at DATA by Header.
type Sender struct{ Map auth.SenderMap }

func (Sender) Name() string { return "sender" }

var replyNotOwned = &policy.Reply{Code: 553, Enhanced: [3]int{5, 7, 1}, Text: "Sender address not owned by user"}

func (s Sender) CheckMail(_ context.Context, c *policy.Conn, t *policy.Txn) policy.Result {
	if c.AuthUser == "" || t.From == "" {
		return policy.Result{}
	}
	rules, ok := s.Map.Senders(c.AuthUser)
	if !ok || !rules.Owns(t.From) {
		return policy.Result{Reply: replyNotOwned, Reason: "login " + c.AuthUser}
	}
	return policy.Result{}
}
