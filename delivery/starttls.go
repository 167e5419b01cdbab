package delivery

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"time"

	"github.com/emersion/go-smtp"
)

// STARTTLS (RFC 3207) on a greeted session. go-smtp's NewClientStartTLS
// would send the plaintext EHLO as "localhost" and its STARTTLS is not
// exported, so the plaintext part is go-smtp's Hello with the configured
// name, then this file: the STARTTLS command and its reply read straight
// from the socket, the handshake, and a new go-smtp client on the TLS
// connection that sends EHLO again (RFC 3207 section 4.2: the client
// forgets everything it learnt before TLS).

// errPlaintextAfterSTARTTLS: bytes followed the 220 reply to STARTTLS in
// the same read, before the handshake: a man in the middle injecting
// commands (CVE-2011-0411); the connection is dropped.
var errPlaintextAfterSTARTTLS = errors.New("plaintext data after the reply to STARTTLS")

// startTLS sends STARTTLS on nc, whose client c has finished EHLO and
// has nothing buffered. refused is the server's non-220 reply (the
// session continues in plaintext with c); on a handshake failure err is
// set and nc is unusable.
func (d *Deliverer) startTLS(ctx context.Context, nc net.Conn, p tlsPlan) (tc *tls.Conn, refused error, err error) {
	nc.SetDeadline(time.Now().Add(d.replyTimeout))
	if _, err := nc.Write([]byte("STARTTLS\r\n")); err != nil {
		return nil, nil, err
	}
	br := bufio.NewReader(nc)
	code, msg, err := textproto.NewReader(br).ReadResponse(220)
	if err != nil {
		var te *textproto.Error
		if errors.As(err, &te) {
			return nil, &smtp.SMTPError{Code: code, EnhancedCode: smtp.NoEnhancedCode, Message: msg}, nil
		}
		return nil, nil, err
	}
	if br.Buffered() > 0 {
		return nil, nil, errPlaintextAfterSTARTTLS
	}
	tc = tls.Client(nc, d.tlsConfig(p))
	hctx, cancel := context.WithTimeout(ctx, d.replyTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return nil, nil, err
	}
	nc.SetDeadline(time.Time{})
	return tc, nil, nil
}

// greetedConn is a TLS connection whose reads start with a made-up 220
// greeting, so that a new go-smtp client (which waits for a greeting
// before its first command) sends EHLO at once: after STARTTLS the server
// sends no greeting.
type greetedConn struct {
	net.Conn
	pending []byte
}

func newGreetedConn(c net.Conn) *greetedConn {
	return &greetedConn{Conn: c, pending: []byte("220 STARTTLS done\r\n")}
}

func (g *greetedConn) Read(p []byte) (int, error) {
	if len(g.pending) > 0 {
		n := copy(p, g.pending)
		g.pending = g.pending[n:]
		return n, nil
	}
	return g.Conn.Read(p)
}

// tlsError is the short reason of a handshake or verification error.
func tlsError(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	var ce *tls.CertificateVerificationError
	if errors.As(err, &ce) {
		return ce.Err.Error()
	}
	return fmt.Sprint(err)
}
