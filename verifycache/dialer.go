package verifycache

import (
	"context"
	"io"

	"github.com/emersion/go-smtp"
)

// Dialer is the relay's one outbound SMTP client layer as probes use it:
// package delivery's (adapted in cmd/mxedge), so that a probe reaches the
// backend exactly as a delivery would: the same next hops in the same
// order, source address, TLS policy, dead-hop state and connection cache.
//
// Contract: Hops returns the domain's next hops, in the order delivery
// tries them, at least one on success. An error means the route cannot be
// determined now (no route, a DNS failure, a null MX): the probe counts it
// as a temporary failure, so the recipient is deferred, never refused.
// Hops and Hop.Dial are called concurrently.
type Dialer interface {
	Hops(ctx context.Context, domain string) ([]Hop, error)
}

// Hop is one next hop of a domain.
type Hop interface {
	// String names the hop (the route as configured, or "ip:port"); probe
	// limits are per hop.
	String() string
	// Dial returns a greeted connection (EHLO done, TLS per policy):
	// a cached one unless fresh, a new one whose dialogue debug sees when
	// it is set. Its error is a *DialError when the hop could not be
	// used.
	Dial(ctx context.Context, fresh bool, debug io.Writer) (Conn, error)
}

// Conn is a greeted connection, owned by the probe until Release (back to
// the cache; the next user's RSET ends the probe's transaction), Close
// (QUIT) or Abort (closed at once).
type Conn interface {
	Client() *smtp.Client
	Reused() bool
	Release()
	Close()
	Abort()
}

// DialError is why Hop.Dial got no connection.
type DialError struct {
	// Stage: "dead" (marked dead, not tried), "policy" (TLS policy),
	// "connect" or "greeting" (greeting or EHLO failed).
	Stage string
	// Refused: the greeting or EHLO was answered with a 5xx.
	Refused bool
	Text    string
}

func (e *DialError) Error() string { return e.Text }
