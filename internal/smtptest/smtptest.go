// Package smtptest is the scriptable fake SMTP server of mxedge's tests:
// the far end of the network (a mailbox backend, a remote MX, a smarthost)
// on a 127.0.0.x address. It is written by hand on purpose, not with
// go-smtp, so that tests see the exact bytes that reached it: the raw DATA
// stream as sent on the wire (dot-stuffing included) and every command
// line.
//
// A Server started with no configuration is a mailbox that accepts every
// recipient and every message. Tests change that at any time, also while
// clients are connected (a change applies from the next command):
//
//   - SetUsers and CatchAll decide which recipients exist;
//   - On replaces the reply at one Stage (greeting, EHLO, STARTTLS, MAIL,
//     RCPT, DATA, the final dot) with a Hook, for instance Reply("452 ...");
//     a Hook may also hang up, or write raw bytes through its Session;
//   - Hold makes sessions wait at a Stage until the test releases them;
//   - SetTLS offers STARTTLS, SetAuth offers AUTH PLAIN, SetExtensions
//     replaces the EHLO keywords;
//   - CloseIdle closes the open connections (the far end timing out);
//   - SetHandler hands new connections to a function of the test instead,
//     for bytes no SMTP session would send.
//
// What arrived is recorded: Messages (accepted messages, raw), Commands and
// Count (command lines), Transcript (both directions, per connection), and
// Conns and Remotes (connections, in the order accepted, counting those
// made but not yet accepted: see Conns). WaitMessages, WaitCount,
// WaitConns and WaitHeld wait for events instead of sleeping.
package smtptest

import (
	"crypto/tls"
	"net"
	"sync"
)

// Stage is a point of a session at which a test can replace the server's
// reply (On) or hold the session (Hold).
type Stage int

const (
	// Greeting is the banner, "220 fake.test ESMTP smtptest". A reply
	// other than 220 ends the session after it.
	Greeting Stage = iota
	// EHLO is the reply to EHLO, all of its lines.
	EHLO
	// StartTLS is the reply to STARTTLS (when SetTLS offers it). A reply
	// other than 220 keeps the session in plaintext.
	StartTLS
	// Mail is the reply to MAIL FROM. A 2xx reply starts a transaction.
	Mail
	// Rcpt is the reply to RCPT TO; by default 250, or 550 5.1.1 for a
	// recipient SetUsers does not know. A 2xx reply adds the recipient.
	Rcpt
	// Data is the reply to DATA. A reply other than 354 reads no message.
	Data
	// Dot is the reply to the final "." of a message. A 2xx reply records
	// the message in Messages.
	Dot

	numStages
)

// A Hook decides the reply at a Stage. It gets the session and the
// client's command line ("" at Greeting and Dot) and returns the reply to
// send: "" for the server's own, Hangup to close the connection without a
// reply, else the reply, lines separated by CRLF (the last CRLF is added).
// A Hook runs on the session's goroutine; one that blocks holds that
// session only, and must return by the time the test ends (Close waits for
// it).
type Hook func(s *Session, line string) string

// Hangup, returned by a Hook, closes the connection without a reply.
const Hangup = "\x00hangup"

// Reply returns a Hook that always answers reply.
func Reply(reply string) Hook {
	return func(*Session, string) string { return reply }
}

// defaultExtensions are the EHLO keywords SetExtensions replaces.
func defaultExtensions() []string {
	return []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "SIZE 104857600"}
}

// hostname is the server's name in the greeting and EHLO.
const hostname = "fake.test"

// config is what the setters change; a session reads a copy per command.
// Maps and slices in it are replaced, never changed in place.
type config struct {
	users   map[string]bool // nil: every recipient exists
	ext     []string
	hooks   [numStages]Hook
	tls     *tls.Config
	auth    func(user, pass string) bool
	handler func(c net.Conn)
}

// Server is a fake SMTP server. Its methods are safe for concurrent use.
type Server struct {
	ln        net.Listener
	closed    chan struct{} // closed by Close
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu      sync.Mutex
	cfg     config
	gates   [numStages]chan struct{} // Hold: closed on release
	held    int                      // sessions waiting at a gate
	done    bool                     // Close was called
	changed chan struct{}            // closed and replaced on every event
	remotes []string                 // client address per connection, in accept order
	markers map[string]bool          // marker connections accepted, not yet seen by flush
	open    map[*Session]bool
	lines   []Line
	msgs    []Message
}

// Start listens on addr ("127.0.0.3:0" for any port) and serves SMTP
// until Close.
func Start(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		ln:      ln,
		closed:  make(chan struct{}),
		cfg:     config{ext: defaultExtensions()},
		changed: make(chan struct{}),
		markers: map[string]bool{},
		open:    map[*Session]bool{},
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the "host:port" the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server: it stops listening, releases every Hold, closes
// every connection and waits for the sessions to end. Calling it again
// does nothing.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.done = true
		s.notifyLocked()
		open := s.openSessionsLocked()
		s.mu.Unlock()
		close(s.closed)
		s.ln.Close()
		for _, ss := range open {
			ss.drop("")
		}
		s.wg.Wait()
	})
}

// SetUsers makes the local parts users (of any domain, compared exactly,
// case included) the only recipients that exist; RCPT of any other gets
// 550 5.1.1, as Postfix words it.
func (s *Server) SetUsers(users ...string) {
	m := make(map[string]bool, len(users))
	for _, u := range users {
		m[u] = true
	}
	s.mu.Lock()
	s.cfg.users = m
	s.mu.Unlock()
}

// CatchAll makes every recipient exist (the default).
func (s *Server) CatchAll() {
	s.mu.Lock()
	s.cfg.users = nil
	s.mu.Unlock()
}

// SetExtensions replaces the keywords EHLO announces after the host name;
// the default is PIPELINING, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES and
// SIZE 104857600. STARTTLS and AUTH PLAIN are added as SetTLS and SetAuth
// say.
func (s *Server) SetExtensions(ext ...string) {
	ext = append([]string(nil), ext...)
	s.mu.Lock()
	s.cfg.ext = ext
	s.mu.Unlock()
}

// On makes h decide the reply at stage; nil restores the server's own.
func (s *Server) On(stage Stage, h Hook) {
	s.mu.Lock()
	s.cfg.hooks[stage] = h
	s.mu.Unlock()
}

// SetTLS offers STARTTLS with c (nil: not offered, the default). After the
// handshake the session starts over (RFC 3207 section 4.2) and its lines
// are recorded with TLS set.
func (s *Server) SetTLS(c *tls.Config) {
	s.mu.Lock()
	s.cfg.tls = c
	s.mu.Unlock()
}

// SetAuth offers AUTH PLAIN (RFC 4616), after STARTTLS when SetTLS offers
// that, and accepts the credentials for which check returns true; nil: not
// offered, the default.
func (s *Server) SetAuth(check func(user, pass string) bool) {
	s.mu.Lock()
	s.cfg.auth = check
	s.mu.Unlock()
}

// SetHandler hands every connection accepted from now on to h instead of
// an SMTP session: the escape hatch for a test that scripts the bytes
// itself. The connection is counted (Conns, Remotes) but nothing on it is
// recorded; it is closed when h returns, and by CloseIdle and Close. nil
// restores SMTP.
func (s *Server) SetHandler(h func(c net.Conn)) {
	s.mu.Lock()
	s.cfg.handler = h
	s.mu.Unlock()
}

// conf returns the current configuration.
func (s *Server) conf() config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// notifyLocked wakes every waiter. s.mu must be held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}
