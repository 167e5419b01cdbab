// Package smtptest is a scriptable fake SMTP server for tests: the far end
// of the network (a mailbox backend, a remote MX) on a 127.0.0.x address.
// It is written by hand on purpose, not with go-smtp, so that tests see the
// exact bytes that reached it: the raw DATA stream as sent on the wire
// (dot-stuffing included), and every command line.
package smtptest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// Message is one message as the server received it.
type Message struct {
	From  string   // MAIL FROM argument, as sent (e.g. "<a@b> SIZE=12")
	Rcpts []string // RCPT TO arguments the server accepted, as sent
	Raw   []byte   // DATA bytes as on the wire, up to and including "\r\n.\r\n"
}

// Body returns the message with transparency undone (RFC 5321 section
// 4.5.2) and the final ".\r\n" removed.
func (m Message) Body() []byte {
	raw := bytes.TrimSuffix(m.Raw, []byte(".\r\n"))
	lines := bytes.SplitAfter(raw, []byte("\r\n"))
	var out bytes.Buffer
	for _, l := range lines {
		out.Write(bytes.TrimPrefix(l, []byte(".")))
	}
	return out.Bytes()
}

// Server is a fake SMTP server.
type Server struct {
	// Users, if not nil, is the set of local parts (any domain) that exist;
	// other recipients get 550 5.1.1.
	Users map[string]bool
	// DataReply, if set, answers the final "." instead of 250.
	DataReply string

	ln      net.Listener
	mu      sync.Mutex
	msgs    []Message
	cmds    []string
	conns   int
	arrived chan struct{}
	closed  chan struct{}
	wg      sync.WaitGroup
}

// Start listens on addr ("127.0.0.3:0" for any port).
func Start(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln, arrived: make(chan struct{}, 1<<16), closed: make(chan struct{})}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the "host:port" the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server and waits for its sessions.
func (s *Server) Close() {
	close(s.closed)
	s.ln.Close()
	s.wg.Wait()
}

// Messages returns what has arrived so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Commands returns every command line received, in order.
func (s *Server) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.cmds...)
}

// Conns returns the number of connections accepted.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// WaitMessages waits until at least n messages arrived or timeout passed,
// and returns them.
func (s *Server) WaitMessages(n int, timeout time.Duration) ([]Message, error) {
	deadline := time.After(timeout)
	for {
		if m := s.Messages(); len(m) >= n {
			return m, nil
		}
		select {
		case <-s.arrived:
		case <-deadline:
			m := s.Messages()
			return m, fmt.Errorf("smtptest: %d of %d messages arrived within %v", len(m), n, timeout)
		}
	}
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns++
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			go func() { <-s.closed; c.Close() }()
			s.serve(c)
		}()
	}
}

func (s *Server) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	say := func(line string) bool {
		w.WriteString(line + "\r\n")
		return w.Flush() == nil
	}
	if !say("220 fake.test ESMTP smtptest") {
		return
	}
	var cur Message
	for {
		c.SetReadDeadline(time.Now().Add(time.Minute))
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		s.mu.Lock()
		s.cmds = append(s.cmds, line)
		s.mu.Unlock()
		verb := strings.ToUpper(line)
		switch {
		case strings.HasPrefix(verb, "EHLO"):
			say("250-fake.test")
			say("250-PIPELINING")
			say("250-8BITMIME")
			say("250-SMTPUTF8")
			say("250 SIZE 104857600")
		case strings.HasPrefix(verb, "HELO"):
			say("250 fake.test")
		case strings.HasPrefix(verb, "MAIL FROM:"):
			cur = Message{From: line[len("MAIL FROM:"):]}
			say("250 2.1.0 Ok")
		case strings.HasPrefix(verb, "RCPT TO:"):
			arg := line[len("RCPT TO:"):]
			if s.Users != nil && !s.Users[localPart(arg)] {
				say("550 5.1.1 <" + strings.Trim(arg, "<>") + ">: Recipient address rejected: User unknown")
				continue
			}
			cur.Rcpts = append(cur.Rcpts, arg)
			say("250 2.1.5 Ok")
		case verb == "DATA":
			if len(cur.Rcpts) == 0 {
				say("554 5.5.1 Error: no valid recipients")
				continue
			}
			say("354 End data with <CR><LF>.<CR><LF>")
			var raw bytes.Buffer
			for {
				l, err := r.ReadBytes('\n')
				raw.Write(l)
				if err != nil {
					return
				}
				if bytes.Equal(l, []byte(".\r\n")) && (raw.Len() == 3 || bytes.HasSuffix(raw.Bytes()[:raw.Len()-3], []byte("\r\n"))) {
					break
				}
			}
			if s.DataReply != "" {
				say(s.DataReply)
				continue
			}
			cur.Raw = raw.Bytes()
			s.mu.Lock()
			s.msgs = append(s.msgs, cur)
			s.mu.Unlock()
			select {
			case s.arrived <- struct{}{}:
			default:
			}
			say("250 2.0.0 Ok: queued as FAKE")
		case verb == "RSET":
			cur = Message{}
			say("250 2.0.0 Ok")
		case verb == "NOOP":
			say("250 2.0.0 Ok")
		case verb == "QUIT":
			say("221 2.0.0 Bye")
			return
		default:
			say("502 5.5.2 Error: command not recognized")
		}
	}
}

// localPart extracts the lowercase local part from "<user@domain> PARAMS".
func localPart(arg string) string {
	arg, _, _ = strings.Cut(arg, " ")
	arg = strings.Trim(arg, "<>")
	if at := strings.LastIndexByte(arg, '@'); at >= 0 {
		arg = arg[:at]
	}
	return strings.ToLower(arg)
}
