package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxedge/mxedge/policy"
)

// gate stands between the listening socket and go-smtp, like Postfix's
// postscreen in front of smtpd: every accepted connection passes the
// session limit and the connect stage of the policy chain before go-smtp
// sees it and sends its banner. A connection over the limit, or refused at
// connect with Disconnect, gets its reply instead of the banner and is
// closed; the rest are handed to go-smtp's Accept.
//
// Connect checks run in a goroutine per connection, so a slow one (DNS)
// holds up only its own client. The accept loop itself never blocks on a
// client: a refusal is one write with a short deadline.
type gate struct {
	net.Listener
	srv      *Server
	ready    chan net.Conn
	done     chan struct{} // closed when the accept loop ends
	err      error         // why it ended; read after done
	sessions atomic.Int64  // connections accepted and not yet closed
}

// refuseWriteTimeout bounds the one write of a refusal before the banner.
const refuseWriteTimeout = time.Second

func newGate(s *Server, ln net.Listener) *gate {
	g := &gate{Listener: ln, srv: s, ready: make(chan net.Conn), done: make(chan struct{})}
	go g.loop()
	return g
}

// Accept implements net.Listener for go-smtp: the next connection that
// passed the gate.
func (g *gate) Accept() (net.Conn, error) {
	select {
	case c := <-g.ready:
		return c, nil
	case <-g.done:
		return nil, g.err
	}
}

// loop accepts connections until the listener is closed. Temporary
// accept errors (EMFILE) back off and retry, as net/http does.
func (g *gate) loop() {
	defer close(g.done)
	var backoff time.Duration
	for {
		nc, err := g.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				g.srv.log.Warn("accept failed, retrying", "err", err, "in", backoff.String())
				time.Sleep(backoff)
				continue
			}
			g.err = err
			return
		}
		backoff = 0
		if n := g.sessions.Add(1); n > int64(g.srv.o.MaxSessions) {
			g.sessions.Add(-1)
			if g.srv.o.ImplicitTLS {
				// A plaintext 421 would be noise to a TLS client, and a
				// handshake for a refusal is work a flood should not get.
				g.srv.log.Info("connection refused", "stage", "limit", "client_ip", remoteIP(nc),
					"limit", "sessions", "count", n-1, "reply", "(closed before TLS)")
				_ = nc.Close()
				continue
			}
			g.refuse(nc, replySessionLimit, "limit", "sessions", n-1)
			continue
		}
		sc := g.wrap(nc)
		go g.admit(sc)
	}
}

// isTemporary reports accept errors worth retrying (running out of file
// descriptors or buffers).
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// admit runs the connect stage for sc and hands it to go-smtp, or refuses
// it.
func (g *gate) admit(sc *sessConn) {
	var c net.Conn = sc
	if g.srv.o.ImplicitTLS {
		// go-smtp runs the handshake (within its timeouts) before the
		// banner, as for a tls.Listener.
		c = tls.Server(sc, g.srv.o.TLS)
	}
	if g.srv.chain.HasConnect() {
		ctx, cancel := context.WithTimeout(context.Background(), g.srv.o.CheckTimeout)
		d := g.srv.chain.Connect(ctx, sc.pc)
		cancel()
		if d.Refused() {
			g.srv.logRefusal("connection refused", d, sc.pc, "", "")
			sleep(d.Delay)
			if d.Disconnect {
				g.refuse(sc, toSMTP(d.Reply), "", "", 0)
				return
			}
			sc.held = &d
		}
	}
	select {
	case g.ready <- c:
	case <-g.done:
		sc.Close()
	}
}

// refuse writes rep as the only reply and closes nc. stage, what and n,
// when stage is set, are logged (the session limit; refusals by checks
// are logged by admit).
func (g *gate) refuse(nc net.Conn, rep *smtp.SMTPError, stage, what string, n int64) {
	if stage != "" {
		g.srv.log.Info("connection refused", "stage", stage, "client_ip", remoteIP(nc), "limit", what,
			"count", n, "reply", replyLine(rep))
	}
	_ = nc.SetWriteDeadline(time.Now().Add(refuseWriteTimeout))
	_, _ = fmt.Fprintf(nc, "%s\r\n", replyLine(rep))
	_ = nc.Close()
}

// wrap builds the session's connection: the data timeout wrapper and the
// facts of policy.Conn.
func (g *gate) wrap(nc net.Conn) *sessConn {
	o := g.srv.o
	pc := &policy.Conn{Listener: o.Name, Kind: o.Kind, Hostname: o.Hostname}
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		pc.Remote = a.AddrPort()
		pc.IP = pc.Remote.Addr().Unmap()
	}
	if a, ok := nc.LocalAddr().(*net.TCPAddr); ok {
		pc.Local = a.AddrPort()
	}
	return &sessConn{Conn: nc, gate: g, dataTimeout: o.DataTimeout, pc: pc}
}

func remoteIP(nc net.Conn) string {
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return netip.AddrPortFrom(a.AddrPort().Addr().Unmap(), 0).Addr().String()
	}
	return nc.RemoteAddr().String()
}

// sessConn is one accepted connection as go-smtp uses it. During DATA
// every read first pushes the read deadline out by the data block timeout:
// go-smtp sets its ReadTimeout once per command, which would bound the
// whole DATA phase, and a slow but live sender of a large message would be
// cut off. RFC 5321 section 4.5.3.2.6 asks for a timeout per data block (3
// minutes) instead; an idle sender is still cut off after that long.
//
// It also carries the session's policy facts (pc) and a refusal held from
// the connect stage, and releases the session's slot when closed.
type sessConn struct {
	net.Conn
	gate        *gate
	dataTimeout time.Duration
	inData      atomic.Bool

	pc   *policy.Conn
	held *policy.Decision // a connect refusal answered at RCPT; nil: none

	closeOnce sync.Once
}

func (c *sessConn) Read(p []byte) (int, error) {
	if c.inData.Load() {
		if err := c.Conn.SetReadDeadline(time.Now().Add(c.dataTimeout)); err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(p)
}

// Close closes the connection and gives its session slot back, once.
func (c *sessConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() { c.gate.sessions.Add(-1) })
	return err
}

// findSessConn digs our wrapper out of what go-smtp reports as the
// connection (a *tls.Conn after STARTTLS wraps it).
func findSessConn(c net.Conn) *sessConn {
	for c != nil {
		switch v := c.(type) {
		case *sessConn:
			return v
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// sleep waits d (a check's tarpit delay).
func sleep(d time.Duration) {
	if d > 0 {
		time.Sleep(d)
	}
}
