package smtpd

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxedge/mxedge/policy"
)

// sessConn is one accepted connection as go-smtp uses it. During DATA
// every read first pushes the read deadline out by the data block timeout:
// go-smtp sets its ReadTimeout once per command, which would bound the
// whole DATA phase, and a slow but live sender of a large message would be
// cut off. RFC 5321 section 4.5.3.2.6 asks for a timeout per data block (3
// minutes) instead; an idle sender is still cut off after that long.
//
// No read deadline goes past the session's end (Options.SessionTime): a
// session that is still reading then is cut off as by a timeout (421, and
// a message in transfer is not accepted).
//
// It also carries the session's policy facts (pc), the connect decision
// still pending or held, and the reverse DNS lookup in flight; it ends
// them and releases the session's slot when closed.
type sessConn struct {
	net.Conn
	gate        *gate
	dataTimeout time.Duration
	inData      atomic.Bool

	pc    *policy.Conn
	chain *policy.Chain // the listener's chain when the session started
	start time.Time     // by Options.Now
	end   time.Time     // real time the session must end by; zero: never

	// ctx lives as long as the connection: the connect checks' lookups
	// and the reverse lookup run under it.
	ctx    context.Context
	cancel context.CancelFunc

	held    *policy.Decision                          // a connect refusal answered at RCPT; nil: none
	pending func(ctx context.Context) policy.Decision // the rest of the connect stage; nil: none
	rev     chan policy.Reverse                       // the reverse lookup's result; nil: none started

	closeOnce sync.Once
}

func (c *sessConn) Read(p []byte) (int, error) {
	if c.inData.Load() {
		if err := c.SetReadDeadline(time.Now().Add(c.dataTimeout)); err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(p)
}

// SetReadDeadline sets t, or the session's end if that comes first.
func (c *sessConn) SetReadDeadline(t time.Time) error {
	if !c.end.IsZero() && (t.IsZero() || t.After(c.end)) {
		t = c.end
	}
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline sets the write deadline and the read deadline (clamped).
func (c *sessConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

// startReverse starts the client's reverse DNS lookup, bounded by
// timeout, if the listener has one.
func (c *sessConn) startReverse(lookup func(context.Context, netip.Addr) policy.Reverse, timeout time.Duration) {
	if lookup == nil || !c.pc.IP.IsValid() {
		return
	}
	c.rev = make(chan policy.Reverse, 1)
	go func() {
		ctx, cancel := context.WithTimeout(c.ctx, timeout)
		defer cancel()
		c.rev <- lookup(ctx, c.pc.IP)
	}()
}

// waitReverse waits for the reverse lookup (within ctx) and records its
// result in pc; a lookup cut off by ctx is a temporary error.
func (c *sessConn) waitReverse(ctx context.Context) {
	if c.rev == nil {
		return
	}
	select {
	case r := <-c.rev:
		c.pc.Reverse = r
	case <-ctx.Done():
		c.pc.Reverse = policy.Reverse{Status: policy.ReverseTempError}
	}
	c.rev = nil
}

// Close closes the connection, ends its lookups and gives its session
// slot back, once.
func (c *sessConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		c.cancel()
		c.pc.Close()
		c.gate.sessions.Add(-1)
		if c.gate.ready != nil { // counted by the gate's loop (not gateless)
			if c.gate.srv.counts.open.Add(-1) == 0 && c.gate.srv.draining.Load() {
				select { // Shutdown waits for this
				case c.gate.srv.idle <- struct{}{}:
				default:
				}
			}
		}
	})
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
