package submission

import (
	"context"
	"log/slog"
	"strconv"

	"github.com/mxedge/mxedge/policy"
)

// Limits are the per-user outbound limits; 0 is no limit.
type Limits struct {
	MessagesPerHour, MessagesPerDay     int
	RecipientsPerHour, RecipientsPerDay int
}

// RateLimit is the check of the per-user limits (a compromised account
// must not turn the relay into a spam source): at MAIL a user over its
// message limit, at RCPT one over its recipient limit, gets 450 4.7.1 (the
// client retries later; nothing is refused for good), or with Hold its
// message is accepted and queued on hold. A message is counted at the end
// of DATA, after the other DATA checks accepted it. A user over a limit is
// logged once an hour.
type RateLimit struct {
	Limits Limits
	Store  *Store
	Logger *slog.Logger
	// Hold: a user over a limit is not refused; its messages are accepted
	// and queued on hold for review (an admin releases or deletes them).
	Hold bool
}

type overKey struct{}

func (RateLimit) Name() string { return "ratelimit" }

var (
	replyMsgRate  = &policy.Reply{Code: 450, Enhanced: [3]int{4, 7, 1}, Text: "Message rate limit exceeded, try again later"}
	replyRcptRate = &policy.Reply{Code: 450, Enhanced: [3]int{4, 7, 1}, Text: "Recipient rate limit exceeded, try again later"}
)

func over(n, limit int) bool { return limit > 0 && n > limit }

func (r RateLimit) CheckMail(_ context.Context, c *policy.Conn, t *policy.Txn) policy.Result {
	if c.AuthUser == "" {
		return policy.Result{}
	}
	u := r.Store.Usage(c.AuthUser)
	switch {
	case over(u.HourMessages+1, r.Limits.MessagesPerHour):
		return r.refuse(c, t, replyMsgRate, "messages per hour", u.HourMessages, r.Limits.MessagesPerHour)
	case over(u.DayMessages+1, r.Limits.MessagesPerDay):
		return r.refuse(c, t, replyMsgRate, "messages per day", u.DayMessages, r.Limits.MessagesPerDay)
	}
	return policy.Result{}
}

func (r RateLimit) CheckRcpt(_ context.Context, c *policy.Conn, t *policy.Txn, _ policy.Rcpt) policy.Result {
	if c.AuthUser == "" {
		return policy.Result{}
	}
	u := r.Store.Usage(c.AuthUser)
	n := len(t.Rcpts) + 1
	switch {
	case over(u.HourRcpts+n, r.Limits.RecipientsPerHour):
		return r.refuse(c, t, replyRcptRate, "recipients per hour", u.HourRcpts, r.Limits.RecipientsPerHour)
	case over(u.DayRcpts+n, r.Limits.RecipientsPerDay):
		return r.refuse(c, t, replyRcptRate, "recipients per day", u.DayRcpts, r.Limits.RecipientsPerDay)
	}
	return policy.Result{}
}

func (r RateLimit) CheckData(_ context.Context, c *policy.Conn, t *policy.Txn, _ policy.Message) policy.Result {
	if c.AuthUser != "" {
		r.Store.record(c.AuthUser, len(t.Rcpts))
	}
	if why, ok := t.Value(overKey{}).(string); ok {
		return policy.Result{Hold: true, Reason: "user " + c.AuthUser + " over its limit: " + why}
	}
	return policy.Result{}
}

func (r RateLimit) refuse(c *policy.Conn, t *policy.Txn, rep *policy.Reply, what string, n, limit int) policy.Result {
	if r.Store.markLogged(c.AuthUser) && r.Logger != nil {
		r.Logger.Warn("user over limit", "user", c.AuthUser, "limit", what, "count", n, "max", limit,
			"client_ip", c.IP.String(), "action", map[bool]string{true: "hold", false: "defer"}[r.Hold])
	}
	why := what + " " + strconv.Itoa(n) + "/" + strconv.Itoa(limit)
	if r.Hold {
		t.SetValue(overKey{}, why) // accepted, held at DATA
		return policy.Result{}
	}
	return policy.Result{Reply: rep, Reason: why}
}
