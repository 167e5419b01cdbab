package delivery

import (
	"context"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// quitTimeout bounds the QUIT of a connection that is being closed: it
// runs off the delivery path (idle expiry, Close), so it need not wait
// timeouts.reply.
const quitTimeout = 2 * time.Second

// session is one SMTP connection to a next hop, greeted (EHLO done). While
// it is idle in the cache it is outside any mail transaction.
type session struct {
	hop     string
	relay   string // hop, plus the peer address if that differs
	nc      net.Conn
	c       *smtp.Client
	created time.Time
	used    time.Time   // end of the last transaction (set by park)
	count   int         // transactions started on it
	timer   *time.Timer // idle expiry while cached; guarded by Deliverer.mu
	parks   int         // times cached; guarded by Deliverer.mu
}

// connect opens a session to hop: TCP connect, greeting, EHLO. On failure
// it returns nil and the result for every recipient. Its outcome counts
// towards the hop's dead state (deadhop.go); a probe must call connect.
func (d *Deliverer) connect(ctx context.Context, hop string, probe bool) (*session, int, string, string) {
	nc, err := d.dialer.DialContext(ctx, "tcp", strings.NewReplacer("[", "", "]", "").Replace(hop))
	if err != nil {
		d.connFailed(ctx, hop, probe)
		return nil, 0, "4.4.1", "connect to " + hop + ": " + netReason(err)
	}
	s := &session{hop: hop, relay: hop, nc: nc, c: smtp.NewClient(nc), created: d.now()}
	if ra := nc.RemoteAddr().String(); ra != hop {
		s.relay = hop + " [" + ra + "]"
	}
	s.c.CommandTimeout = d.t.Reply.D()
	s.c.SubmissionTimeout = d.t.DataDone.D()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	err = s.c.Hello(d.hostname)
	if !stop() && err == nil {
		err = net.ErrClosed
	}
	if err != nil {
		s.c.Close()
		d.connFailed(ctx, hop, probe)
		// A refused greeting or EHLO is a property of the host, not of the
		// recipients: defer (issue: MX walk moves on to the next host).
		code, enh, text := describe(err)
		if code/100 == 5 {
			code, enh = 0, "4.4.0"
			text = "greeting/EHLO refused: " + text
		}
		return nil, code, enh, text
	}
	d.connOK(hop)
	return s, 0, "", ""
}

// reset ends an open mail transaction so that s can be reused (RFC 5321
// section 4.1.1.5). go-smtp's Reset forgets the EHLO, so the EHLO is
// repeated at once: a cached session is always greeted, and the next
// transaction's MAIL is the first thing a reused connection sends.
func (s *session) reset(hostname string) error {
	if err := s.c.Reset(); err != nil {
		return err
	}
	return s.c.Hello(hostname)
}

// quit says QUIT (RFC 5321 section 4.1.1.10) and closes the connection,
// waiting at most quitTimeout for the reply.
func (s *session) quit() {
	s.c.CommandTimeout = quitTimeout
	if err := s.c.Quit(); err != nil {
		s.c.Close()
	}
}
