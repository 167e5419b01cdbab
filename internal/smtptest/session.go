package smtptest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"net"
	"strings"
	"sync"
	"time"
)

// Timeouts of a session: the client has readTimeout for each line, the
// server writeTimeout for each reply, and the TLS handshake
// handshakeTimeout.
const (
	readTimeout      = time.Minute
	writeTimeout     = 10 * time.Second
	handshakeTimeout = 10 * time.Second
)

// A Session is one connection, as a Hook sees it.
type Session struct {
	Conn   int    // the connection's number, from 1 in the order accepted
	Remote string // the client's address
	TLS    bool   // STARTTLS succeeded
	// Msgs is the number of messages received on this connection; at Dot
	// it counts the one being answered (1 for the first).
	Msgs int

	srv      *Server
	raw      net.Conn
	handler  func(c net.Conn) // SetHandler's, when accepted; nothing is recorded
	dropped  chan struct{}    // closed by drop
	dropOnce sync.Once
	ended    chan struct{} // closed when the session is over

	wmu sync.Mutex // for w, and TLS outside the session's goroutine
	w   net.Conn   // raw, or the TLS connection over it
}

// Write sends p to the client as it is, for a Hook that must script the
// bytes exactly (what it writes is not in the Transcript).
func (ss *Session) Write(p []byte) (int, error) {
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	ss.w.SetWriteDeadline(time.Now().Add(writeTimeout))
	return ss.w.Write(p)
}

// say sends reply (lines separated by CRLF) and records it.
func (ss *Session) say(reply string) bool {
	ss.srv.record(ss.Conn, ss.TLS, false, strings.Split(reply, "\r\n")...)
	_, err := ss.Write([]byte(reply + "\r\n"))
	return err == nil
}

// drop writes farewell (if any) and closes the connection; a session at a
// Hold goes on, and ends. It is called from outside the session.
func (ss *Session) drop(farewell string) {
	ss.dropOnce.Do(func() {
		if farewell != "" {
			ss.wmu.Lock()
			if ss.handler == nil {
				ss.srv.record(ss.Conn, ss.TLS, false, farewell)
			}
			ss.w.SetWriteDeadline(time.Now().Add(writeTimeout))
			ss.w.Write([]byte(farewell + "\r\n"))
			ss.wmu.Unlock()
		}
		ss.raw.Close()
		close(ss.dropped)
	})
}

// reply answers at stage (see decide) and returns the reply sent, or false
// when the session is to end (Hangup, a closed connection).
func (ss *Session) reply(stage Stage, line, def string) (string, bool) {
	r, ok := ss.decide(stage, line, def)
	return r, ok && ss.say(r)
}

// decide returns the reply at stage: it waits at a Hold, then asks the
// stage's Hook; def if the Hook has nothing to say, false for Hangup or
// when the connection was closed at the Hold.
func (ss *Session) decide(stage Stage, line, def string) (string, bool) {
	if !ss.hold(stage) {
		return "", false
	}
	r := ""
	if h := ss.srv.conf().hooks[stage]; h != nil {
		r = h(ss, line)
	}
	switch r {
	case Hangup:
		return "", false
	case "":
		r = def
	}
	return r, true
}

// serve runs one connection.
func (s *Server) serve(ss *Session) {
	if ss.handler != nil {
		ss.handler(ss.raw)
		return
	}
	greeting, ok := ss.reply(Greeting, "", "220 "+hostname+" ESMTP smtptest")
	if !ok || !strings.HasPrefix(greeting, "220") {
		return
	}
	r := bufio.NewReader(ss.raw)
	var cur Message // the transaction; From "" and no Rcpts: none
	for {
		line, ok := ss.readLine(r)
		if !ok {
			return
		}
		cfg := s.conf()
		upper := strings.ToUpper(line)
		verb, _, _ := strings.Cut(upper, " ")
		switch {
		case verb == "EHLO":
			cur = Message{}
			if _, ok := ss.reply(EHLO, line, ehloReply(cfg, ss.TLS)); !ok {
				return
			}
		case verb == "HELO":
			cur = Message{}
			ss.say("250 " + hostname)
		case verb == "STARTTLS" && cfg.tls != nil:
			if ss.TLS {
				ss.say("554 5.5.1 Error: TLS already active")
				continue
			}
			tr, ok := ss.startTLS(cfg.tls, line)
			if !ok {
				return
			}
			if tr != nil {
				r = tr
				cur = Message{} // RFC 3207 section 4.2: start over
			}
		case verb == "AUTH" && cfg.auth != nil:
			if !ss.auth(r, cfg, line) {
				return
			}
		case strings.HasPrefix(upper, "MAIL FROM:"):
			rep, ok := ss.reply(Mail, line, "250 2.1.0 Ok")
			if !ok {
				return
			}
			if rep[0] == '2' {
				cur = Message{From: line[len("MAIL FROM:"):]}
			}
		case strings.HasPrefix(upper, "RCPT TO:"):
			arg := line[len("RCPT TO:"):]
			def := "250 2.1.5 Ok"
			if local, addr := recipient(arg); cfg.users != nil && !cfg.users[local] {
				def = "550 5.1.1 <" + addr + ">: Recipient address rejected: User unknown in local recipient table"
			}
			rep, ok := ss.reply(Rcpt, line, def)
			if !ok {
				return
			}
			if rep[0] == '2' {
				cur.Rcpts = append(cur.Rcpts, arg)
			}
		case verb == "DATA":
			if !ss.data(r, line, &cur) {
				return
			}
		case verb == "RSET":
			cur = Message{}
			ss.say("250 2.0.0 Ok")
		case verb == "NOOP":
			ss.say("250 2.0.0 Ok")
		case verb == "QUIT":
			ss.say("221 2.0.0 Bye")
			return
		default:
			ss.say("502 5.5.2 Error: command not recognized")
		}
	}
}

// startTLS answers STARTTLS and runs the handshake. It returns a reader
// over TLS, or nil if the reply kept the session in plaintext; false when
// the session is to end.
func (ss *Session) startTLS(c *tls.Config, line string) (*bufio.Reader, bool) {
	rep, ok := ss.reply(StartTLS, line, "220 2.0.0 Ready to start TLS")
	if !ok || !strings.HasPrefix(rep, "220") {
		return nil, ok
	}
	tc := tls.Server(ss.raw, c)
	tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		return nil, false
	}
	tc.SetDeadline(time.Time{})
	ss.wmu.Lock()
	ss.w, ss.TLS = tc, true
	ss.wmu.Unlock()
	return bufio.NewReader(tc), true
}

// data answers DATA of the transaction cur, reads the message and
// answers its final dot, which ends the transaction; an accepted message
// is recorded before the client hears of it. It returns false when the
// session is to end.
func (ss *Session) data(r *bufio.Reader, line string, cur *Message) bool {
	def := "354 End data with <CR><LF>.<CR><LF>"
	if len(cur.Rcpts) == 0 {
		def = "554 5.5.1 Error: no valid recipients"
	}
	rep, ok := ss.reply(Data, line, def)
	if !ok || !strings.HasPrefix(rep, "354") {
		return ok
	}
	raw, ok := ss.readData(r)
	if !ok {
		return false
	}
	ss.Msgs++
	m := *cur
	*cur = Message{}
	rep, ok = ss.decide(Dot, "", "250 2.0.0 Ok: queued as FAKE")
	if !ok {
		return false
	}
	if rep[0] == '2' {
		m.Raw = raw
		ss.srv.addMessage(m)
	}
	return ss.say(rep)
}

// readLine reads one command line, records it and returns it without its
// line ending.
func (ss *Session) readLine(r *bufio.Reader) (string, bool) {
	ss.raw.SetReadDeadline(time.Now().Add(readTimeout))
	line, err := r.ReadString('\n')
	if err != nil {
		return "", false
	}
	line = strings.TrimRight(line, "\r\n")
	ss.srv.record(ss.Conn, ss.TLS, true, line)
	return line, true
}

var (
	crlf    = []byte("\r\n")
	dotCRLF = []byte(".\r\n")
)

// readData reads a message up to and including the final ".\r\n" (RFC
// 5321 section 4.1.1.4: the "." alone on a line), as it came.
func (ss *Session) readData(r *bufio.Reader) ([]byte, bool) {
	var raw bytes.Buffer
	for {
		ss.raw.SetReadDeadline(time.Now().Add(readTimeout))
		l, err := r.ReadBytes('\n')
		raw.Write(l)
		if err != nil {
			return nil, false
		}
		if bytes.Equal(l, dotCRLF) && (raw.Len() == 3 || bytes.HasSuffix(raw.Bytes()[:raw.Len()-3], crlf)) {
			return raw.Bytes(), true
		}
	}
}

// auth answers AUTH (RFC 4954) for the PLAIN mechanism (RFC 4616), with
// the initial response on the command line or after a 334.
func (ss *Session) auth(r *bufio.Reader, cfg config, line string) bool {
	if cfg.tls != nil && !ss.TLS {
		return ss.say("530 5.7.0 Must issue a STARTTLS command first")
	}
	f := strings.Fields(line)
	if len(f) < 2 || !strings.EqualFold(f[1], "PLAIN") {
		return ss.say("504 5.5.4 Unsupported authentication mechanism")
	}
	var resp string
	if len(f) > 2 {
		resp = f[2]
	} else {
		if !ss.say("334 ") {
			return false
		}
		var ok bool
		if resp, ok = ss.readLine(r); !ok {
			return false
		}
	}
	if resp == "*" {
		return ss.say("501 5.7.0 Authentication aborted")
	}
	dec, err := base64.StdEncoding.DecodeString(resp)
	parts := strings.Split(string(dec), "\x00")
	if err != nil || len(parts) != 3 || (parts[0] != "" && parts[0] != parts[1]) || !cfg.auth(parts[1], parts[2]) {
		return ss.say("535 5.7.8 Error: authentication failed")
	}
	return ss.say("235 2.7.0 Authentication successful")
}

// ehloReply is the EHLO reply under cfg.
func ehloReply(cfg config, tlsDone bool) string {
	kw := []string{hostname}
	if cfg.tls != nil && !tlsDone {
		kw = append(kw, "STARTTLS")
	}
	if cfg.auth != nil && (cfg.tls == nil || tlsDone) {
		kw = append(kw, "AUTH PLAIN")
	}
	kw = append(kw, cfg.ext...)
	var b strings.Builder
	for i, k := range kw {
		if i > 0 {
			b.WriteString("\r\n")
		}
		sep := "-"
		if i == len(kw)-1 {
			sep = " "
		}
		b.WriteString("250" + sep + k)
	}
	return b.String()
}

// recipient splits a RCPT TO argument ("<user@domain> PARAMS", as sent)
// into the local part and the address.
func recipient(arg string) (local, addr string) {
	arg, _, _ = strings.Cut(strings.TrimPrefix(arg, " "), " ")
	addr = strings.Trim(arg, "<>")
	local = addr
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		local = addr[:at]
	}
	return local, addr
}
