package smtpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxedge/mxedge/queue"
)

// session is one SMTP session on the MX listener.
type session struct {
	srv  *Server
	conn *smtp.Conn
	dc   *dataConn
	ip   string

	from     string
	haveFrom bool
	utf8     bool
	body     string
	ret      string // DSN RET
	envid    string // DSN ENVID
	rcpts    []queue.Rcpt
	seen     map[string]bool
}

func (s *session) Reset() {
	s.from, s.haveFrom, s.utf8, s.body, s.ret, s.envid = "", false, false, "", "", ""
	s.rcpts, s.seen = nil, nil
}

func (s *session) Logout() error { return nil }

// Mail checks the reverse-path. The sender is never verified toward the
// outside (shared/PRINCIPLES.md): only its syntax is checked.
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.Reset()
	s.utf8 = opts != nil && opts.UTF8
	if opts != nil {
		s.body = string(opts.Body)
		s.ret, s.envid = string(opts.Return), opts.EnvelopeID
	}
	if from != "" {
		m, err := parseMailbox(from, s.utf8)
		if errors.Is(err, errNonASCII) {
			return replyNeedUTF8
		}
		if err != nil {
			return replyBadSender
		}
		from = m.wire()
	}
	s.from, s.haveFrom = from, true
	return nil
}

// Rcpt accepts or refuses one recipient (see checkRcpt). A duplicate
// recipient is acknowledged but stored once.
func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	addr, rep := s.srv.checkRcpt(to, s.utf8)
	if rep != nil {
		if rep.Code == 554 {
			s.srv.log.Info("relay denied", "client_ip", s.ip, "from", "<"+s.from+">", "to", "<"+to+">")
		}
		return rep
	}
	if s.seen[addr] {
		return nil
	}
	if rep := s.verify(addr); rep != nil {
		return rep
	}
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	s.seen[addr] = true
	s.rcpts = append(s.rcpts, dsnRcpt(addr, opts))
	return nil
}

// verify asks the Verifier whether addr exists (after the relay check,
// shared/PRINCIPLES.md) and returns the refusal, or nil to accept. A
// client over the dictionary attack limit waits before each refusal and is
// disconnected at the hard limit.
func (s *session) verify(addr string) *smtp.SMTPError {
	if s.srv.verifier == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.cfg.Timeouts.Command.D())
	defer cancel()
	v := s.srv.verifier.Verify(ctx, s.ip, addr)
	rep := verifyReply(addr, v)
	if rep == nil {
		return nil
	}
	attrs := []any{"client_ip", s.ip, "from", "<" + s.from + ">", "to", "<" + addr + ">",
		"action", v.Action.String(), "source", v.Source}
	if v.Reply != "" {
		attrs = append(attrs, "reply", v.Reply)
	}
	if v.Err != nil {
		attrs = append(attrs, "err", v.Err)
		s.srv.log.Warn("recipient not verified", attrs...)
	} else {
		s.srv.log.Info("recipient rejected", attrs...)
	}
	if v.Delay > 0 {
		time.Sleep(v.Delay)
	}
	// A Disconnect verdict is a 421: go-smtp sends it after the replies
	// before it and closes the connection.
	return rep
}

// checkRcpt decides a recipient as go-smtp parsed it and returns its wire
// form. Order (shared/PRINCIPLES.md): syntax, then relay control
// (reject_unauth_destination): the domain must be a relay domain, and the
// local part must not route onward.
func (s *Server) checkRcpt(to string, utf8 bool) (string, *smtp.SMTPError) {
	m, err := parseMailbox(to, utf8)
	switch {
	case errors.Is(err, errNonASCII):
		return "", replyNeedUTF8
	case err != nil:
		return "", replyBadRcpt
	case m.routed(), !s.relay[m.domain]:
		return "", replyRelayDenied(to)
	}
	return m.wire(), nil
}

// dsnRcpt keeps a recipient's DSN parameters (RFC 3461 sections 4.1, 4.2)
// for the reports the queue may send later.
func dsnRcpt(addr string, opts *smtp.RcptOptions) queue.Rcpt {
	rc := queue.Rcpt{Addr: addr}
	if opts == nil {
		return rc
	}
	for _, n := range opts.Notify {
		rc.Notify = append(rc.Notify, string(n))
	}
	if opts.OriginalRecipient != "" {
		rc.ORcpt = string(opts.OriginalRecipientType) + ";" + opts.OriginalRecipient
	}
	return rc
}

// Data streams the message into the queue and answers 250 only after the
// queue committed it. Every error path consumes the rest of the data (or
// closes the connection), so the remainder of a message is never read as
// commands.
func (s *session) Data(r io.Reader) error {
	if s.dc != nil {
		s.dc.inData.Store(true)
		defer s.dc.inData.Store(false)
	}
	r = markReader{r}
	env := queue.Envelope{From: s.from, ClientIP: s.ip, Helo: s.conn.Hostname(), Body: s.body, UTF8: s.utf8,
		Ret: s.ret, EnvID: s.envid, Rcpts: s.rcpts}
	in, err := s.srv.queue.NewMessage(env)
	if err != nil {
		return s.fail("", err, r)
	}
	defer in.Abort()

	_, tls := s.conn.TLSConnectionState()
	single := ""
	if len(s.rcpts) == 1 {
		single = s.rcpts[0].Addr
	}
	hdr := receivedHeader(s.conn.Hostname(), s.ip, s.srv.cfg.Hostname, in.ID(), single, tls, s.utf8, s.srv.now())
	if _, err := io.WriteString(in, hdr); err != nil {
		return s.fail(in.ID(), err, r)
	}
	f := newBodyFilter(in, s.srv.normalize)
	if _, err := io.Copy(f, r); err != nil {
		return s.fail(in.ID(), err, r)
	}
	if err := f.finish(); err != nil {
		return s.fail(in.ID(), err, r)
	}
	if f.bad {
		s.srv.log.Info("rejected: bare CR or LF", "queue_id", in.ID(), "client_ip", s.ip)
		return replyBareLineEnding
	}
	if f.hops > maxHops {
		s.srv.log.Info("rejected: too many hops", "queue_id", in.ID(), "client_ip", s.ip, "hops", f.hops)
		return replyTooManyHops
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.cfg.Timeouts.Command.D())
	defer cancel()
	if err := in.Commit(ctx); err != nil {
		return s.fail(in.ID(), err, nil)
	}
	return replyQueued(in.ID())
}

// readError marks an error that came from the client's side of the
// stream, as opposed to the spool's.
type readError struct{ err error }

func (e readError) Error() string { return e.err.Error() }
func (e readError) Unwrap() error { return e.err }

type markReader struct{ r io.Reader }

func (m markReader) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	if err != nil && err != io.EOF {
		err = readError{err}
	}
	return n, err
}

// fail logs err, makes sure the rest of the message is consumed (or the
// connection closed when that is impossible), and returns the reply. r is
// the unread rest of the data, nil when it was read to the end.
func (s *session) fail(id string, err error, r io.Reader) error {
	rep := dataReply(err)
	var re readError
	var se *smtp.SMTPError
	switch {
	case errors.As(err, &se):
		// go-smtp's size limit: go-smtp drains the rest itself.
		return rep
	case errors.Is(err, smtp.ErrDataReset):
		// RSET/EHLO/QUIT after a BDAT chunk without LAST: go-smtp drops
		// the message and sends no reply for it; the session goes on.
		s.srv.log.Info("receive aborted", "queue_id", id, "client_ip", s.ip, "err", err)
		return rep
	case !errors.As(err, &re) && r != nil:
		// A spool (disk) failure while the client is still sending: drain
		// through the same reader, which keeps extending the deadline.
		s.srv.log.Warn("receive failed", "queue_id", id, "client_ip", s.ip, "err", err)
		if _, derr := io.Copy(io.Discard, r); derr == nil {
			return rep
		}
	case !errors.As(err, &re):
		s.srv.log.Warn("receive failed", "queue_id", id, "client_ip", s.ip, "err", err)
		return rep
	default:
		s.srv.log.Info("receive aborted", "queue_id", id, "client_ip", s.ip, "err", err)
	}
	// The stream is broken (timeout, disconnect, line too long): answer
	// directly and close, since go-smtp would read the rest of the data as
	// commands.
	s.closeWith(rep)
	return rep
}

// closeWith writes a final reply straight to the socket and closes it.
func (s *session) closeWith(rep *smtp.SMTPError) {
	nc := s.conn.Conn()
	_ = nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	e := rep.EnhancedCode
	_, _ = fmt.Fprintf(nc, "%d %d.%d.%d %s\r\n", rep.Code, e[0], e[1], e[2], rep.Message)
	_ = nc.Close()
}
