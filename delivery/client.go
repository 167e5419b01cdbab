package delivery

import (
	"context"
	"errors"
	"io"

	"github.com/emersion/go-smtp"
)

// The client layer for other stages. Recipient verification
// (package verifycache, adapted in cmd/mxedge) probes a backend over the
// same outbound SMTP client that delivers mail: the same next hops in the
// same order (routes, smarthost, MX walk with failed addresses last), the
// same source address, TLS policy (tls_policy, DANE, MTA-STS), dead-hop
// state and connection cache. A probe reuses an idle delivery connection
// and leaves its connection for the next message. Probes keep their own
// rate limits (verify.probe_concurrency, probe_rate) and are not counted
// in the destinations' delivery concurrency: they are answered inline,
// while a client waits, and must not queue behind a delivery backlog.

// Hop is one next hop of a domain, as Hops returns them.
type Hop struct{ t *target }

// String is the hop as logs name it: the route as configured, or the
// MX address "ip:port".
func (h Hop) String() string { return h.t.hop }

// Hops returns the next hops mail to domain goes to, in the order
// delivery tries them; an error if there are none now (no route
// configured, a DNS failure, a null MX: say why, one line).
func (d *Deliverer) Hops(ctx context.Context, domain string) ([]Hop, error) {
	key, hop, ok := d.route(domain)
	if !ok {
		return nil, errors.New(noRoute(domain))
	}
	targets, f := d.targets(ctx, "", &destination{key: key, domain: domain, hop: hop})
	if f != nil {
		return nil, errors.New(f.text)
	}
	hops := make([]Hop, len(targets))
	for i, t := range targets {
		hops[i] = Hop{t}
	}
	return hops, nil
}

// DialOptions tune Dial.
type DialOptions struct {
	// Fresh asks for a new connection, not a cached one.
	Fresh bool
	// Debug, if set, sees every line of a new connection's dialogue
	// (greeting included); it implies Fresh.
	Debug io.Writer
}

// DialError is why Dial got no connection.
type DialError struct {
	// Stage: "dead" (the hop is marked dead and was not tried), "policy"
	// (the TLS policy forbids or failed the host), "connect" (TCP), or
	// "greeting" (the greeting or EHLO failed).
	Stage string
	// Refused: the greeting or EHLO was answered with a 5xx.
	Refused bool
	// Text says what happened, one line (the next hop's reply, or the
	// network error).
	Text string
}

func (e *DialError) Error() string { return e.Text }

// Dial returns a greeted connection to h (TLS per policy, the source
// address bound): a cached idle one unless o asks for a new one. It
// respects and updates the hop's dead state as deliveries do. The caller
// owns the connection until Release or Close.
func (d *Deliverer) Dial(ctx context.Context, h Hop, o DialOptions) (*Conn, error) {
	t := h.t
	if t.fail != nil {
		return nil, &DialError{Stage: "policy", Text: t.fail.text}
	}
	probe, deadText := d.admit(t.hop)
	if deadText != "" {
		return nil, &DialError{Stage: "dead", Text: deadText}
	}
	if !probe && !o.Fresh && o.Debug == nil {
		if s := d.take(t.plan.cacheKey(t.hop)); s != nil && d.checkCached(s) {
			s.count++
			s.probes++
			return &Conn{d: d, s: s, reused: true}, nil
		}
	}
	tt := *t
	tt.debug = o.Debug
	s, f := d.connect(ctx, &tt, probe)
	if s == nil {
		if f.conn {
			d.noteFailed(t.hop)
		}
		e := &DialError{Stage: "connect", Text: f.text}
		switch {
		case f.policy:
			e.Stage = "policy"
		case f.greeting:
			e.Stage, e.Refused = "greeting", f.refused
		}
		return nil, e
	}
	s.count++
	s.probes++
	return &Conn{d: d, s: s}, nil
}

// Conn is a greeted connection from Dial.
type Conn struct {
	d      *Deliverer
	s      *session
	reused bool
}

// Client is the connection's SMTP client; set its CommandTimeout per
// command as needed.
func (c *Conn) Client() *smtp.Client { return c.s.c }

// Reused reports whether the connection came from the cache (the next
// hop may have closed it meanwhile, despite the RSET check).
func (c *Conn) Reused() bool { return c.reused }

// Relay names the connection for logs: host, address, TLS and policy.
func (c *Conn) Relay() string { return c.s.relay }

// Release gives the connection back for the next message or probe to the
// same hop. A mail transaction may still be open (a probe's MAIL and
// RCPT): the next user's RSET ends it (RFC 5321 section 4.1.1.5), as for
// a delivery whose recipients were all refused.
func (c *Conn) Release() { c.d.park(c.s) }

// Close ends the connection with QUIT (in the background).
func (c *Conn) Close() { c.d.retire(c.s) }

// Abort closes the connection at once, without QUIT (a context ended
// under a command).
func (c *Conn) Abort() { c.s.c.Close() }
