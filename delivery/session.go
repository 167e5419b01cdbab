package delivery

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"time"

	"github.com/emersion/go-smtp"
)

// quitTimeout bounds the QUIT of a connection that is being closed: it
// runs off the delivery path (idle expiry, Close), so it need not wait
// timeouts.reply.
const quitTimeout = 2 * time.Second

// session is one SMTP connection to a next hop, greeted (EHLO done, after
// STARTTLS if any). While it is idle in the cache it is outside any mail
// transaction.
type session struct {
	hop     string // dead-hop state key: the route, or the address
	key     string // connection cache key: hop plus a strict TLS plan
	relay   string // for the log: host, address, TLS and policy
	raw     net.Conn
	nc      net.Conn // raw, or the TLS connection on it
	c       *smtp.Client
	created time.Time
	used    time.Time   // end of the last transaction (set by park)
	count   int         // transactions started on it
	probes  int         // of them, verification probes (Dial): see maxProbesPerConn
	lmtp    bool        // an LMTP session (lmtp.go)
	timer   *time.Timer // idle expiry while cached; guarded by Deliverer.mu
	parks   int         // times cached; guarded by Deliverer.mu
}

// target is one address to try: a route's next hop, the smarthost, or
// one address of an MX host.
type target struct {
	name string // host name ("mx1.example.org"), or the route as configured
	addr string // what to dial: "ip:port", or a route's "host:port"
	hop  string // dead-hop key: the route as configured, else addr
	plan tlsPlan
	// authFile holds SASL PLAIN credentials (smarthost); "" for none.
	authFile string
	// fail: the host must not be used (TLS policy); the walk records it
	// and moves on.
	fail *failure
	// debug, if set, sees the dialogue of a new connection (verification
	// probes' transcripts, client.go).
	debug io.Writer
	// lmtp: the route is an LMTP next hop (lmtp.go), addr on network
	// ("tcp", or "unix" for a socket path).
	lmtp    bool
	network string
}

// relay is the log form of t: "mx1.example.org:25 [127.0.0.2:25]", or
// the route when the address is the route itself.
func (t *target) relay(nc net.Conn) string {
	r := t.hop
	if t.name != t.hop {
		_, port, _ := net.SplitHostPort(t.addr)
		r = net.JoinHostPort(t.name, port)
	}
	if nc != nil {
		if ra := nc.RemoteAddr().String(); ra != r {
			r += " [" + ra + "]"
		}
	}
	return r
}

// failure is why an address (or a whole destination) got no transaction.
type failure struct {
	code      int
	enh, text string
	relay     string
	conn      bool // a connection failure: counts towards dead hops and slow start
	policy    bool // a TLS policy failure
	greeting  bool // the greeting or EHLO failed (after the TCP connect)
	refused   bool // ... with a 5xx
}

// connect opens a session to t: TCP connect, greeting, EHLO, STARTTLS
// per t.plan, AUTH if t.auth. On failure it returns nil and why. A
// connection failure (connect, greeting, EHLO) counts towards the hop's
// dead state (deadhop.go); a probe must call connect. A TLS handshake
// that fails under a plan that does not require TLS is retried once in
// plaintext on a new connection.
func (d *Deliverer) connect(ctx context.Context, t *target, probe bool) (*session, failure) {
	s, f, fallback := d.dialSession(ctx, t, t.plan, probe)
	if fallback {
		d.log.Info("TLS handshake failed, retrying in plaintext (tls policy may)", "relay", t.relay(nil), "reason", f.text)
		p := t.plan
		p.level, p.fallback = levelNone, true
		s, f, _ = d.dialSession(ctx, t, p, false)
	}
	return s, f
}

// dialSession is one connection attempt of connect under plan p.
func (d *Deliverer) dialSession(ctx context.Context, t *target, p tlsPlan, probe bool) (s *session, f failure, fallback bool) {
	nc, err := d.dial(ctx, t.network, t.addr)
	if err != nil {
		d.connFailed(ctx, t.hop, probe)
		return nil, failure{enh: "4.4.1", text: "connect to " + t.relay(nil) + ": " + netReason(err), relay: t.relay(nil), conn: true}, false
	}
	s = &session{hop: t.hop, key: p.cacheKey(t.hop), relay: t.relay(nc), raw: nc, nc: nc, c: d.newClient(nc, t.debug, t.lmtp), created: d.now(), lmtp: t.lmtp}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer func() {
		if !stop() && s != nil { // the context closed the connection
			s.c.Close()
			s, f = nil, failure{enh: "4.4.2", text: "connection closed", relay: s.relay}
		}
	}()
	err = s.c.Hello(d.hostname)
	if err != nil {
		s.c.Close()
		d.connFailed(ctx, t.hop, probe)
		// A refused greeting or EHLO is a property of the host, not of the
		// recipients: defer, and the walk moves on to the next address.
		code, enh, text := describe(err)
		refused := code/100 == 5
		if refused {
			code, enh = 0, "4.4.0"
			text = "greeting/EHLO refused: " + text
		}
		return nil, failure{code: code, enh: enh, text: text, relay: s.relay, conn: true, greeting: true, refused: refused}, false
	}
	d.connOK(t.hop)

	var cs *tls.ConnectionState
	if p.level != levelNone {
		if ok, _ := s.c.Extension("STARTTLS"); ok {
			tc, refused, err := d.startTLS(ctx, nc, p)
			switch {
			case err != nil:
				nc.Close()
				if !p.required() && ctx.Err() == nil {
					return nil, policyFailure(p, "4.7.5", "TLS handshake with %s failed: %s", s.relay, tlsError(err)), true
				}
				return nil, policyFailure(p, "4.7.5", "TLS handshake with %s failed: %s", s.relay, tlsError(err)), false
			case refused != nil && p.required():
				s.c.Close()
				return nil, policyFailure(p, "4.7.4", "%s refused STARTTLS: %s", s.relay, refused.Error()), false
			case refused != nil:
				d.log.Info("STARTTLS refused, continuing in plaintext (tls policy may)", "relay", s.relay, "reply", refused.Error())
			default:
				state := tc.ConnectionState()
				cs = &state
				if err := d.verifyPeer(state, p); err != nil {
					tc.Close()
					return nil, policyFailure(p, "4.7.5", "certificate of %s not accepted: %s", s.relay, tlsError(err)), false
				}
				if p.stsTesting && p.level != levelVerify && p.level != levelDANE {
					// MTA-STS testing (RFC 8461 section 5): report only.
					if err := d.verifyPKIX(state, p.server); err != nil {
						d.log.Warn("MTA-STS testing: certificate would not be accepted", "relay", s.relay,
							"policy_id", p.stsID, "reason", tlsError(err))
					}
				}
				s.nc = tc
				s.c = d.newClient(newGreetedConn(tc), t.debug, t.lmtp)
				if err := s.c.Hello(d.hostname); err != nil {
					s.c.Close()
					code, enh, text := describe(err)
					if code/100 == 5 {
						code, enh = 0, "4.4.0"
					}
					return nil, failure{code: code, enh: enh, text: "EHLO after STARTTLS: " + text, relay: s.relay}, false
				}
			}
		} else if p.required() {
			s.c.Close()
			return nil, policyFailure(p, "4.7.4", "TLS required, but %s does not offer STARTTLS", s.relay), false
		}
	}
	s.relay += " " + p.describe(cs)
	d.tlsOut.add(cs, p.policy)
	if t.authFile != "" {
		cr, err := readCredentials(t.authFile)
		if err != nil {
			d.log.Error("cannot read smarthost credentials", "err", err)
			s.c.Close()
			return nil, failure{enh: "4.3.5", text: "smarthost credentials unreadable (configuration error)", relay: s.relay}, false
		}
		if f, ok := d.authenticate(s, cr); !ok {
			s.c.Close()
			return nil, f, false
		}
	}
	return s, failure{}, false
}

// newClient is a go-smtp client on nc with the configured timeouts.
func (d *Deliverer) newClient(nc net.Conn, debug io.Writer, lmtp bool) *smtp.Client {
	c := smtp.NewClient(nc)
	if lmtp {
		c = smtp.NewClientLMTP(nc) // LHLO, a reply per recipient after "."
	}
	c.DebugWriter = debug
	c.CommandTimeout = d.replyTimeout
	c.SubmissionTimeout = d.dataTimeout
	return c
}

// dial connects to addr, bound to the source address if it is of the
// same family (or addr is a name); network "unix" (an LMTP socket) dials
// the path.
func (d *Deliverer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	dl := d.dialer
	if network == "unix" {
		return dl.DialContext(ctx, "unix", addr)
	}
	if d.source != nil {
		host, _, _ := net.SplitHostPort(addr)
		ip := net.ParseIP(host)
		if ip == nil || (ip.To4() == nil) == (d.source.To4() == nil) {
			dl.LocalAddr = &net.TCPAddr{IP: d.source}
		}
	}
	return dl.DialContext(ctx, "tcp", addr)
}

// reset ends an open mail transaction so that s can be reused (RFC 5321
// section 4.1.1.5): RSET, keeping the greeting and the extensions (no new
// EHLO: servers such as Exim count it with RSET as a non-mail command).
func (s *session) reset() error {
	return s.c.ResetTransaction()
}

// quit says QUIT (RFC 5321 section 4.1.1.10) and closes the connection,
// waiting at most quitTimeout for the reply.
func (s *session) quit() {
	s.c.CommandTimeout = quitTimeout
	if err := s.c.Quit(); err != nil {
		s.c.Close()
	}
}
