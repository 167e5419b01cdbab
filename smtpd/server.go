// Package smtpd is mxedge's MX listener: the port 25 service that accepts
// mail for the relay domains and applies the pre-queue policy, answering
// every refusal inside the SMTP session (never accept-then-bounce).
//
// What it implements:
//   - RFC 5321 sections 3.3 and 4.1.1: the MAIL/RCPT/DATA transaction, via
//     github.com/emersion/go-smtp; no AUTH on this listener.
//   - Relay control (Postfix reject_unauth_destination): a recipient is
//     accepted only if its domain is a relay domain and its local part
//     carries no sender-specified routing (%, !, @). See address.go.
//   - RFC 1870 SIZE at MAIL and on the stream; a recipient limit.
//   - RFC 5321 section 4.4: a Received header on every message.
//   - RFC 5321 section 4.5.3.2: 5 minutes per command, a data block
//     timeout per read during DATA (conn.go).
//   - RFC 5321 section 2.3.8: bare CR / bare LF policy against SMTP
//     smuggling (bodyfilter.go).
//   - A hop count limit against mail loops (Postfix hopcount_limit).
//   - Recipient verification (Postfix reject_unverified_recipient): after
//     the relay check, a Verifier (package verifycache) says whether the
//     recipient exists; never for senders.
//
// Replies are decided in replies.go only. The listener hands the message to
// the queue (Queue); it answers 250 only after the queue's Commit returned,
// that is after the message is durable.
package smtpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxedge/mxedge/config"
	"github.com/mxedge/mxedge/queue"
	"github.com/mxedge/mxedge/verifycache"
)

// Queue is where accepted messages go. NewMessage starts a message; the
// returned Incoming must be ended with Commit (durable on nil error) or
// Abort. See queue.Incoming for the full contract.
type Queue interface {
	NewMessage(env queue.Envelope) (*queue.Incoming, error)
}

// Verifier decides whether a recipient of a relay domain exists;
// *verifycache.Verifier implements it. Verify gets the recipient in wire
// form (as checkRcpt returns it) and the client's IP address, and returns
// within its own bound (verify.inline_wait) or when ctx ends. It never
// answers Reject for an internal error: that is a Defer with Err set.
// The listener applies the verdict's Delay before it answers.
//
// Example: a verifier that knows only postmaster:
//
//	type onlyPostmaster struct{}
//
//	func (onlyPostmaster) Verify(_ context.Context, _, addr string) verifycache.Verdict {
//		if strings.HasPrefix(addr, "postmaster@") {
//			return verifycache.Verdict{Action: verifycache.Accept}
//		}
//		return verifycache.Verdict{Action: verifycache.Reject}
//	}
type Verifier interface {
	Verify(ctx context.Context, clientIP, addr string) verifycache.Verdict
}

// Option configures a Server beyond its configuration.
type Option func(*Server)

// WithVerifier makes the listener verify recipients with v (MX listeners
// only: submission never verifies).
func WithVerifier(v Verifier) Option { return func(s *Server) { s.verifier = v } }

// Server is one MX listener.
type Server struct {
	cfg       *config.Config
	lc        config.Listener
	queue     Queue
	log       *slog.Logger
	relay     map[string]bool
	normalize bool
	smtp      *smtp.Server
	now       func() time.Time
	verifier  Verifier // nil: recipients are not verified
}

// New builds the MX listener lc of cfg, handing messages to q.
func New(cfg *config.Config, lc config.Listener, q Queue, log *slog.Logger, opts ...Option) *Server {
	s := &Server{
		cfg:       cfg,
		lc:        lc,
		queue:     q,
		log:       log.With("listener", lc.Name),
		relay:     make(map[string]bool, len(cfg.RelayDomains)),
		normalize: lc.BareLineEndings == "normalize",
		now:       time.Now,
	}
	for _, d := range cfg.RelayDomains {
		s.relay[d] = true
	}
	for _, o := range opts {
		o(s)
	}
	srv := smtp.NewServer(s)
	srv.Addr = lc.Address
	srv.Domain = cfg.Hostname
	srv.MaxMessageBytes = int64(cfg.Limits.MessageSize)
	srv.MaxRecipients = cfg.Limits.Recipients
	// Command lines: 2048 octets, Postfix's line_length_limit; this also
	// bounds what a session buffers. Message data has no line limit (lines
	// longer than RFC 5321's 1000 octets exist in real mail and Postfix
	// accepts them), only the message size limit.
	srv.MaxCommandLineLength = 2048
	srv.ReadTimeout = cfg.Timeouts.Command.D()
	srv.WriteTimeout = cfg.Timeouts.Command.D()
	srv.EnableSMTPUTF8 = true
	srv.EnableDSN = true // RFC 3461: NOTIFY, ORCPT, RET, ENVID kept for our reports
	srv.ErrorLog = errorLog{s.log}
	s.smtp = srv
	return s
}

// Serve accepts connections on ln until Shutdown or Close.
func (s *Server) Serve(ln net.Listener) error {
	err := s.smtp.Serve(dataListener{Listener: ln, dataTimeout: s.cfg.Timeouts.DataBlock.D()})
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Listen opens the listener's socket.
func (s *Server) Listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", s.lc.Address)
	if err != nil {
		return nil, fmt.Errorf("smtpd: listen %s: %w", s.lc.Address, err)
	}
	return ln, nil
}

// Shutdown stops accepting connections and waits for sessions in flight
// until ctx is done; then it closes the remaining connections. A session cut
// off mid-DATA got no 250, so its message was never accepted.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.smtp.Shutdown(ctx)
	if err != nil && !errors.Is(err, smtp.ErrServerClosed) {
		_ = s.smtp.Close()
	}
	return nil
}

// NewSession implements smtp.Backend.
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	ip := ""
	if a, ok := c.Conn().RemoteAddr().(*net.TCPAddr); ok {
		ip = a.IP.String()
	}
	return &session{srv: s, conn: c, ip: ip, dc: findDataConn(c.Conn())}, nil
}

type errorLog struct{ l *slog.Logger }

func (e errorLog) Printf(format string, v ...any) { e.l.Warn(fmt.Sprintf(format, v...)) }
func (e errorLog) Println(v ...any)               { e.l.Warn(fmt.Sprint(v...)) }
