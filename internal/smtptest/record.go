package smtptest

import (
	"bytes"
	"fmt"
	"strings"
	"time"
)

// Message is one message the server accepted (a 2xx reply to its final
// ".").
type Message struct {
	From  string   // MAIL FROM argument, as sent (e.g. "<a@b> SIZE=12")
	Rcpts []string // RCPT TO arguments the server accepted, as sent
	Raw   []byte   // DATA bytes as on the wire, up to and including "\r\n.\r\n"
}

// Body returns the message with transparency undone (RFC 5321 section
// 4.5.2) and the final ".\r\n" removed.
func (m Message) Body() []byte {
	raw := bytes.TrimSuffix(m.Raw, dotCRLF)
	var out bytes.Buffer
	for _, l := range bytes.SplitAfter(raw, crlf) {
		out.Write(bytes.TrimPrefix(l, []byte(".")))
	}
	return out.Bytes()
}

// Line is one line of the dialogue, as the server saw it: a command line
// of the client or a line of the server's reply. Message data is not in
// it (see Messages), nor what a Hook wrote with Session.Write.
type Line struct {
	Conn   int    // the connection, numbered from 1 in the order accepted
	Client bool   // sent by the client; else by the server
	TLS    bool   // sent over TLS (after STARTTLS)
	Text   string // without the line ending
}

func (s *Server) record(conn int, tls, client bool, texts ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range texts {
		s.lines = append(s.lines, Line{Conn: conn, Client: client, TLS: tls, Text: t})
	}
	s.notifyLocked()
}

func (s *Server) addMessage(m Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
	s.notifyLocked()
}

// Transcript returns the dialogue of every connection so far, in the order
// the lines were sent; a connection's own is the Lines with its Conn.
func (s *Server) Transcript() []Line {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Line(nil), s.lines...)
}

// Commands returns every command line received, of all connections, in
// order.
func (s *Server) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var cmds []string
	for _, l := range s.lines {
		if l.Client {
			cmds = append(cmds, l.Text)
		}
	}
	return cmds
}

// Count returns how many command lines received start with prefix (case
// counts).
func (s *Server) Count(prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.countLocked(prefix)
}

func (s *Server) countLocked(prefix string) int {
	n := 0
	for _, l := range s.lines {
		if l.Client && strings.HasPrefix(l.Text, prefix) {
			n++
		}
	}
	return n
}

// WaitCount waits until at least n command lines starting with prefix
// were received, or timeout passed.
func (s *Server) WaitCount(prefix string, n int, timeout time.Duration) error {
	var got int
	if !s.waitFor(timeout, func() bool { got = s.countLocked(prefix); return got >= n }) {
		return fmt.Errorf("smtptest: %d of %d commands %q within %v", got, n, prefix, timeout)
	}
	return nil
}

// Messages returns the messages accepted so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// WaitMessages waits until at least n messages were accepted or timeout
// passed, and returns them.
func (s *Server) WaitMessages(n int, timeout time.Duration) ([]Message, error) {
	var got []Message
	if !s.waitFor(timeout, func() bool { got = append([]Message(nil), s.msgs...); return len(got) >= n }) {
		return got, fmt.Errorf("smtptest: %d of %d messages arrived within %v", len(got), n, timeout)
	}
	return got, nil
}
