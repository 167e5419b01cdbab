package smtp_test

// Tests of the server changes of mxedge's fork (FORK.md), one per section.

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// forkBackend records what reached it; mailErr/rcptErr decide the answers.
type forkBackend struct {
	mu       sync.Mutex
	sessions int
	mails    []string
	rcpts    []string
	msgs     []string
	// dataEnd gets the error Data's reader ended with (nil: io.EOF), just
	// before Data returns.
	dataEnd chan error

	mailErr func(from string) error
	rcptErr func(to string) error
}

func (be *forkBackend) NewSession(*smtp.Conn) (smtp.Session, error) {
	be.mu.Lock()
	be.sessions++
	be.mu.Unlock()
	return &forkSession{be: be}, nil
}

func (be *forkBackend) counts() (sessions, mails, msgs int) {
	be.mu.Lock()
	defer be.mu.Unlock()
	return be.sessions, len(be.mails), len(be.msgs)
}

type forkSession struct{ be *forkBackend }

func (s *forkSession) Reset()        {}
func (s *forkSession) Logout() error { return nil }

func (s *forkSession) Mail(from string, _ *smtp.MailOptions) error {
	s.be.mu.Lock()
	s.be.mails = append(s.be.mails, from)
	s.be.mu.Unlock()
	if s.be.mailErr != nil {
		return s.be.mailErr(from)
	}
	return nil
}

func (s *forkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.be.mu.Lock()
	s.be.rcpts = append(s.be.rcpts, to)
	s.be.mu.Unlock()
	if s.be.rcptErr != nil {
		return s.be.rcptErr(to)
	}
	return nil
}

func (s *forkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err == nil {
		s.be.mu.Lock()
		s.be.msgs = append(s.be.msgs, string(b))
		s.be.mu.Unlock()
	}
	s.be.dataEnd <- err
	return err
}

// countingConn counts the writes to the connection (replies).
type countingConn struct {
	net.Conn
	writes *int64
}

func (c countingConn) Write(p []byte) (int, error) {
	atomic.AddInt64(c.writes, 1)
	return c.Conn.Write(p)
}

type countingListener struct {
	net.Listener
	writes int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, &l.writes}, nil
}

func startFork(t *testing.T, conf func(*smtp.Server)) (*forkBackend, *smtp.Server, *countingListener) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	be := &forkBackend{dataEnd: make(chan error, 10)}
	s := smtp.NewServer(be)
	s.Domain = "mx.example"
	if conf != nil {
		conf(s)
	}
	cl := &countingListener{Listener: l}
	go s.Serve(cl)
	t.Cleanup(func() { s.Close() })
	return be, s, cl
}

type forkClient struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialFork(t *testing.T, l net.Listener) *forkClient {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fc := &forkClient{t: t, c: c, r: bufio.NewReader(c)}
	fc.expect("220 mx.example ESMTP Service Ready")
	return fc
}

func (fc *forkClient) send(s string) {
	fc.t.Helper()
	if _, err := io.WriteString(fc.c, s); err != nil {
		fc.t.Fatal(err)
	}
}

// reply reads one reply, all its lines joined by "\n", without CRLF; "EOF"
// when the server closed the connection.
func (fc *forkClient) reply() string {
	fc.t.Helper()
	fc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var lines []string
	for {
		l, err := fc.r.ReadString('\n')
		if err == io.EOF && l == "" && lines == nil {
			return "EOF"
		}
		if err != nil {
			fc.t.Fatalf("reading reply: %q, %v", l, err)
		}
		l = strings.TrimSuffix(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(lines, "\n")
		}
	}
}

// expect reads a reply and checks that it starts with want.
func (fc *forkClient) expect(want string) string {
	fc.t.Helper()
	got := fc.reply()
	if !strings.HasPrefix(got, want) {
		fc.t.Fatalf("got %q, want %q...", got, want)
	}
	return got
}

func (fc *forkClient) cmd(line, want string) string {
	fc.t.Helper()
	fc.send(line + "\r\n")
	return fc.expect(want)
}

// FORK.md "Reply codes" and "Success replies".
func TestForkReplyCodes(t *testing.T) {
	_, _, l := startFork(t, func(s *smtp.Server) {
		s.MaxMessageBytes = 1000
		s.MaxRecipients = 2
	})
	c := dialFork(t, l)
	for _, step := range []struct{ send, want string }{
		{"MAIL FROM:<a@b.example>", "503 5.5.1 "},
		{"EHLO client.example", "250-mx.example\n"},
		{"RCPT TO:<x@y.example>", "503 5.5.1 "},
		{"DATA", "503 5.5.1 "},
		{"MAIL FROM:<a@b.example> FOO=1", "555 5.5.4 Unsupported option: FOO"},
		{"MAIL FROM:<a@b.example> SIZE=1001", "552 5.3.4 "},
		{"MAIL <a@b.example>", "501 5.5.2 "},
		{"MAIL FROM:<a b@c.example>", "501 5.1.7 "},
		{"MAIL FROM:<a@b.example> SMTPUTF8", "555 5.5.4 "},
		{"MAIL FROM:<a@b.example> SIZE=1000", "250 2.1.0 Ok"},
		{"MAIL FROM:<a@b.example>", "503 5.5.1 "},
		{"RCPT <x@y.example>", "501 5.5.2 "},
		{"RCPT TO:<x y@z.example>", "501 5.1.3 "},
		{"RCPT TO:<x@y.example> BAR", "555 5.5.4 Unsupported option: BAR"},
		{"RCPT TO:<x@y.example> NOTIFY=NEVER", "555 5.5.4 "},
		{"RCPT TO:<x@y.example>", "250 2.1.5 Ok"},
		{"RCPT TO:<x2@y.example>", "250 2.1.5 Ok"},
		{"RCPT TO:<x3@y.example>", "452 4.5.3 "},
		{"NOOP", "250 2.0.0 Ok"},
		{"X\x00YZ", "500 5.5.2 Error: command not recognized"},
		{"DATA", "354 End data with <CR><LF>.<CR><LF>"},
		{"hi\r\n.", "250 2.0.0 "},
		{"BDAT 3 LAST\r\na", "503 5.5.1 "}, // the chunk is "a\r\n"
		{"RSET", "250 2.0.0 Ok"},
		{"HELO client.example", "250 mx.example"},
		{"QUIT", "221 2.0.0 Bye"},
	} {
		got := c.cmd(step.send, step.want)
		if step.want == "250 2.1.0 Ok" || step.want == "250 2.1.5 Ok" || step.want == "250 2.0.0 Ok" ||
			step.want == "250 mx.example" || step.want == "221 2.0.0 Bye" {
			if got != step.want {
				t.Errorf("%q: got %q, want exactly %q", step.send, got, step.want)
			}
		}
	}
}

// FORK.md "HELO/EHLO": control bytes refused, never echoed or given to the
// backend; the reply names the server.
func TestForkHeloArgument(t *testing.T) {
	be, _, l := startFork(t, nil)
	c := dialFork(t, l)
	for _, arg := range []string{"a\x00b", "a\x01", "a\x7fb", "a\tb", "ok\x1b[2J"} {
		for _, cmd := range []string{"EHLO", "HELO"} {
			if got := c.cmd(cmd+" "+arg, "501 "); got != "501 5.5.2 Invalid domain name" {
				t.Errorf("%s %q: got %q", cmd, arg, got)
			}
		}
	}
	if n, _, _ := be.counts(); n != 0 {
		t.Fatalf("%d sessions created for refused greetings", n)
	}
	if got := c.cmd("EHLO client.example", "250-"); !strings.HasPrefix(got, "250-mx.example\n") || strings.Contains(got, "client.example") {
		t.Fatalf("EHLO reply: %q", got)
	}
	if got := c.cmd("HELO client.example", "250 "); got != "250 mx.example" {
		t.Fatalf("HELO reply: %q", got)
	}
}

// FORK.md "Session replies": a 2xx *SMTPError is the success reply, a 421
// closes the connection after it is sent.
func TestForkSessionReplies(t *testing.T) {
	be, _, l := startFork(t, nil)
	be.mailErr = func(string) error {
		return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 1, 0}, Message: "Sender ok"}
	}
	be.rcptErr = func(to string) error {
		switch to {
		case "ok@y.example":
			return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 1, 5}, Message: "Recipient ok"}
		case "bye@y.example":
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Go away"}
		}
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
	}
	c := dialFork(t, l)
	c.cmd("EHLO client.example", "250")
	if got := c.cmd("MAIL FROM:<a@b.example>", "250"); got != "250 2.1.0 Sender ok" {
		t.Fatal(got)
	}
	c.cmd("RCPT TO:<nobody@y.example>", "550 5.1.1 No such user")
	c.cmd("DATA", "503 5.5.1 ") // the 550 did not count
	if got := c.cmd("RCPT TO:<ok@y.example>", "250"); got != "250 2.1.5 Recipient ok" {
		t.Fatal(got)
	}
	c.cmd("DATA", "354 ")
	c.cmd("x\r\n.", "250 ")
	<-be.dataEnd

	// Pipelined: the 421 comes after the replies before it, then the end.
	c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<bye@y.example>\r\nNOOP\r\n")
	c.expect("250 2.1.0 Sender ok")
	c.expect("421 4.7.0 Go away")
	if got := c.reply(); got != "EOF" {
		t.Fatalf("after 421: %q", got)
	}
}

// FORK.md "RCPT TO:<postmaster>".
func TestForkPostmaster(t *testing.T) {
	be, _, l := startFork(t, nil)
	c := dialFork(t, l)
	c.cmd("EHLO client.example", "250")
	c.cmd("MAIL FROM:<a@b.example>", "250 ")
	c.cmd("RCPT TO:<PostMaster>", "250 ")
	c.cmd("RCPT TO:<postmaster>", "250 ")
	c.cmd("RCPT TO:<postmasters>", "501 5.1.3 ")
	be.mu.Lock()
	defer be.mu.Unlock()
	if strings.Join(be.rcpts, ",") != "PostMaster,postmaster" {
		t.Fatalf("Rcpt got %q", be.rcpts)
	}
}

// FORK.md "Line limits": a long line in DATA is data; a long command line
// is answered and skipped; a line that never ends closes the session.
func TestForkLineLimits(t *testing.T) {
	be, _, l := startFork(t, nil)
	c := dialFork(t, l)
	c.cmd("EHLO client.example", "250")
	c.cmd("MAIL FROM:<a@b.example>", "250 ")
	c.cmd("RCPT TO:<x@y.example>", "250 ")
	c.cmd("DATA", "354 ")
	body := "Subject: long\r\n\r\n" + strings.Repeat("0123456789", 7000) + "\r\n..dot\r\n"
	c.cmd(body+".", "250 ")
	<-be.dataEnd
	if _, _, n := be.counts(); n != 1 || be.msgs[0] != strings.Replace(body, "\r\n..", "\r\n.", 1) {
		t.Fatalf("message not delivered byte-exact (%d messages)", n)
	}

	// 2048 octets with CRLF is a command, one more is not.
	c.cmd("NOOP "+strings.Repeat("x", smtp.DefaultMaxCommandLineLength-7), "250 2.0.0 Ok")
	c.cmd("NOOP "+strings.Repeat("x", smtp.DefaultMaxCommandLineLength-6), "500 5.5.2 Line too long")
	c.cmd("NOOP", "250 2.0.0 Ok")
	// The reply comes before the end of the line, which is still skipped.
	c.send("MAIL FROM:<" + strings.Repeat("a", 3000))
	c.expect("500 5.5.2 Line too long")
	c.send(strings.Repeat("b", 3000) + ">\r\nNOOP\r\n")
	c.expect("250 2.0.0 Ok")
	if _, mails, _ := be.counts(); mails != 1 {
		t.Fatalf("%d MAIL commands executed, want 1", mails)
	}

	// A line that never ends: after 64 KiB (maxDiscardLine) the session
	// ends. Exactly one byte more, so that the server has read everything
	// when it closes (unread input would make it a reset).
	c.send(strings.Repeat("z", 64<<10+1))
	c.expect("500 5.5.2 Line too long")
	if got := c.reply(); got != "EOF" {
		t.Fatalf("endless line: %q", got)
	}
}

// FORK.md "Partial lines": a command cut off by the read timeout or by the
// end of the connection is never executed.
func TestForkPartialCommand(t *testing.T) {
	be, _, l := startFork(t, func(s *smtp.Server) { s.ReadTimeout = 300 * time.Millisecond })
	for _, tc := range []struct {
		before  []string
		partial string
	}{
		{nil, "MAIL FROM:<a@b.example>"},
		{[]string{"MAIL FROM:<a@b.example>"}, "RCPT TO:<x@y.example>"},
		{[]string{"MAIL FROM:<a@b.example>", "RCPT TO:<x@y.example>"}, "DATA"},
	} {
		for _, eof := range []bool{false, true} {
			c := dialFork(t, l)
			c.cmd("EHLO client.example", "250")
			for _, cmd := range tc.before {
				c.cmd(cmd, "250 ")
			}
			_, mails0, _ := be.counts()
			be.mu.Lock()
			rcpts0 := len(be.rcpts)
			be.mu.Unlock()
			c.send(tc.partial)
			if eof {
				c.c.(*net.TCPConn).CloseWrite()
			} else if got := c.reply(); got != "421 4.4.2 mx.example Error: timeout exceeded" {
				t.Fatalf("%q: %q", tc.partial, got)
			}
			if got := c.reply(); got != "EOF" {
				t.Fatalf("%q (eof %v): %q", tc.partial, eof, got)
			}
			_, mails, _ := be.counts()
			be.mu.Lock()
			rcpts := len(be.rcpts)
			be.mu.Unlock()
			if mails != mails0 || rcpts != rcpts0 || len(be.dataEnd) != 0 {
				t.Fatalf("%q (eof %v) was executed", tc.partial, eof)
			}
		}
	}
}

// FORK.md "Partial lines" for message data: a message cut off by the
// timeout is answered 421 and not delivered.
func TestForkDataTimeout(t *testing.T) {
	be, _, l := startFork(t, func(s *smtp.Server) { s.ReadTimeout = 300 * time.Millisecond })
	c := dialFork(t, l)
	c.cmd("EHLO client.example", "250")
	c.cmd("MAIL FROM:<a@b.example>", "250 ")
	c.cmd("RCPT TO:<x@y.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.send("Subject: cut\r\n\r\nRCPT TO:<z@y.example>\r\n")
	c.expect("421 4.4.2 mx.example Error: timeout exceeded")
	if got := c.reply(); got != "EOF" {
		t.Fatal(got)
	}
	var ne net.Error
	if err := <-be.dataEnd; !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Data's reader ended with %v", err)
	}
	if _, _, n := be.counts(); n != 0 {
		t.Fatal("cut off message delivered")
	}
}

// FORK.md "Fast DATA reader": a message of exactly MaxMessageBytes is
// accepted, one byte more is 552.
func TestForkMessageSizeLimit(t *testing.T) {
	const body = "Subject: x\r\n\r\n0123456789\r\n"
	for _, tc := range []struct {
		max  int64
		want string
	}{{int64(len(body)), "250 "}, {int64(len(body)) - 1, "552 5.3.4 "}} {
		be, _, l := startFork(t, func(s *smtp.Server) { s.MaxMessageBytes = tc.max })
		c := dialFork(t, l)
		c.cmd("EHLO client.example", "250")
		c.cmd("MAIL FROM:<a@b.example>", "250 ")
		c.cmd("RCPT TO:<x@y.example>", "250 ")
		c.cmd("DATA", "354 ")
		c.cmd(body+".", tc.want)
		<-be.dataEnd
		c.cmd("NOOP", "250 2.0.0 Ok") // the rest was consumed
	}
}

// FORK.md "BDAT": RSET or EHLO after a chunk without LAST discards the
// message (Data gets ErrDataReset, and has returned before the reply), no
// extra reply, and the session goes on.
func TestForkBdatAbort(t *testing.T) {
	for _, abort := range []string{"RSET", "EHLO again.example"} {
		be, _, l := startFork(t, nil)
		c := dialFork(t, l)
		c.cmd("EHLO client.example", "250")
		c.cmd("MAIL FROM:<a@b.example>", "250 ")
		c.cmd("RCPT TO:<x@y.example>", "250 ")
		c.send("BDAT 5\r\nhello")
		c.expect("250 ")
		c.cmd(abort, "250")
		select {
		case err := <-be.dataEnd:
			if err != smtp.ErrDataReset {
				t.Fatalf("%s: Data's reader ended with %v", abort, err)
			}
		default:
			t.Fatalf("%s answered before Data returned", abort)
		}
		c.cmd("NOOP", "250 2.0.0 Ok") // nothing unsolicited in between
		c.cmd("MAIL FROM:<a2@b.example>", "250 ")
		c.cmd("RCPT TO:<x2@y.example>", "250 ")
		c.send("BDAT 6\r\nsecond")
		c.expect("250 ")
		c.send("BDAT 3 LAST\r\n!\r\n")
		c.expect("250 ")
		if err := <-be.dataEnd; err != nil {
			t.Fatal(err)
		}
		c.cmd("NOOP", "250 2.0.0 Ok")
		if _, _, n := be.counts(); n != 1 || be.msgs[0] != "second!\r\n" {
			t.Fatalf("%s: messages %q", abort, be.msgs)
		}
	}
}

// FORK.md "BDAT": BDAT 0 LAST alone reaches Data with an empty message.
func TestForkBdatZeroLast(t *testing.T) {
	be, _, l := startFork(t, nil)
	c := dialFork(t, l)
	c.cmd("EHLO client.example", "250")
	c.cmd("MAIL FROM:<a@b.example>", "250 ")
	c.cmd("RCPT TO:<x@y.example>", "250 ")
	c.cmd("BDAT 0 LAST", "250 ")
	if err := <-be.dataEnd; err != nil {
		t.Fatal(err)
	}
	if _, _, n := be.counts(); n != 1 || be.msgs[0] != "" {
		t.Fatalf("messages %q", be.msgs)
	}
}

// FORK.md "Reply batching": the replies to a pipelined group go out in one
// write.
func TestForkReplyBatching(t *testing.T) {
	_, _, l := startFork(t, nil)
	c := dialFork(t, l)
	c.cmd("EHLO client.example", "250-mx.example\n")
	before := atomic.LoadInt64(&l.writes)
	c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nRCPT TO:<z@y.example>\r\nDATA\r\n")
	c.expect("250 2.1.0 Ok")
	c.expect("250 2.1.5 Ok")
	c.expect("250 2.1.5 Ok")
	c.expect("354 ")
	if n := atomic.LoadInt64(&l.writes) - before; n != 1 {
		t.Fatalf("4 replies in %d writes, want 1", n)
	}
	// And a reply is never held while the server waits: lockstep works.
	before = atomic.LoadInt64(&l.writes)
	c.cmd("body\r\n.", "250 ")
	c.cmd("NOOP", "250 ")
	if n := atomic.LoadInt64(&l.writes) - before; n != 2 {
		t.Fatalf("2 lockstep replies in %d writes", n)
	}
}

func testTLSConfig(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mx.example"},
		DNSNames:     []string{"mx.example"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// FORK.md "STARTTLS": commands pipelined after STARTTLS (CVE-2011-0411)
// are thrown away, and the session starts over after the handshake.
func TestForkStartTLSInjection(t *testing.T) {
	_, _, l := startFork(t, func(s *smtp.Server) { s.TLSConfig = testTLSConfig(t) })
	c := dialFork(t, l)
	c.cmd("EHLO client.example", "250")
	c.send("STARTTLS\r\nEHLO injected.example\r\nMAIL FROM:<evil@b.example>\r\n")
	if got := c.reply(); got != "220 2.0.0 Ready to start TLS" {
		t.Fatal(got)
	}
	if n := c.r.Buffered(); n != 0 {
		t.Fatalf("%d more bytes before the handshake", n)
	}
	tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatal("handshake (a plaintext reply in the way?):", err)
	}
	tcl := &forkClient{t: t, c: tc, r: bufio.NewReader(tc)}
	// The first reply after the handshake is the one to NOOP: nothing was
	// answered for the injected commands.
	if got := tcl.cmd("NOOP", "250"); got != "250 2.0.0 Ok" {
		t.Fatalf("first reply after the handshake: %q", got)
	}
	tcl.cmd("MAIL FROM:<a@b.example>", "503 5.5.1 ") // RFC 3207 section 4.2: state reset
	tcl.cmd("EHLO client.example", "250-mx.example\n")
	tcl.cmd("MAIL FROM:<a@b.example>", "250 ")
}

// FORK.md "Line limits": an idle session holds little memory, even with a
// long half-line pending (v0.25.1 with mxedge's 64 KiB MaxLineLength held
// the whole half-line, ~1 GB for 9,000 sessions).
func TestForkSessionMemory(t *testing.T) {
	_, _, l := startFork(t, nil)
	const n = 100
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	conns := make([]*forkClient, n)
	for i := range conns {
		c := dialFork(t, l)
		c.cmd("EHLO client.example", "250")
		c.send("MAIL FROM:<" + strings.Repeat("a", 60<<10))
		c.expect("500 5.5.2 Line too long")
		conns[i] = c
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	per := (int64(ms.HeapAlloc) - int64(before)) / n
	t.Logf("%d bytes of heap per session", per)
	if per > 24<<10 {
		t.Fatalf("%d bytes of heap per session with a 60 KB half-line", per)
	}
}

// The fork's client and server together: SendTransaction pipelines, the
// server answers the group in one write.
func TestForkSendTransaction(t *testing.T) {
	be, _, l := startFork(t, nil)
	be.rcptErr = func(to string) error {
		if to == "nobody@y.example" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
		}
		return nil
	}
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	before := atomic.LoadInt64(&l.writes)
	tx, err := c.SendTransaction("a@b.example", nil, []string{"x@y.example", "nobody@y.example", "z@y.example"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := atomic.LoadInt64(&l.writes) - before; n != 1 {
		t.Fatalf("server answered the group in %d writes", n)
	}
	if tx.RcptErrors[0] != nil || tx.RcptErrors[1] == nil || tx.RcptErrors[2] != nil || tx.Data == nil {
		t.Fatalf("got %+v", tx)
	}
	io.WriteString(tx.Data, "Subject: x\r\n\r\nhi\r\n")
	if err := tx.Data.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-be.dataEnd; err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
}

// FORK.md "Error limits": errors are counted per session, replies wait
// once the soft limit is reached, the hard limit answers 421 and closes;
// junk commands count beyond their limit; an accepted message starts the
// counts again.
func TestForkErrorLimits(t *testing.T) {
	const sleep = 80 * time.Millisecond
	be, _, l := startFork(t, func(s *smtp.Server) {
		s.ErrorLimits = smtp.ErrorLimits{Soft: 3, Hard: 5, Sleep: sleep, Junk: 6}
	})
	timed := func(c *forkClient, line, want string) time.Duration {
		t.Helper()
		t0 := time.Now()
		c.cmd(line, want)
		return time.Since(t0)
	}

	t.Run("errors", func(t *testing.T) {
		c := dialFork(t, l)
		c.cmd("EHLO client.example", "250")
		for i := 0; i < 3; i++ {
			c.cmd("XBOG", "500 5.5.2 Error: command not recognized")
		}
		// 3 errors: from now on every reply waits, errors or not.
		if d := timed(c, "NOOP", "250 2.0.0 Ok"); d < sleep {
			t.Errorf("reply after 3 errors came after %v, want >= %v", d, sleep)
		}
		c.cmd("RCPT TO:<x@y.example>", "503 5.5.1") // 4
		if d := timed(c, "XBOG", "500 5.5.2"); d < sleep {
			t.Errorf("5th error reply after %v", d)
		}
		c.expect("421 4.7.0 mx.example Error: too many errors")
		if got := c.reply(); got != "EOF" {
			t.Errorf("after 421: %q", got)
		}
	})

	t.Run("junk", func(t *testing.T) {
		c := dialFork(t, l)
		c.cmd("EHLO client.example", "250")
		for _, cmd := range []string{"NOOP", "RSET", "VRFY x", "NOOP", "NOOP", "RSET"} {
			c.cmd(cmd, "2") // 6 junk commands: no error yet
		}
		c.cmd("NOOP", "250")                         // 1
		c.cmd("RSET", "250")                         // 2
		c.cmd("HELP", "502")                         // 3: counted once
		if d := timed(c, "NOOP", "250"); d < sleep { // 4
			t.Errorf("junk reply after 3 errors came after %v", d)
		}
		c.cmd("VRFY x", "252") // 5
		c.expect("421 4.7.0 mx.example Error: too many errors")
	})

	t.Run("a delivered message resets the counts", func(t *testing.T) {
		be.dataEnd = make(chan error, 10)
		c := dialFork(t, l)
		c.cmd("EHLO client.example", "250")
		for i := 0; i < 4; i++ {
			c.cmd("XBOG", "500")
		}
		c.cmd("MAIL FROM:<a@b.example>", "250")
		c.cmd("RCPT TO:<x@y.example>", "250")
		c.cmd("DATA", "354")
		c.cmd("Subject: x\r\n\r\nbody\r\n.", "250")
		for i := 0; i < 4; i++ {
			c.cmd("XBOG", "500")
		}
		if d := timed(c, "NOOP", "250 2.0.0 Ok"); d < sleep {
			t.Errorf("reply after 3+ errors came after %v", d)
		}
		c.cmd("XBOG", "500")
		c.expect("421 4.7.0")
	})
}

// Without ErrorLimits, v0.25.1's rule stays: the fourth syntax error
// closes the connection.
func TestForkErrorLimitsZero(t *testing.T) {
	_, _, l := startFork(t, nil)
	c := dialFork(t, l)
	for i := 0; i < 3; i++ {
		c.cmd("XBOG", "500 5.5.2")
	}
	c.cmd("XBOG", "500 5.5.2")
	c.expect("500 5.5.1 Too many errors")
}

// FORK.md section 15: the hard error limit reached inside a transaction
// that accepted a recipient waits for the transaction's end: the message
// is delivered for that recipient, the next command gets the 421.
func TestForkErrorLimitsKeepTransaction(t *testing.T) {
	be, _, l := startFork(t, func(s *smtp.Server) {
		s.ErrorLimits = smtp.ErrorLimits{Soft: 3, Hard: 5}
	})
	be.rcptErr = func(to string) error {
		if strings.HasPrefix(to, "gone") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User unknown"}
		}
		return nil
	}
	be.dataEnd = make(chan error, 10)

	t.Run("accepted recipients keep the transaction", func(t *testing.T) {
		c := dialFork(t, l)
		c.cmd("EHLO client.example", "250")
		c.cmd("MAIL FROM:<list@b.example>", "250")
		c.cmd("RCPT TO:<alice@y.example>", "250")
		for i := 0; i < 8; i++ {
			c.cmd(fmt.Sprintf("RCPT TO:<gone%d@y.example>", i), "550 5.1.1")
		}
		c.cmd("RCPT TO:<bob@y.example>", "250")
		c.cmd("DATA", "354")
		c.cmd("Subject: x\r\n\r\nbody\r\n.", "250")
		c.cmd("QUIT", "221") // the delivered message reset the counts
	})
	t.Run("cut after the transaction", func(t *testing.T) {
		c := dialFork(t, l)
		c.cmd("EHLO client.example", "250")
		c.cmd("MAIL FROM:<list@b.example>", "250")
		c.cmd("RCPT TO:<alice@y.example>", "250")
		for i := 0; i < 6; i++ {
			c.cmd(fmt.Sprintf("RCPT TO:<gone%d@y.example>", i), "550 5.1.1")
		}
		c.cmd("RSET", "250")
		c.expect("421 4.7.0 mx.example Error: too many errors")
		if got := c.reply(); got != "EOF" {
			t.Errorf("after 421: %q", got)
		}
	})
	t.Run("without accepted recipients the cut is at once", func(t *testing.T) {
		c := dialFork(t, l)
		c.cmd("EHLO client.example", "250")
		c.cmd("MAIL FROM:<list@b.example>", "250")
		for i := 0; i < 5; i++ {
			c.cmd(fmt.Sprintf("RCPT TO:<gone%d@y.example>", i), "550 5.1.1")
		}
		c.expect("421 4.7.0 mx.example Error: too many errors")
	})
}
