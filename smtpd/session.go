package smtpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mxedge/mxedge/internal/address"
	"github.com/mxedge/mxedge/internal/tlsname"
	"github.com/mxedge/mxedge/policy"
	"github.com/mxedge/mxedge/queue"
)

// NewSession implements smtp.Backend. go-smtp calls it at the first
// HELO/EHLO (and at the first after STARTTLS): the HELO stage of the
// chain decides whether the greeting is accepted.
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	sc := findSessConn(c.Conn())
	if sc == nil {
		// Not from our gate (cannot happen outside tests of go-smtp).
		sc = s.gateless(c)
	}
	// A new go-smtp session (the first EHLO, or the first after STARTTLS,
	// which resets AUTH too): not authenticated.
	sc.pc.AuthUser = ""
	sess := &session{srv: s, conn: c, sc: sc, pc: sc.pc}
	if rep := sess.checkHelo(); rep != nil {
		return nil, rep
	}
	if s.o.Auth != nil {
		return &authSession{sess}, nil
	}
	return sess, nil
}

// authSession is the session of a listener with AUTH (submission): go-smtp
// offers its mechanisms after TLS. A session without it (MX) refuses AUTH.
type authSession struct{ *session }

func (s *authSession) AuthMechanisms() []string { return s.srv.o.Auth.Mechanisms() }

func (s *authSession) Auth(mech string) (sasl.Server, error) {
	return s.srv.o.Auth.Start(s.pc, mech, func(login string) { s.pc.AuthUser = login })
}

// gateless builds the facts of a connection that did not pass the gate.
func (s *Server) gateless(c *smtp.Conn) *sessConn {
	g := &gate{srv: s}
	return g.wrap(c.Conn())
}

// session is one SMTP session on the listener: go-smtp's Session.
type session struct {
	srv  *Server
	conn *smtp.Conn
	sc   *sessConn
	pc   *policy.Conn

	heloChecked string // the HELO argument the HELO stage last accepted
	tlsCounted  bool   // the session's TLS is counted (Server.TLSSessions)
	resolved    bool   // the connect decision is complete (resolveConnect)
	messages    int    // accepted in this session
	// ending is the deferral of a check that ended the session after the
	// transaction (policy.Result.EndSession): the rest of the
	// transaction's RCPTs get it, the next MAIL gets 421.
	ending *smtp.SMTPError

	txn      *policy.Txn // nil outside a transaction
	haveFrom bool
	rcpts    []queue.Rcpt
	seen     map[string]bool // recipients accepted, by mailboxKey
}

func (s *session) Reset() {
	s.txn, s.haveFrom, s.rcpts, s.seen = nil, false, nil, nil
}

func (s *session) Logout() error { return nil }

// stageContext bounds one stage of the chain.
func (s *session) stageContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.srv.o.CheckTimeout)
}

// checkHelo runs the HELO stage for the current HELO/EHLO argument, once
// per argument (go-smtp calls NewSession only for the first greeting, so
// MAIL checks again after a later EHLO). It also refreshes the TLS facts.
func (s *session) checkHelo() *smtp.SMTPError {
	s.pc.Helo = s.conn.Hostname()
	if cs, ok := s.conn.TLSConnectionState(); ok {
		s.pc.TLS = &cs
		if !s.tlsCounted {
			s.tlsCounted = true
			s.srv.counts.tlsIn[tlsname.Index(cs.Version)].Add(1)
		}
	} else {
		s.pc.TLS = nil
	}
	if s.heloChecked == s.pc.Helo && s.pc.Helo != "" {
		return nil
	}
	if rep := s.expired(); rep != nil {
		return rep
	}
	ctx, cancel := s.stageContext()
	d := s.sc.chain.Helo(ctx, s.pc)
	cancel()
	s.srv.logNotes(d.Logged, s.pc, "", "")
	if d.Refused() {
		return s.refuse("helo rejected", d, "")
	}
	s.heloChecked = s.pc.Helo
	return nil
}

// Mail checks the reverse-path's syntax, then runs the MAIL stage. The
// sender is never verified toward the outside (shared/PRINCIPLES.md).
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.Reset()
	if rep := s.checkHelo(); rep != nil {
		return rep
	}
	if s.srv.o.Auth != nil && s.pc.AuthUser == "" {
		// RFC 6409 section 4.3 / RFC 4954 section 6: submission only after
		// AUTH, and AUTH only after TLS.
		if s.pc.TLS == nil {
			return replyNeedTLS
		}
		return replyNeedAuth
	}
	if rep := s.expired(); rep != nil {
		return rep
	}
	if s.ending != nil {
		// The transaction that tripped the check is over (DATA, RSET or a
		// new MAIL): the session ends now.
		s.srv.log.Info("session closed", "client_ip", s.pc.IP.String(), "reason", "end_session")
		return replyEndSession
	}
	if s.messages >= s.srv.o.SessionMessages {
		s.srv.log.Info("session closed", "client_ip", s.pc.IP.String(), "reason", "session_messages", "count", s.messages)
		return replyTooManyMessages
	}
	if sc, ok := s.srv.queue.(interface{ CheckSpace() error }); ok {
		// Refuse before the client sends the data (free space reserve).
		if err := sc.CheckSpace(); err != nil {
			s.srv.log.Warn("mail refused", "client_ip", s.pc.IP.String(), "reason", "free_space", "err", err)
			return dataReply(err) // 452 4.3.1, or 451 for a statfs failure
		}
	}
	t := &policy.Txn{}
	if opts != nil {
		t.Mail = policy.MailParams{Size: opts.Size, Body: string(opts.Body), UTF8: opts.UTF8,
			Ret: string(opts.Return), EnvID: opts.EnvelopeID}
	}
	if from != "" {
		m, err := address.Parse(from, t.Mail.UTF8)
		if errors.Is(err, address.ErrNonASCII) {
			return replyNeedUTF8
		}
		if err != nil {
			return replyBadSender
		}
		from = m.Wire()
	}
	t.From = from
	ctx, cancel := s.stageContext()
	d := s.sc.chain.Mail(ctx, s.pc, t)
	cancel()
	s.srv.logNotes(d.Logged, s.pc, t.From, "")
	if d.Refused() {
		s.txn = t // for the log line: the refused sender
		rep := s.refuse("sender rejected", d, "")
		s.txn = nil
		return rep
	}
	s.txn, s.haveFrom = t, true
	return nil
}

// Rcpt checks the recipient's syntax, then answers a refusal held from
// the connect stage or runs the RCPT stage (relay control, verification,
// ...). A duplicate recipient is acknowledged but stored once.
func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if rep := s.expired(); rep != nil {
		return rep
	}
	if strings.EqualFold(to, "postmaster") {
		// RFC 5321 section 4.5.1: <postmaster> without a domain must be
		// accepted; it is the postmaster of the first relay domain.
		if s.srv.o.PostmasterDomain == "" {
			return replyNoPostmaster
		}
		to = "postmaster@" + s.srv.o.PostmasterDomain
	}
	m, err := address.Parse(to, s.txn.Mail.UTF8)
	switch {
	case errors.Is(err, address.ErrNonASCII):
		return replyNeedUTF8
	case err != nil:
		return replyBadRcpt
	}
	addr := m.Wire()
	key := s.srv.mailboxKey(addr)
	if s.seen[key] {
		return nil
	}
	if s.ending != nil {
		// No more checks (no more probes) in this transaction.
		return s.ending
	}
	s.resolveConnect(addr)
	if h := s.sc.held; h != nil {
		return s.refuse("recipient rejected", *h, addr)
	}
	ctx, cancel := s.stageContext()
	d := s.sc.chain.Rcpt(ctx, s.pc, s.txn, policy.Rcpt{Raw: to, Addr: addr, Local: m.Local, Domain: m.Domain})
	cancel()
	s.srv.logNotes(d.Logged, s.pc, s.txn.From, addr)
	if d.Refused() {
		rep := s.refuse("recipient rejected", d, addr)
		if d.EndSession && !d.Disconnect {
			s.ending = rep
		}
		return rep
	}
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	s.seen[key] = true
	s.rcpts = append(s.rcpts, dsnRcpt(addr, opts))
	s.txn.Rcpts = append(s.txn.Rcpts, addr)
	return nil
}

// mailboxKey is the form in which two recipients of one message (wire
// form, as Rcpt stores them) are the same mailbox: the domain is in
// normal form already; the local part is compared without regard to case
// unless the domain is configured case-sensitive (RFC 5321 section 2.4
// leaves the case of local parts to the receiving host; mailbox backends
// almost never tell them apart). A repeated RCPT and a DATA check's
// recipient changes (message.AddRcpt, DelRcpt) use it.
func (s *Server) mailboxKey(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 || s.o.CaseSensitive[addr[i+1:]] {
		return addr
	}
	return strings.ToLower(addr[:i]) + addr[i:]
}

// resolveConnect completes the connect stage the gate left pending: it
// waits for the client's reverse DNS lookup (started at accept), then
// runs the Laters of the connect checks (iprev, DNSBL, client access by
// name), whose lookups also started at accept. A refusal is held and
// answered at every RCPT from now on. It runs at the first RCPT, the
// first command whose answer depends on it, so that the lookups overlap
// the banner, HELO and MAIL.
func (s *session) resolveConnect(to string) {
	if s.resolved {
		return
	}
	s.resolved = true
	ctx, cancel := s.stageContext()
	defer cancel()
	s.sc.waitReverse(ctx)
	p := s.sc.pending
	if p == nil {
		return
	}
	s.sc.pending = nil
	d := p(ctx)
	from := ""
	if s.txn != nil {
		from = s.txn.From
	}
	s.srv.logNotes(d.Logged, s.pc, from, to)
	if d.Refused() && s.sc.held == nil {
		s.sc.held = &d
	}
}

// expired returns the reply that ends a session past
// Options.SessionTime (by Options.Now), nil if there is time left.
func (s *session) expired() *smtp.SMTPError {
	if s.srv.o.Now().Sub(s.sc.start) < s.srv.o.SessionTime {
		return nil
	}
	s.srv.log.Info("session closed", "client_ip", s.pc.IP.String(), "reason", "session_time",
		"after", s.srv.o.SessionTime.String())
	return replySessionTime(s.srv.o.Hostname)
}

// refuse logs a refusal by the chain (one line, with the deciding check as
// the stage), waits the decision's delay, closes the connection after the
// reply when it says so, and returns the reply.
func (s *session) refuse(msg string, d policy.Decision, to string) *smtp.SMTPError {
	from := ""
	if s.txn != nil {
		from = s.txn.From
	}
	s.srv.logRefusal(msg, d, s.pc, from, to)
	sleep(d.Delay)
	rep := toSMTP(d.Reply)
	if d.Disconnect && rep.Code != 421 {
		// RFC 5321 section 3.8: a server that closes says 421. go-smtp
		// sends a 421 after the replies batched before it, then closes.
		rep = reply(421, smtp.EnhancedCode{4, 7, 0}, rep.Message)
	}
	return rep
}

// logRefusal is the one log line of a refusal by the chain: the stage
// (the check), the client, the envelope so far and the reply sent; an
// internal error is a warning with its error.
func (s *Server) logRefusal(msg string, d policy.Decision, pc *policy.Conn, from, to string) {
	action := "reject"
	switch {
	case d.Disconnect:
		action = "disconnect"
	case d.Reply.Code/100 == 4:
		action = "defer"
	}
	s.refusals.log(pc.IP, d.Check == "limit", func(suppressed int) {
		s.logDecision(msg, d.Check, action, d.Reply, d.Reason, d.Err, pc, from, to, suppressed)
	})
}

// logNotes logs the matches of checks in log-only mode, one line each,
// with the reply they would have sent (rate-limited like refusals).
func (s *Server) logNotes(notes []policy.Note, pc *policy.Conn, from, to string) {
	for _, n := range notes {
		s.refusals.log(pc.IP, false, func(suppressed int) {
			s.logDecision("check matched (log only)", n.Check, "log", n.Reply, n.Reason, nil, pc, from, to, suppressed)
		})
	}
}

// logDecision writes one refusal or log-only line.
func (s *Server) logDecision(msg, check, action string, rep *policy.Reply, reason string, err error, pc *policy.Conn, from, to string, suppressed int) {
	attrs := []any{"stage", check, "client_ip", pc.IP.String()}
	if pc.Helo != "" {
		attrs = append(attrs, "helo", pc.Helo)
	}
	if msg != "connection refused" && msg != "helo rejected" && (action != "log" || from != "") {
		attrs = append(attrs, "from", "<"+from+">")
	}
	if to != "" {
		attrs = append(attrs, "to", "<"+to+">")
	}
	attrs = append(attrs, "action", action, "reply", rep.String())
	if reason != "" {
		attrs = append(attrs, "reason", reason)
	}
	attrs = withSuppressed(attrs, suppressed)
	if err != nil {
		s.log.Warn(msg, append(attrs, "err", err)...)
		return
	}
	s.log.Info(msg, attrs...)
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

// Data streams the message into the queue, runs the DATA stage on the
// stored message, and answers 250 only after the queue committed it. Every
// error path consumes the rest of the data (or closes the connection), so
// the remainder of a message is never read as commands.
func (s *session) Data(r io.Reader) error {
	s.sc.inData.Store(true)
	defer s.sc.inData.Store(false)
	r = markReader{r}
	s.resolveConnect("") // done at the first RCPT; the reverse name is set
	t := s.txn
	env := queue.Envelope{From: t.From, Body: t.Mail.Body, UTF8: t.Mail.UTF8, Ret: t.Mail.Ret,
		EnvID: t.Mail.EnvID, Rcpts: s.rcpts, Origin: queue.Origin{
			Listener: s.pc.Listener, Kind: string(s.pc.Kind), ClientIP: s.pc.IP.String(),
			ClientName: s.pc.Reverse.Name, Helo: s.pc.Helo, AuthUser: s.pc.AuthUser, TLS: policy.TLSName(s.pc.TLS),
		}}
	in, err := s.srv.queue.NewMessage(env)
	if err != nil {
		return s.fail("", err, r)
	}
	defer in.Abort()
	t.QueueID = in.ID()

	single := ""
	if len(s.rcpts) == 1 {
		single = s.rcpts[0].Addr
	}
	hdr := receivedHeader(s.pc, s.srv.o.Hostname, in.ID(), single, t.Mail.UTF8, s.srv.o.HideClientIP, s.srv.o.Now())
	if err := in.Prepend([]byte(hdr)); err != nil {
		return s.fail(in.ID(), err, r)
	}

	// Streams live as long as the transfer, which the data timeout bounds
	// per read.
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	streams := s.sc.chain.Streams(sctx, s.pc, t)
	// Header fields a check drops (policy.HeaderDropper) are left out of
	// the queue's copy only; the streams see the data as received.
	hw := s.sc.chain.HeaderFilter(s.pc, t, in)
	w := hw
	if len(streams) > 0 {
		w = &teeWriter{w: hw, streams: streams, log: s.srv.log, id: in.ID()}
	}
	f := newBodyFilter(w, s.srv.o.NormalizeLineEndings)
	buf, _ := s.srv.copyBufs.Get().(*[]byte)
	if buf == nil {
		b := make([]byte, 32<<10)
		buf = &b
	}
	_, err = io.CopyBuffer(f, r, *buf)
	s.srv.copyBufs.Put(buf)
	if err == nil {
		err = f.finish()
	}
	if fl, ok := hw.(interface{ Flush() error }); ok && err == nil {
		err = fl.Flush()
	}
	for _, sw := range streams {
		_ = sw.Close()
	}
	if err != nil {
		return s.fail(in.ID(), err, r)
	}
	if f.bad {
		s.srv.log.Info("rejected: bare CR or LF", "queue_id", in.ID(), "client_ip", s.pc.IP.String())
		return replyBareLineEnding
	}
	if f.hops > maxHops {
		s.srv.log.Info("rejected: too many hops", "queue_id", in.ID(), "client_ip", s.pc.IP.String(), "hops", f.hops)
		return replyTooManyHops
	}
	in.MarkCRLF(!f.dotLines) // the body filter let no bare CR or LF through; our headers are CRLF
	if s.sc.chain.HasData() {
		dctx, dcancel := s.stageContext()
		d := s.sc.chain.Data(dctx, s.pc, t, message{in: in, srv: s.srv, utf8: t.Mail.UTF8})
		dcancel()
		if d.Refused() {
			return s.refuse("message rejected", d, strings.Join(t.Rcpts, ">,<"))
		}
		if d.Discard {
			// The client is told it was queued (RFC 5321 allows no other
			// success); nothing is.
			s.srv.log.Info("message discarded", "queue_id", in.ID(), "stage", d.Check, "reason", d.Reason,
				"client_ip", s.pc.IP.String(), "from", t.From, "to", strings.Join(t.Rcpts, ","))
			in.Abort()
			s.messages++
			return replyQueued(in.ID())
		}
		if len(d.Headers) > 0 {
			if err := in.Prepend([]byte(strings.Join(d.Headers, ""))); err != nil {
				return s.fail(in.ID(), err, nil)
			}
		}
		if d.Hold {
			in.Hold(d.Check + ": " + d.Reason)
			s.srv.log.Info("message held", "queue_id", in.ID(), "stage", d.Check, "reason", d.Reason,
				"client_ip", s.pc.IP.String())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.o.CommandTimeout)
	defer cancel()
	if err := in.Commit(ctx); err != nil {
		return s.fail(in.ID(), err, nil)
	}
	s.messages++
	s.srv.counts.messages.Add(1)
	s.srv.counts.msgBytes.Add(uint64(in.Size()))
	return replyQueued(in.ID())
}

// message is a received message as DATA checks see it.
type message struct {
	in   *queue.Incoming
	srv  *Server
	utf8 bool // the transaction has SMTPUTF8
}

func (m message) Open() (io.ReadCloser, error) { return m.in.Open() }
func (m message) Size() int64                  { return m.in.Size() }

// message is a policy.Editor: a DATA check's changes go to the queue.
func (m message) Rewrite(write func(data io.Reader, w io.Writer) error) error {
	return m.in.Rewrite(write)
}
func (m message) SetFrom(from string) { m.in.SetFrom(from) }

// AddRcpt and DelRcpt take the address as RCPT does (normalised by
// address.Parse, the same mailbox by mailboxKey); a quoted local part is
// unquoted first, as go-smtp does for RCPT.
func (m message) AddRcpt(addr string) ([]string, error) { return m.editRcpt(addr, m.in.AddRcpt) }
func (m message) DelRcpt(addr string) ([]string, error) { return m.editRcpt(addr, m.in.DelRcpt) }

// editRcpt applies edit to addr in wire form and returns the recipients.
func (m message) editRcpt(addr string, edit func(addr string, key func(string) string)) ([]string, error) {
	u, err := address.Unquote(addr)
	var mb address.Mailbox
	if err == nil {
		mb, err = address.Parse(u, m.utf8)
	}
	if err != nil {
		return nil, fmt.Errorf("smtpd: recipient: %w", err)
	}
	edit(mb.Wire(), m.srv.mailboxKey)
	var rs []string
	for _, rc := range m.in.Envelope().Rcpts {
		rs = append(rs, rc.Addr)
	}
	return rs, nil
}

var _ policy.Editor = message{}

// teeWriter writes the message to the queue and to the stream writers of
// DATA checks (policy.Streamer). A failing stream is dropped and logged:
// it cannot fail the message, its check decides later without it.
type teeWriter struct {
	w       io.Writer
	streams []policy.StreamWriter
	log     *slog.Logger
	id      string
}

func (t *teeWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	for i := 0; i < len(t.streams); i++ {
		if _, serr := t.streams[i].Write(p[:n]); serr != nil {
			t.log.Warn("check stream failed", "queue_id", t.id, "check", t.streams[i].Check, "err", serr)
			_ = t.streams[i].Close()
			t.streams = append(t.streams[:i], t.streams[i+1:]...)
			i--
		}
	}
	return n, err
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
	ip := s.pc.IP.String()
	var re readError
	var se *smtp.SMTPError
	switch {
	case errors.As(err, &se):
		// go-smtp's size limit: go-smtp drains the rest itself.
		return rep
	case errors.Is(err, smtp.ErrDataReset):
		// RSET/EHLO/QUIT after a BDAT chunk without LAST: go-smtp drops
		// the message and sends no reply for it; the session goes on.
		s.srv.log.Info("receive aborted", "queue_id", id, "client_ip", ip, "err", err)
		return rep
	case !errors.As(err, &re) && r != nil:
		// A spool (disk) failure while the client is still sending: drain
		// through the same reader, which keeps extending the deadline.
		s.srv.log.Warn("receive failed", "queue_id", id, "client_ip", ip, "err", err)
		if _, derr := io.Copy(io.Discard, r); derr == nil {
			return rep
		}
	case !errors.As(err, &re):
		s.srv.log.Warn("receive failed", "queue_id", id, "client_ip", ip, "err", err)
		return rep
	default:
		s.srv.log.Info("receive aborted", "queue_id", id, "client_ip", ip, "err", err)
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
	_, _ = fmt.Fprintf(nc, "%s\r\n", replyLine(rep))
	_ = nc.Close()
}
