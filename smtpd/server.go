// Package smtpd is mxedge's SMTP listener, for every listener kind: the
// port 25 MX service that accepts mail for the relay domains and applies
// the pre-queue policy, answering every refusal inside the SMTP session
// (never accept-then-bounce), and, with the submission profile set up by
// package submission (Options.Auth, ImplicitTLS, HideClientIP), ports 587
// and 465 for desktop clients. One session implementation serves all
// kinds; they differ in options and in their policy chain.
//
// What it implements itself:
//   - RFC 5321 sections 3.3 and 4.1.1: the MAIL/RCPT/DATA transaction, via
//     github.com/emersion/go-smtp (the in-tree fork, third_party/go-smtp).
//     AUTH only with Options.Auth (RFC 4954: offered after TLS, 538 5.7.11
//     before it, MAIL without it 530 5.7.0); an MX listener answers AUTH
//     with 503 5.5.1.
//   - RFC 8314 implicit TLS (Options.ImplicitTLS, port 465).
//   - Address syntax (package internal/address): 501 for bad syntax, 553
//     for a non-ASCII address without SMTPUTF8 (RFC 6531 section 3.2).
//     RFC 5321 section 4.5.1: "RCPT TO:<postmaster>" without a domain is
//     postmaster of the first relay domain. Recipients of one message that
//     differ only in the case of the local part are one (stored once, as
//     first given) unless their domain is configured case-sensitive.
//   - RFC 1870 SIZE at MAIL and on the stream; a recipient limit.
//   - RFC 5321 section 4.4: a Received header on every message, with the
//     client's forward-confirmed reverse name and the TLS version and
//     cipher as Postfix writes them, "with ESMTPSA" when authenticated
//     (RFC 3848).
//   - RFC 3207 STARTTLS when Options.TLS is set; after it the session
//     starts over (go-smtp resets it; the HELO stage runs again). Input
//     pipelined after STARTTLS is discarded (CVE-2011-0411).
//   - RFC 5321 section 4.5.3.2: 5 minutes per command, a data block
//     timeout per read during DATA (sessconn.go). A command line cut off by
//     the timeout is never executed (421 4.4.2); command lines are limited
//     to 2048 octets, message lines only by the message size.
//   - RFC 3030 BDAT: RSET after a chunk without LAST discards the message
//     and the session goes on; "BDAT 0 LAST" with nothing before it is
//     accepted as a message of our Received header alone (Postfix accepts
//     an empty DATA too).
//   - RFC 5321 section 2.3.8: bare CR / bare LF policy against SMTP
//     smuggling (bodyfilter.go).
//   - A hop count limit against mail loops (Postfix hopcount_limit).
//   - Postfix's per-session error limits (through go-smtp): from 10
//     errors (4xx/5xx replies) every reply waits 1 s, at 20 the client gets
//     421 and is disconnected; NOOP, RSET, VRFY, HELP and unknown commands
//     beyond 100 count as errors. A session ends after 30 minutes or 1000
//     messages.
//
// In front of go-smtp, the gate (gate.go), Postfix's postscreen: the
// listener's session limit (421 at once, in constant memory), the connect
// stage of the chain (which returns at once: checks that need DNS start
// their lookups and decide at the first RCPT), the client's reverse DNS
// lookup, and the pregreet test (pregreet.go: "220-" first, a wait, 554 to
// a client that talks early). The lookups run while the client waits for
// the banner and sends HELO and MAIL: they add no latency.
//
// What it decides is up to the listener's policy chain (package policy),
// which the session code calls at every stage without knowing its checks:
// connect (gate.go, before the banner, completed at the first RCPT), HELO,
// MAIL, RCPT and DATA. On an MX listener the chain is, in order
// (shared/PRINCIPLES.md: trusted clients first, then the cheap checks, then
// DNSBL, the backend asked last): allowlist, per-client limits, client
// access, iprev, DNSBL at connect; HELO checks; sender access and sender
// domain at MAIL; relay control, then recipient verification at RCPT
// (cmd/mxedge/chain.go builds it). DATA checks read the stored message
// back and may add header fields before Commit.
//
// Every refusal is one log line with its stage (the deciding check:
// "limit", "pregreet", "iprev", "helo", "sender", "dnsbl", "access",
// "relay", "verify"), the client, the envelope so far and the reply;
// refusal lines are rate-limited per client (refusals.go). Server.Refusals
// counts refusals per stage for the metrics.
//
// Replies the listener decides itself are built in replies.go; those of
// checks come from the chain. The listener hands the message to the queue
// (Queue); it answers 250 only after the queue's Commit returned, that is
// after the message is durable.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mxedge/mxedge/policy"
	"github.com/mxedge/mxedge/queue"
)

// Queue is where accepted messages go. NewMessage starts a message; the
// returned Incoming must be ended with Commit (durable on nil error) or
// Abort. See queue.Incoming for the full contract.
type Queue interface {
	NewMessage(env queue.Envelope) (*queue.Incoming, error)
}

// Options configure one listener; cmd/mxedge maps the configuration onto
// them. Zero values take the defaults in brackets.
type Options struct {
	Name     string      // listener name in logs ["mx"]
	Kind     policy.Kind // [policy.KindMX]
	Address  string      // "host:port" to listen on
	Hostname string      // banner, Received ["localhost"]

	MessageSize int64 // largest message in bytes [10240000]
	Recipients  int   // recipients per message [1000]
	MaxSessions int   // concurrent sessions of this listener [1000]

	CommandTimeout time.Duration // idle time between commands [5m]
	DataTimeout    time.Duration // idle time between reads in DATA [3m]
	// CheckTimeout bounds one stage of the policy chain (a check must
	// return by then, see package policy) [CommandTimeout].
	CheckTimeout time.Duration

	// TLS, if set, is offered with STARTTLS (RFC 3207): certificates and
	// minimum version (package internal/certs builds it). nil: no TLS.
	TLS *tls.Config

	// PregreetWait is the pregreet test's wait after the first banner line
	// (pregreet.go) [0: no test]; PregreetTTL how long a client that
	// passed is not tested again [24h].
	PregreetWait time.Duration
	PregreetTTL  time.Duration
	// ReverseLookup, if set, looks up the client's reverse DNS when the
	// connection is accepted (policy.LookupReverse over the relay's
	// resolver), within LookupTimeout [5s]: the Received header names a
	// forward-confirmed name, the iprev check decides on it.
	ReverseLookup func(ctx context.Context, ip netip.Addr) policy.Reverse
	LookupTimeout time.Duration

	// Error limits of a session (Postfix smtpd_soft_error_limit,
	// smtpd_hard_error_limit, smtpd_error_sleep_time,
	// smtpd_junk_command_limit): every 4xx/5xx reply is an error; from
	// SoftErrors on every reply waits ErrorSleep, at HardErrors the
	// session gets 421 and is closed; NOOP, RSET, VRFY, HELP and unknown
	// commands beyond JunkCommands count as errors. An accepted message
	// starts the counts again. [10, 20, 1s (negative: no wait), 100]
	SoftErrors   int
	HardErrors   int
	ErrorSleep   time.Duration
	JunkCommands int
	// SessionTime is the most a session may last, whatever it does
	// [30m]; SessionMessages the most messages it may send [1000].
	SessionTime     time.Duration
	SessionMessages int

	// PostmasterDomain is where "RCPT TO:<postmaster>" without a domain
	// goes (RFC 5321 section 4.5.1): postmaster@PostmasterDomain, the
	// first relay domain. "": refused.
	PostmasterDomain string
	// CaseSensitive are the relay domains (normal form) whose local parts
	// are case-sensitive: elsewhere two recipients that differ only in
	// the case of the local part are one (delivered once).
	CaseSensitive map[string]bool

	// NormalizeLineEndings turns bare LF into CRLF and a stray CR into a
	// space instead of refusing the message [false: refuse].
	NormalizeLineEndings bool

	// The submission profile (RFC 6409, RFC 8314; package submission sets
	// it up for the submission kinds). Auth, if set, offers SASL AUTH
	// after TLS (none before: 538 5.7.11), and MAIL requires it (530
	// 5.7.0); nil: AUTH is refused (503 5.5.1), as on an MX listener.
	Auth Authenticator
	// ImplicitTLS: TLS from the first byte (port 465, RFC 8314 section
	// 3.3); TLS must be set. Without it TLS is STARTTLS.
	ImplicitTLS bool
	// HideClientIP: the Received header omits the client's address, name
	// and HELO (privacy of home users on submission).
	HideClientIP bool

	Logger *slog.Logger     // [slog.Default()]
	Now    func() time.Time // clock of Received headers [time.Now]
}

func (o *Options) defaults() {
	if o.Name == "" {
		o.Name = "mx"
	}
	if o.Kind == "" {
		o.Kind = policy.KindMX
	}
	if o.Hostname == "" {
		o.Hostname = "localhost"
	}
	if o.MessageSize <= 0 {
		o.MessageSize = 10240000
	}
	if o.Recipients <= 0 {
		o.Recipients = 1000
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = 1000
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = 5 * time.Minute
	}
	if o.DataTimeout <= 0 {
		o.DataTimeout = 3 * time.Minute
	}
	if o.CheckTimeout <= 0 {
		o.CheckTimeout = o.CommandTimeout
	}
	if o.PregreetTTL <= 0 {
		o.PregreetTTL = 24 * time.Hour
	}
	if o.LookupTimeout <= 0 {
		o.LookupTimeout = 5 * time.Second
	}
	if o.SoftErrors <= 0 {
		o.SoftErrors = 10
	}
	if o.HardErrors <= 0 {
		o.HardErrors = 20
	}
	switch {
	case o.ErrorSleep == 0:
		o.ErrorSleep = time.Second
	case o.ErrorSleep < 0:
		o.ErrorSleep = 0 // no wait
	}
	if o.JunkCommands <= 0 {
		o.JunkCommands = 100
	}
	if o.SessionTime <= 0 {
		o.SessionTime = 30 * time.Minute
	}
	if o.SessionMessages <= 0 {
		o.SessionMessages = 1000
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Authenticator is the SASL side of a listener (package auth).
//
// Start begins an AUTH exchange of mechanism mech for the session pc and
// returns its server; every failure it decides (wrong password, lockout,
// unknown mechanism) is an *smtp.SMTPError, sent as it is (a 421 closes
// the connection). On success it calls done with the login before the 235
// goes out. Mechanisms are the names offered in EHLO.
type Authenticator interface {
	Mechanisms() []string
	Start(pc *policy.Conn, mech string, done func(login string)) (sasl.Server, error)
}

// Server is one SMTP listener, of any kind.
type Server struct {
	o     Options
	queue Queue
	// chain is the policy chain new sessions take (SetChain swaps it
	// live); retired counts the refusals of chains swapped out.
	chain     atomic.Pointer[policy.Chain]
	retiredMu sync.Mutex
	retired   map[string]uint64
	log       *slog.Logger
	smtp      *smtp.Server
	gate      *gate
	pregreet  *pregreet
	refusals  *refusalLog
	counts    gateCounts
	// draining: new connections get 421 4.3.2 (Drain); idle gets a
	// signal when the last open session closes while draining.
	draining atomic.Bool
	idle     chan struct{}
	// copyBufs: *[]byte, the buffer copying message data from go-smtp's
	// reader into the body filter (session.go Data), one per message in
	// flight instead of one allocation per message.
	copyBufs sync.Pool
}

// New builds the listener o, handing messages to q and deciding with
// chain (nil: an empty chain, which accepts every recipient: only tests
// want that).
func New(o Options, q Queue, chain *policy.Chain) *Server {
	o.defaults()
	if chain == nil {
		chain = &policy.Chain{}
	}
	s := &Server{o: o, queue: q, log: o.Logger.With("listener", o.Name), idle: make(chan struct{}, 1),
		retired: map[string]uint64{}}
	s.chain.Store(chain)
	s.pregreet, s.refusals = newPregreet(s), newRefusalLog(s)
	srv := smtp.NewServer(s)
	srv.Addr = o.Address
	srv.Domain = o.Hostname
	srv.MaxMessageBytes = o.MessageSize
	srv.MaxRecipients = o.Recipients
	// Command lines: 2048 octets, Postfix's line_length_limit; this also
	// bounds what a session buffers. Message data has no line limit (lines
	// longer than RFC 5321's 1000 octets exist in real mail and Postfix
	// accepts them), only the message size limit.
	srv.MaxCommandLineLength = 2048
	srv.ErrorLimits = smtp.ErrorLimits{Soft: o.SoftErrors, Hard: o.HardErrors, Sleep: o.ErrorSleep, Junk: o.JunkCommands}
	srv.ReadTimeout = o.CommandTimeout
	srv.WriteTimeout = o.CommandTimeout
	srv.EnableSMTPUTF8 = true
	srv.EnableDSN = true // RFC 3461: NOTIFY, ORCPT, RET, ENVID kept for our reports
	srv.TLSConfig = o.TLS
	srv.ErrorLog = errorLog{s.log}
	s.smtp = srv
	return s
}

// Chain is the listener's policy chain.
func (s *Server) Chain() *policy.Chain { return s.chain.Load() }

// SetChain makes ch the chain of the sessions that start from now on (a
// configuration reload); sessions in flight finish with the chain they
// started with. Refusal counts go on (Refusals adds the old chain's).
func (s *Server) SetChain(ch *policy.Chain) {
	if ch == nil {
		ch = &policy.Chain{}
	}
	old := s.chain.Swap(ch)
	s.retiredMu.Lock()
	defer s.retiredMu.Unlock()
	for k, n := range old.Refusals() {
		s.retired[k] += n
	}
}

// Serve accepts connections on ln until Shutdown or Close.
func (s *Server) Serve(ln net.Listener) error {
	s.gate = newGate(s, ln)
	go s.gate.loop()
	go s.janitor()
	err := s.smtp.Serve(s.gate)
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Listen opens the listener's socket. Accepted connections get no TCP
// keepalive (Go's default would set four socket options on each, at every
// connection): an SMTP session is bounded by its command timeout, which
// finds a vanished client, as Postfix's smtpd does without keepalive.
func (s *Server) Listen() (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", s.o.Address)
	if err != nil {
		return nil, fmt.Errorf("smtpd: listen %s: %w", s.o.Address, err)
	}
	return ln, nil
}

// Drain, when on, answers every new connection with 421 4.3.2 and closes
// it (sessions in flight go on), so that sending MTAs use the other MX of
// the pair while this one's queue empties ("mxedge drain"); off accepts
// again.
func (s *Server) Drain(on bool) {
	if s.draining.Swap(on) != on {
		s.log.Info("listener draining", "draining", on)
	}
}

// Draining reports whether Drain is on.
func (s *Server) Draining() bool { return s.draining.Load() }

// Shutdown drains (new connections get 421 4.3.2) and waits for the
// sessions in flight until ctx is done; then it closes the listener and
// the remaining connections. A session cut off mid-DATA got no 250, so
// its message was never accepted.
func (s *Server) Shutdown(ctx context.Context) error {
	s.Drain(true)
	for s.counts.open.Load() > 0 {
		select {
		case <-s.idle:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	err := s.smtp.Shutdown(ctx)
	if err != nil && !errors.Is(err, smtp.ErrServerClosed) {
		_ = s.smtp.Close()
	}
	return nil
}

// Close closes the listener and every session at once.
func (s *Server) Close() error {
	err := s.smtp.Close()
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// janitor forgets expired pregreet passes and logs the counts of
// refusal lines not logged, every minute until the gate ends.
func (s *Server) janitor() {
	t := time.NewTicker(refusalUnit)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.pregreet.sweep()
			s.refusals.sweep()
		case <-s.gate.done:
			return
		}
	}
}

type errorLog struct{ l *slog.Logger }

func (e errorLog) Printf(format string, v ...any) { e.l.Warn(fmt.Sprintf(format, v...)) }
func (e errorLog) Println(v ...any)               { e.l.Warn(fmt.Sprint(v...)) }
