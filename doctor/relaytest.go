package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"time"
)

// RelayTest is where and how the open-relay self-test connects to our
// own MX listener.
type RelayTest struct {
	// Addr is the MX listener, "host:port"; "": the test is skipped.
	Addr string
	// Listener names the [[listener]]s at Addr ("mx-b 0.0.0.0:25"); it
	// labels the test's checks when there are several tests. "": Addr.
	Listener string
	// Helo is the name the test gives in EHLO; default
	// "mxedge-doctor.invalid" (not ours: HELO-is-us checks would refuse
	// the test before it could tell anything).
	Helo string
	// Sender is the outside sender; default "mxedge-doctor@" + Foreign.
	// If MAIL FROM refuses it (an unknown sender domain), the test goes
	// on with the null sender, which a relay must not relay for either.
	Sender string
	// Foreign is the domain the test tries to relay to; default
	// "other.example" (RFC 2606: never a real domain).
	Foreign string
	// Timeout bounds each step (connection, banner, each command);
	// default 30 seconds.
	Timeout time.Duration
}

// relayProbe is one transaction of the self-test: MAIL FROM, RCPT TO,
// RSET.
type relayProbe struct {
	name string
	from string // "" the outside sender, else this address
	rcpt string
}

// relayProbes are the classic open-relay tests (the abuse.net and
// rlytest list) with postmaster as the local part (RFC 5321 section
// 4.5.1: it exists everywhere, so a refusal is not just an unknown
// user). The destination of every one is foreign; each must be refused.
func relayProbes(relay, foreign string) []relayProbe {
	pm := "postmaster@" + foreign
	return []relayProbe{
		{name: "foreign recipient", rcpt: pm},
		{name: "percent hack", rcpt: "postmaster%" + foreign + "@" + relay},
		// RFC 5321 section 4.1.1.3: the route is ignored, leaving the
		// foreign mailbox; a relay that honours it relays through us.
		{name: "source route", rcpt: "@" + relay + ":" + pm},
		{name: "quoted local part", rcpt: `"` + pm + `"@` + relay},
		{name: "bang path", rcpt: foreign + "!postmaster@" + relay},
		{name: "relay domain as sender", from: "postmaster@" + relay, rcpt: pm},
	}
}

// relayFix is the fix of an open relay.
const relayFix = "accept from outside only recipients in relay_domains, without % ! or @ in the local part " +
	"(mxedge's relay control does: check that the listener is kind \"mx\" and what runs in front of it)"

// relayTestName is the check that says why the self-test did not run.
const relayTestName = "open relay self-test"

// relayTests runs the self-test against every MX listener given, one
// after the other; with several, each check's subject ends in the
// listener's label (" (at mx-b 192.0.2.2:25)").
func (c *run) relayTests() {
	if len(c.in.RelayTests) == 0 {
		c.skip(relayTestName, "", "no MX listener address to test")
		return
	}
	for _, t := range c.in.RelayTests {
		label := ""
		if len(c.in.RelayTests) > 1 {
			label = t.Listener
			if label == "" {
				label = t.Addr
			}
			label = " (at " + label + ")"
		}
		c.relayTest(t, label)
	}
}

// relayTest is the open-relay self-test of one MX listener: one session
// (reconnecting if it ends early), a control transaction to postmaster
// of the first relay domain (it must get as far as RCPT, or the refusals
// below prove nothing), then the relayProbes, each ended with RSET, then
// QUIT. DATA is never sent. label ends every check's subject.
func (c *run) relayTest(t RelayTest, label string) {
	if t.Addr == "" {
		c.skip(relayTestName, t.Listener, "no MX listener address to test")
		return
	}
	if len(c.in.RelayDomains) == 0 {
		c.skip(relayTestName, t.Addr+label, "no relay domains")
		return
	}
	if t.Helo == "" {
		t.Helo = "mxedge-doctor.invalid"
	}
	if t.Foreign == "" {
		t.Foreign = "other.example"
	}
	if t.Sender == "" {
		t.Sender = "mxedge-doctor@" + t.Foreign
	}
	if t.Timeout <= 0 {
		t.Timeout = 30 * time.Second
	}
	relay := c.in.RelayDomains[0]
	s := &relaySession{ctx: c.ctx, t: t, sender: t.Sender}
	defer s.quit()

	control := "postmaster@" + relay
	reply, err := s.transaction(relayProbe{rcpt: control})
	var dialErr *net.OpError
	switch {
	case errors.As(err, &dialErr) && dialErr.Op == "dial":
		c.skip(relayTestName, t.Addr+label, "the relay is not running there: "+err.Error())
		return
	case err != nil:
		c.warn("relay self-test reaches RCPT", control+label, err.Error(),
			"check that "+t.Addr+" is our MX listener and lets this host connect")
	case reply.code/100 != 2:
		c.warn("relay self-test reaches RCPT", control+label, "RCPT TO:<"+control+"> answered "+reply.String()+
			" (the refusals below may come from another check)",
			"run the test from an address the relay treats as outside (mxedge doctor -mx <public address>)")
	default:
		c.add("relay self-test reaches RCPT", control+label, true, "RCPT TO:<"+control+"> answered "+reply.String(), "")
	}
	for _, p := range relayProbes(relay, t.Foreign) {
		check := "not an open relay: " + p.name
		subject := p.rcpt
		if p.from != "" {
			subject = "from " + p.from + " to " + p.rcpt
		}
		subject += label
		reply, err := s.transaction(p)
		switch {
		case err != nil:
			c.warn(check, subject, err.Error(), "run the test again; if it persists, check the relay's log")
		case reply.code/100 == 2:
			c.add(check, subject, false, "OPEN RELAY: "+reply.step+" answered "+reply.String(), relayFix)
		case reply.code/100 == 4:
			c.warn(check, subject, reply.step+" answered "+reply.String()+" (refused only for now)",
				"relay control should refuse a foreign destination with 5xx at once")
		default:
			c.add(check, subject, true, reply.step+" answered "+reply.String(), "")
		}
	}
}

// smtpReply is one reply of the relay and the command it answered.
type smtpReply struct {
	step string // "RCPT TO:<...>"
	code int
	msg  string
}

func (r smtpReply) String() string {
	first, _, _ := strings.Cut(r.msg, "\n")
	return fmt.Sprintf("%d %s", r.code, first)
}

// relaySession is the self-test's SMTP client: plain text (relay control
// does not depend on TLS), one command at a time, each with its deadline.
type relaySession struct {
	ctx    context.Context
	t      RelayTest
	sender string // the outside sender in use: t.Sender, or "" once refused
	nc     net.Conn
	tp     *textproto.Conn
	stop   func() bool // ends the ctx watch of nc
}

// transaction runs MAIL FROM, RCPT TO and RSET, connecting first if
// needed. The reply returned decides: RCPT's, or MAIL's if MAIL was
// refused (for a probe with its own sender: the relay refused the
// transaction; for the outside sender, it is tried once more as the null
// sender). An error is a failed connection or session; the session is
// then closed, and the next transaction connects again (so does a
// failed RSET, which does not change the reply).
func (s *relaySession) transaction(p relayProbe) (smtpReply, error) {
	if s.tp == nil {
		if err := s.connect(); err != nil {
			return smtpReply{}, err
		}
	}
	from := p.from
	if from == "" {
		from = s.sender
	}
	mail, err := s.cmd("MAIL FROM:<" + from + ">")
	if err == nil && mail.code/100 != 2 && p.from == "" && s.sender != "" {
		s.sender = "" // the null sender from now on
		mail, err = s.cmd("MAIL FROM:<>")
	}
	if err != nil {
		return smtpReply{}, s.fail(err)
	}
	if mail.code/100 != 2 {
		s.reset()
		return mail, nil
	}
	rcpt, err := s.cmd("RCPT TO:<" + p.rcpt + ">")
	if err != nil {
		return smtpReply{}, s.fail(err)
	}
	s.reset()
	return rcpt, nil
}

// connect dials the listener, reads the banner and says EHLO (HELO if
// EHLO is refused).
func (s *relaySession) connect() error {
	ctx, cancel := context.WithTimeout(s.ctx, s.t.Timeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", s.t.Addr)
	if err != nil {
		return err
	}
	s.nc, s.tp = nc, textproto.NewConn(nc)
	// ctx ending interrupts a command in flight.
	s.stop = context.AfterFunc(s.ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	s.deadline()
	code, msg, err := s.tp.ReadResponse(0)
	if err == nil && code != 220 {
		err = fmt.Errorf("the listener greeted with %d %s", code, msg)
	}
	if err != nil {
		return s.fail(fmt.Errorf("banner: %w", err))
	}
	r, err := s.cmd("EHLO " + s.t.Helo)
	if err == nil && r.code/100 == 5 {
		r, err = s.cmd("HELO " + s.t.Helo)
	}
	if err == nil && r.code/100 != 2 {
		err = fmt.Errorf("%s answered %s", r.step, r)
	}
	if err != nil {
		return s.fail(err)
	}
	return nil
}

// cmd sends one command and reads its reply, within the step timeout.
func (s *relaySession) cmd(line string) (smtpReply, error) {
	s.deadline()
	if err := s.tp.PrintfLine("%s", line); err != nil {
		return smtpReply{}, fmt.Errorf("%s: %w", line, err)
	}
	code, msg, err := s.tp.ReadResponse(0)
	if err != nil {
		return smtpReply{}, fmt.Errorf("%s: %w", line, err)
	}
	return smtpReply{step: line, code: code, msg: msg}, nil
}

// deadline sets the deadline of the next step: Timeout from now, or the
// end of ctx if that is sooner.
func (s *relaySession) deadline() {
	d := time.Now().Add(s.t.Timeout)
	if cd, ok := s.ctx.Deadline(); ok && cd.Before(d) {
		d = cd
	}
	s.nc.SetDeadline(d)
}

// reset ends a transaction with RSET; if that fails, it closes the
// session.
func (s *relaySession) reset() {
	if r, err := s.cmd("RSET"); err != nil || r.code/100 != 2 {
		s.close()
	}
}

// fail closes the session after err and returns err.
func (s *relaySession) fail(err error) error {
	s.close()
	if s.ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", err, s.ctx.Err())
	}
	return err
}

// quit ends the session politely, if one is open.
func (s *relaySession) quit() {
	if s.tp != nil {
		s.cmd("QUIT")
		s.close()
	}
}

func (s *relaySession) close() {
	if s.tp != nil {
		s.stop()
		s.tp.Close()
		s.tp, s.nc = nil, nil
	}
}
