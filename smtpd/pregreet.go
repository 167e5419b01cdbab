package smtpd

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxedge/mxedge/policy"
)

// pregreet is Postfix postscreen's pregreet test, a stage of the gate in
// front of go-smtp: the gate sends the first line of a multi-line banner,
// "220-<hostname> ESMTP", and waits Options.PregreetWait; a client that
// speaks before the banner's last line is a spambot that does not wait
// for the server (RFC 5321 section 3.1: the client waits for the 220) and
// gets "554 5.5.1 Protocol error" and the connection is closed. go-smtp
// then sends the banner's last line, "220 <hostname> ESMTP Service Ready".
//
// A client that passed is remembered for Options.PregreetTTL (by
// policy.ClientKey: an IPv6 client by its /64) and gets the banner at once
// next time. Trusted clients are not tested. At most pregreetMax clients
// are remembered; beyond that, expired entries are dropped, and if none
// expired a new client is tested again next time.
type pregreet struct {
	srv    *Server
	mu     sync.Mutex
	passed map[netip.Prefix]time.Time // until when
	tests  atomic.Int64               // tests in progress (for tests)
}

const pregreetMax = 100000

func newPregreet(s *Server) *pregreet {
	return &pregreet{srv: s, passed: map[netip.Prefix]time.Time{}}
}

// test runs the pregreet test on sc if it is due, and reports whether the
// session goes on; if not, sc is closed (refused, or the client left).
func (p *pregreet) test(sc *sessConn) bool {
	o := p.srv.o
	if o.PregreetWait <= 0 {
		return true
	}
	key := policy.ClientKey(sc.pc.IP)
	p.mu.Lock()
	until, ok := p.passed[key]
	p.mu.Unlock()
	if ok && o.Now().Before(until) {
		return true
	}
	p.tests.Add(1)
	defer p.tests.Add(-1)

	_ = sc.Conn.SetWriteDeadline(time.Now().Add(refuseWriteTimeout))
	if _, err := sc.Conn.Write([]byte("220-" + o.Hostname + " ESMTP\r\n")); err != nil {
		sc.Close()
		return false
	}
	_ = sc.Conn.SetReadDeadline(time.Now().Add(o.PregreetWait))
	buf := make([]byte, 64)
	t0 := time.Now()
	n, err := sc.Conn.Read(buf)
	_ = sc.Conn.SetReadDeadline(time.Time{})
	switch {
	case n > 0:
		p.srv.gateRefused("pregreet")
		p.srv.refusals.log(sc.pc.IP, false, func(suppressed int) {
			p.srv.log.Info("connection refused", withSuppressed([]any{"stage", "pregreet", "client_ip", sc.pc.IP.String(),
				"after", time.Since(t0).Round(time.Millisecond).String(), "input", strconv.Quote(printableInput(buf[:n])),
				"action", "disconnect", "reply", replyLine(replyPregreet)}, suppressed)...)
		})
		sc.gate.refuse(sc, replyPregreet)
		return false
	case errors.Is(err, os.ErrDeadlineExceeded) || isNetTimeout(err):
		p.remember(key)
		return true
	}
	sc.Close() // the client left before the banner
	return false
}

func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// remember records that the client passed.
func (p *pregreet) remember(key netip.Prefix) {
	now := p.srv.o.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.passed) >= pregreetMax {
		p.sweepLocked(now)
		if len(p.passed) >= pregreetMax {
			return
		}
	}
	p.passed[key] = now.Add(p.srv.o.PregreetTTL)
}

// sweep forgets the clients whose pass expired.
func (p *pregreet) sweep() {
	now := p.srv.o.Now()
	p.mu.Lock()
	p.sweepLocked(now)
	p.mu.Unlock()
}

func (p *pregreet) sweepLocked(now time.Time) {
	for k, until := range p.passed {
		if !now.Before(until) {
			delete(p.passed, k)
		}
	}
}

// printableInput is what a client sent before the banner, for the log.
func printableInput(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if c < ' ' && c != '\r' && c != '\n' || c > '~' {
			c = '?'
		}
		out[i] = c
	}
	return string(out)
}
