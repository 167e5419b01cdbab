package submission

import (
	"errors"
	"log/slog"
	"time"

	"github.com/mxedge/mxedge/auth"
	"github.com/mxedge/mxedge/policy"
	"github.com/mxedge/mxedge/smtpd"
)

// Profile turns the options of a listener into those of the submission
// kind: AUTH through a, required before MAIL; for KindSubmissions TLS from
// the first byte. o.TLS must be set: submission without TLS would send
// passwords in the clear.
func Profile(o *smtpd.Options, kind policy.Kind, a *auth.Authenticator) error {
	if o.TLS == nil {
		return errors.New("a submission listener needs tls_cert and tls_key (AUTH is offered only over TLS)")
	}
	o.Kind = kind
	o.Auth = a
	o.ImplicitTLS = kind == policy.KindSubmissions
	return nil
}

// Checks is what the submission chain is built from.
type Checks struct {
	Senders auth.SenderMap // sender rules of the logins
	Limits  Limits
	// HoldOverLimit: hold the mail of a user over a limit instead of
	// deferring it.
	HoldOverLimit bool
	Store         *Store // the rate limits' counters
	Hostname      string // Message-IDs
	Now           func() time.Time
	Logger        *slog.Logger
}

// Chain returns the policy chain of a submission listener, in order:
//
//	mail  sender (authorization), ratelimit (messages)
//	rcpt  ratelimit (recipients)
//	data  header (8-bit, From: owned, Date and Message-ID added), ratelimit (counting)
//
// No relay-domain check and no recipient verification: an authenticated
// user may send to any domain; the MX listener's chain keeps those.
func Chain(c Checks) *policy.Chain {
	ch := &policy.Chain{}
	ch.Add(Sender{Map: c.Senders})
	ch.Add(Header{Map: c.Senders, Hostname: c.Hostname, Now: c.Now})
	ch.Add(RateLimit{Limits: c.Limits, Store: c.Store, Logger: c.Logger, Hold: c.HoldOverLimit})
	return ch
}
