// Package milterclient is mxedge's side of the milter protocol (Sendmail's
// mail filter API, as Postfix speaks it: milter-protocol.txt of
// github.com/emersion/go-milter), shared by the pre-queue check of the MX
// listeners (policy.Milter) and the post-queue filter of submitted mail
// (submission.Milter): the address notation, the connection with its
// timeouts, the replay of the SMTP session with the macros rspamd and
// clamav-milter read, the body in chunks of at most 65535 bytes, and the
// helpers that turn a filter's header fields into stored ones.
//
// The timeouts are Postfix's: milter_connect_timeout 30 s,
// milter_command_timeout 30 s for each command before the message content,
// milter_content_timeout 300 s for each content command (the header, a
// body chunk, end of body: the filter scans then). A Session whose time is
// up, or whose ctx ended, is closed, so that every call on it fails at
// once with an error.
package milterclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-milter"
)

// Defaults of the timeouts (Postfix's).
const (
	DefaultConnectTimeout = 30 * time.Second
	DefaultCommandTimeout = 30 * time.Second
	DefaultContentTimeout = 300 * time.Second
)

// Config is one filter.
type Config struct {
	Name           string
	Network        string // "tcp" or "unix" (ParseAddress)
	Address        string
	ConnectTimeout time.Duration // [30s]
	CommandTimeout time.Duration // per command [30s]
	ContentTimeout time.Duration // per content command [300s]
	Hostname       string        // macro j
}

// ParseAddress splits "inet:host:port", "inet6:[addr]:port" or
// "unix:/path" (Postfix's notation) into network and address.
func ParseAddress(s string) (network, address string, err error) {
	kind, rest, ok := strings.Cut(s, ":")
	switch {
	case ok && kind == "unix" && strings.HasPrefix(rest, "/"):
		return "unix", rest, nil
	case ok && (kind == "inet" || kind == "inet6"):
		if _, _, err := net.SplitHostPort(rest); err != nil {
			return "", "", fmt.Errorf("%q: %v", s, err)
		}
		return "tcp", rest, nil
	}
	return "", "", fmt.Errorf(`%q: want "inet:host:port", "inet6:[addr]:port" or "unix:/path"`, s)
}

// Envelope is what the filter is told of the session and transaction.
type Envelope struct {
	QueueID    string // macro i
	ClientIP   string // {client_addr}
	ClientName string // {client_name}; "" → "[ip]"
	Helo       string // {helo} and the HELO command
	AuthUser   string // {auth_authen}
	TLSVersion string // {tls_version}: "TLSv1.3", "" for plaintext
	From       string // {mail_addr}, wire form without <>
	Rcpts      []string
}

// Session is one message's conversation with a filter. It is used by one
// goroutine at a time.
type Session struct {
	s    *milter.ClientSession
	id   string
	stop func() bool // of the AfterFunc that closes the session when ctx ends
}

// Open connects to the filter, negotiates actions (what the caller can
// honour) and replays connect, HELO, MAIL and each RCPT with their macros.
// A verdict other than continue before the header is returned as act (the
// session is then closed); otherwise act is nil and the session waits for
// Header. ctx bounds the whole session besides the content timeout.
func Open(ctx context.Context, c Config, actions milter.OptAction, e Envelope) (*Session, *milter.Action, error) {
	// go-milter has one read and write timeout: the content timeout,
	// which bounds each content command (header, body chunk, end of
	// body); the other commands are bounded by the command timeout below.
	cmd, content := orDefault(c.CommandTimeout, DefaultCommandTimeout), orDefault(c.ContentTimeout, DefaultContentTimeout)
	dl := &dialer{d: net.Dialer{Timeout: orDefault(c.ConnectTimeout, DefaultConnectTimeout)}}
	session := func(actions milter.OptAction) (*milter.ClientSession, error) {
		dl.reset()
		t := time.AfterFunc(cmd, dl.close) // the negotiation is a command
		defer t.Stop()
		ms, err := milter.NewClientWithOptions(c.Network, c.Address, milter.ClientOptions{
			Dialer:       dl,
			ReadTimeout:  max(cmd, content),
			WriteTimeout: max(cmd, content),
			ActionMask:   actions,
		}).Session()
		if err != nil {
			dl.close() // go-milter leaves the connection open when negotiation fails
		}
		return ms, err
	}
	ms, err := session(actions)
	if errors.Is(err, milter.ErrUnsupportedMilterVersion) && actions&0x3f != actions {
		// A version 2 filter (go-milter's server): without the actions of
		// later versions (change sender), as Postfix downgrades.
		ms, err = session(actions & 0x3f)
	}
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, dl.close)
	s := &Session{s: ms, id: e.QueueID, stop: stop}
	// within runs a command of the session, closing it (so that the call
	// fails) when the command timeout is up.
	within := func(f func() (*milter.Action, error)) (*milter.Action, error) {
		t := time.AfterFunc(cmd, dl.close)
		defer t.Stop()
		return f()
	}

	ip, _ := netip.ParseAddr(e.ClientIP)
	name := e.ClientName
	if name == "" {
		name = "[" + e.ClientIP + "]"
	}
	family := milter.FamilyInet
	if ip.Is6() && !ip.Is4In6() {
		family = milter.FamilyInet6
	}
	steps := []func() (*milter.Action, error){
		func() (*milter.Action, error) {
			if err := ms.Macros(milter.CodeConn, "j", c.Hostname, "{client_addr}", e.ClientIP, "{client_name}", name,
				"{daemon_name}", "mxedge", "{auth_authen}", e.AuthUser, "{tls_version}", e.TLSVersion); err != nil {
				return nil, err
			}
			return ms.Conn(name, family, 0, ip.Unmap().String())
		},
		func() (*milter.Action, error) {
			if err := ms.Macros(milter.CodeHelo, "{helo}", e.Helo, "{tls_version}", e.TLSVersion); err != nil {
				return nil, err
			}
			return ms.Helo(e.Helo)
		},
		func() (*milter.Action, error) {
			if err := ms.Macros(milter.CodeMail, "i", e.QueueID, "{mail_addr}", e.From, "{auth_authen}", e.AuthUser); err != nil {
				return nil, err
			}
			return ms.Mail("<"+e.From+">", nil)
		},
	}
	for _, rc := range e.Rcpts {
		steps = append(steps, func() (*milter.Action, error) {
			if err := ms.Macros(milter.CodeRcpt, "{rcpt_addr}", rc); err != nil {
				return nil, err
			}
			return ms.Rcpt("<"+rc+">", nil)
		})
	}
	for _, step := range steps {
		act, err := within(step)
		if err != nil {
			s.Close()
			return nil, nil, err
		}
		if act.Code != milter.ActContinue {
			s.Close()
			return nil, act, nil
		}
	}
	return s, nil, nil
}

// Header sends the header fields as received, then end of header. Each
// content command (Header, Body, End) waits at most the content timeout
// for the filter, as Postfix's milter_content_timeout.
func (s *Session) Header(hdr textproto.Header) (*milter.Action, error) {
	if err := s.s.Macros(milter.CodeHeader, "i", s.id); err != nil {
		return nil, err
	}
	return s.s.Header(hdr)
}

// MaxChunk is the largest body chunk of the protocol.
const MaxChunk = milter.MaxBodyChunk

// Body sends one body chunk of at most MaxChunk bytes.
func (s *Session) Body(p []byte) (*milter.Action, error) { return s.s.BodyChunk(p) }

// End sends end of body and returns the filter's modifications and
// verdict.
func (s *Session) End() ([]milter.ModifyAction, *milter.Action, error) { return s.s.End() }

// Close ends the session (aborting a transaction in progress).
func (s *Session) Close() {
	s.stop()
	_ = s.s.Close()
}

// dialer keeps the connection, so that a timeout can close it under
// go-milter's feet (its calls then fail at once).
type dialer struct {
	d      net.Dialer
	mu     sync.Mutex
	c      net.Conn
	closed bool
}

func (d *dialer) Dial(network, address string) (net.Conn, error) {
	c, err := d.d.Dial(network, address)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.c = c
	if d.closed {
		c.Close()
	}
	return c, nil
}

func (d *dialer) reset() {
	d.mu.Lock()
	d.c, d.closed = nil, false
	d.mu.Unlock()
}

func (d *dialer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.c != nil {
		d.c.Close()
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// ValidField reports whether a filter's header field can be stored as is:
// a name without space or colon, printable ASCII.
func ValidField(name, value string) bool {
	if name == "" || strings.ContainsAny(name, " \t:\r\n") {
		return false
	}
	for _, c := range []byte(name + value) {
		if c >= 0x7f || c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

// Field is the stored form of a filter's header field: "Name: value" with
// the value's continuation lines (separated by LF or CRLF, as milters send
// them) ending in CRLF, starting with a tab when the filter did not indent
// them, and a final CRLF.
func Field(name, value string) string {
	value = strings.ReplaceAll(value, "\r\n", "\n")
	lines := strings.Split(value, "\n")
	for i := 1; i < len(lines); i++ {
		if !strings.HasPrefix(lines[i], " ") && !strings.HasPrefix(lines[i], "\t") {
			lines[i] = "\t" + lines[i]
		}
	}
	return name + ": " + strings.Join(lines, "\r\n") + "\r\n"
}

// Printable replaces control and 8-bit bytes by spaces (a filter's text
// for a reply or log line).
func Printable(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c >= 0x7f {
			b[i] = ' '
		}
	}
	return strings.TrimSpace(string(b))
}
