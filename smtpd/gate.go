package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxedge/mxedge/policy"
)

// gate stands between the listening socket and go-smtp, like Postfix's
// postscreen in front of smtpd: every accepted connection passes it before
// go-smtp sees it and sends its banner. In order:
//
//  1. the listener's session limit (max_sessions), in the accept loop, in
//     constant memory: beyond it a client gets 421 at once;
//  2. the connect stage of the policy chain, which returns at once: the
//     allowlist makes the client Trusted, the per-client limits refuse
//     (421 instead of the banner), and the checks that need DNS (iprev,
//     DNSBL, client access by name) start their lookups and decide later
//     (policy.Result.Later), at the first RCPT;
//  3. the client's reverse DNS lookup starts (PTR and its forward
//     confirmation), for the Received header and the iprev check;
//  4. the pregreet test (pregreet.go), unless the client is Trusted or
//     passed it recently: the first banner line "220-<hostname> ESMTP",
//     then a wait during which a client must not speak; the lookups run
//     meanwhile.
//
// Then go-smtp sends the banner ("220 <hostname> ESMTP Service Ready",
// the last line after a pregreet test's first) and the session begins.
// Each connection is admitted in its own goroutine, so a slow client holds
// up only itself; the accept loop never blocks on a client (a refusal is
// one short write with a deadline).
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
	return &gate{Listener: ln, srv: s, ready: make(chan net.Conn), done: make(chan struct{})}
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
// accept errors (EMFILE: out of file descriptors) back off and retry, as
// net/http does, instead of ending the listener.
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
		if g.srv.draining.Load() {
			g.srv.gateRefused("drain")
			g.refuse(nc, replyDraining)
			continue
		}
		if n := g.sessions.Add(1); n > int64(g.srv.o.MaxSessions) {
			g.sessions.Add(-1)
			g.srv.gateRefused("limit")
			ip := remoteIP(nc)
			shown := replyLine(replySessionLimit)
			if g.srv.o.ImplicitTLS {
				// A plaintext 421 would be noise to a TLS client, and a
				// handshake for a refusal is work a flood should not get.
				shown = "(closed before TLS)"
			}
			g.srv.refusals.log(ip, true, func(suppressed int) {
				g.srv.log.Info("connection refused", withSuppressed([]any{"stage", "limit", "client_ip", ip.String(),
					"limit", "max_sessions", "count", n - 1, "action", "disconnect", "reply", shown}, suppressed)...)
			})
			g.refuse(nc, replySessionLimit)
			continue
		}
		g.srv.counts.sessions.Add(1)
		g.srv.counts.open.Add(1)
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

// admit runs the connect stage and the pregreet test for sc and hands it
// to go-smtp, or refuses it.
func (g *gate) admit(sc *sessConn) {
	s := g.srv
	pc := sc.pc
	d := sc.chain.Connect(sc.ctx, pc)
	s.logNotes(d.Logged, pc, "", "")
	switch {
	case d.Refused() && d.Disconnect:
		s.logRefusal("connection refused", d, pc, "", "")
		sleep(d.Delay)
		g.refuse(sc, toSMTP(d.Reply))
		return
	case d.Refused():
		// Held: answered at every RCPT, and logged there with the
		// client's HELO, sender and recipient.
		sc.held = &d
	case d.OK:
		pc.Trusted = true
	}
	sc.pending = d.Pending
	sc.startReverse(s.o.ReverseLookup, s.o.LookupTimeout)
	var c net.Conn = sc
	if s.o.ImplicitTLS {
		// go-smtp runs the handshake (within its timeouts) before the
		// banner, as for a tls.Listener; no pregreet test before TLS.
		c = tls.Server(sc, s.o.TLS)
	} else if !pc.Trusted && !s.pregreet.test(sc) {
		return
	}
	select {
	case g.ready <- c:
	case <-g.done:
		sc.Close()
	}
}

// refuse writes rep as the only reply and closes nc; on an implicit-TLS
// listener it only closes (no plaintext to a TLS client).
func (g *gate) refuse(nc net.Conn, rep *smtp.SMTPError) {
	if g.srv.o.ImplicitTLS {
		_ = nc.Close()
		return
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
	sc := &sessConn{Conn: nc, gate: g, dataTimeout: o.DataTimeout, pc: pc, start: o.Now(), chain: g.srv.chain.Load()}
	if o.SessionTime > 0 {
		sc.end = time.Now().Add(o.SessionTime)
	}
	sc.ctx, sc.cancel = context.WithCancel(context.Background())
	return sc
}

func remoteIP(nc net.Conn) netip.Addr {
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// sleep waits d (a check's tarpit delay).
func sleep(d time.Duration) {
	if d > 0 {
		time.Sleep(d)
	}
}
