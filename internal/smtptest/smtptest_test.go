package smtptest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

func start(t *testing.T) *Server {
	t.Helper()
	s, err := Start("127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// client is a raw SMTP client: it sends lines and reads whole replies.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, s *Server) *client {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

// reply reads one reply, its lines joined by "\n"; "EOF" when the server
// closed the connection.
func (c *client) reply() string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var lines []string
	for {
		l, err := c.r.ReadString('\n')
		if err == io.EOF && l == "" && lines == nil {
			return "EOF"
		}
		if err != nil {
			c.t.Fatalf("reading a reply: %v (after %q)", err, lines)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(lines, "\n")
		}
	}
}

func (c *client) send(raw string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, raw); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) cmd(line string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.reply()
}

// expect sends line and fails unless the reply starts with want.
func (c *client) expect(line, want string) string {
	c.t.Helper()
	got := c.cmd(line)
	if !strings.HasPrefix(got, want) {
		c.t.Fatalf("%s: got %q, want %q...", line, got, want)
	}
	return got
}

func TestMessageAsOnTheWire(t *testing.T) {
	s := start(t)
	s.SetUsers("alice", "Bob")
	c := dial(t, s)
	if g := c.reply(); g != "220 fake.test ESMTP smtptest" {
		t.Errorf("greeting %q", g)
	}
	if r := c.cmd("EHLO client.test"); r != "250-fake.test\n250-PIPELINING\n250-8BITMIME\n250-SMTPUTF8\n250-ENHANCEDSTATUSCODES\n250 SIZE 104857600" {
		t.Errorf("EHLO: %q", r)
	}
	c.expect("DATA", "554 5.5.1")
	c.expect("MAIL FROM:<s@src.test> SIZE=42", "250 2.1.0")
	c.expect("RCPT TO:<alice@relay.test>", "250 2.1.5")
	if r := c.cmd("RCPT TO:<bob@relay.test>"); r != "550 5.1.1 <bob@relay.test>: Recipient address rejected: User unknown in local recipient table" {
		t.Errorf("unknown user (the case counts): %q", r)
	}
	c.expect("RCPT TO:<Bob@relay.test> NOTIFY=NEVER", "250")
	c.expect("DATA", "354")
	const wire = "Subject: x\r\n\r\n..dot\r\nbare\nlf\r\n.\r\n"
	c.send(wire)
	c.reply()
	if n := len(s.Messages()); n != 1 {
		t.Errorf("%d messages once the client has the reply, want 1", n)
	}
	c.expect("QUIT", "221")

	msgs := s.Messages()
	if len(msgs) != 1 {
		t.Fatalf("messages %+v", msgs)
	}
	m := msgs[0]
	if m.From != "<s@src.test> SIZE=42" || strings.Join(m.Rcpts, ",") != "<alice@relay.test>,<Bob@relay.test> NOTIFY=NEVER" {
		t.Errorf("envelope %q %q", m.From, m.Rcpts)
	}
	if string(m.Raw) != wire {
		t.Errorf("raw %q, want %q", m.Raw, wire)
	}
	if string(m.Body()) != "Subject: x\r\n\r\n.dot\r\nbare\nlf\r\n" {
		t.Errorf("body %q", m.Body())
	}
	if n := s.Count("RCPT TO:"); n != 3 {
		t.Errorf("Count: %d", n)
	}
	want := []string{"EHLO client.test", "DATA", "MAIL FROM:<s@src.test> SIZE=42", "RCPT TO:<alice@relay.test>",
		"RCPT TO:<bob@relay.test>", "RCPT TO:<Bob@relay.test> NOTIFY=NEVER", "DATA", "QUIT"}
	if got := s.Commands(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("commands %q", got)
	}
	tr := s.Transcript()
	if len(tr) < 3 || tr[0] != (Line{Conn: 1, Text: "220 fake.test ESMTP smtptest"}) ||
		tr[1] != (Line{Conn: 1, Client: true, Text: "EHLO client.test"}) || tr[len(tr)-1].Text != "221 2.0.0 Bye" {
		t.Errorf("transcript %+v", tr)
	}
}

func TestHooks(t *testing.T) {
	s := start(t)
	s.On(Mail, Reply("553 5.7.1 go away"))
	s.On(Dot, func(ss *Session, _ string) string {
		if ss.Msgs == 2 {
			return Hangup
		}
		return "" // the default
	})
	c := dial(t, s)
	c.reply()
	c.expect("MAIL FROM:<a@b>", "553 5.7.1 go away")
	s.On(Mail, nil)
	c.expect("MAIL FROM:<a@b>", "250")
	c.expect("RCPT TO:<c@d>", "250")
	c.expect("DATA", "354")
	c.expect("one\r\n.", "250 2.0.0 Ok: queued as FAKE")
	c.expect("MAIL FROM:<a@b>", "250")
	c.expect("RCPT TO:<c@d>", "250")
	c.expect("DATA", "354")
	if r := c.cmd("two\r\n."); r != "EOF" {
		t.Errorf("Hangup at the second message: %q", r)
	}
	if n := len(s.Messages()); n != 1 {
		t.Errorf("%d messages; the one hung up on is not accepted", n)
	}

	s.On(Greeting, Reply("421 4.3.2 busy"))
	c = dial(t, s)
	if g, end := c.reply(), c.reply(); g != "421 4.3.2 busy" || end != "EOF" {
		t.Errorf("greeting %q, then %q", g, end)
	}
	if n := s.Conns(); n != 2 {
		t.Errorf("%d connections", n)
	}
}

func TestHoldAndCloseIdle(t *testing.T) {
	s := start(t)
	s.SetUsers("alice")
	release := s.Hold(Rcpt)
	c := dial(t, s)
	c.reply()
	c.expect("MAIL FROM:<a@b>", "250")
	c.send("RCPT TO:<nobody@relay.test>\r\n")
	if err := s.WaitHeld(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	release()
	if r := c.reply(); !strings.HasPrefix(r, "550 5.1.1") {
		t.Errorf("after release: %q", r)
	}
	if n := s.Held(); n != 0 {
		t.Errorf("%d held after release", n)
	}
	release() // again: nothing
	c.expect("RCPT TO:<alice@relay.test>", "250")

	s.CloseIdle("421 4.4.2 fake.test Error: timeout exceeded")
	if r, end := c.reply(), c.reply(); r != "421 4.4.2 fake.test Error: timeout exceeded" || end != "EOF" {
		t.Errorf("idle close: %q, then %q", r, end)
	}

	// A session held when its connection is closed ends.
	s.Hold(Greeting)
	dial(t, s)
	if err := s.WaitHeld(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	s.CloseIdle("")
	if n := s.Held(); n != 0 {
		t.Errorf("%d held after CloseIdle", n)
	}
}

// Conns counts every connection made before the call, in the order made.
func TestConnsInOrder(t *testing.T) {
	s := start(t)
	s.Hold(Greeting)
	var want []string
	for range 20 {
		want = append(want, dial(t, s).c.LocalAddr().String())
	}
	if got := s.Remotes(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("remotes\n got %q\nwant %q", got, want)
	}
	if n := s.Conns(); n != 20 {
		t.Errorf("%d connections", n)
	}
	if err := s.WaitConns(20, time.Second); err != nil {
		t.Error(err)
	}
	if err := s.WaitConns(21, 10*time.Millisecond); err == nil {
		t.Error("WaitConns(21) returned no error")
	}
}

func TestHandler(t *testing.T) {
	s := start(t)
	s.SetHandler(func(c net.Conn) { io.WriteString(c, "exactly\n") })
	c := dial(t, s)
	if b, err := io.ReadAll(c.r); err != nil || string(b) != "exactly\n" {
		t.Errorf("got %q, %v", b, err)
	}
	if n, tr := s.Conns(), s.Transcript(); n != 1 || len(tr) != 0 {
		t.Errorf("%d connections, transcript %+v", n, tr)
	}
}

func TestStartTLSAndAuth(t *testing.T) {
	s := start(t)
	s.SetTLS(&tls.Config{Certificates: []tls.Certificate{selfSigned(t)}})
	s.SetAuth(func(user, pass string) bool { return user == "relay" && pass == "s3cret" })
	c := dial(t, s)
	c.reply()
	if r := c.cmd("EHLO client.test"); !strings.Contains(r, "250-STARTTLS\n") || strings.Contains(r, "AUTH") {
		t.Errorf("EHLO before TLS: %q", r)
	}
	c.expect("AUTH PLAIN", "530")
	c.expect("STARTTLS", "220")
	tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.c, c.r = tc, bufio.NewReader(tc)
	if r := c.cmd("EHLO client.test"); strings.Contains(r, "STARTTLS") || !strings.Contains(r, "250-AUTH PLAIN\n") {
		t.Errorf("EHLO over TLS: %q", r)
	}
	plain := func(user, pass string) string {
		return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	}
	c.expect("AUTH PLAIN "+plain("relay", "wrong"), "535 5.7.8")
	c.expect("AUTH PLAIN", "334")
	c.expect(plain("relay", "s3cret"), "235 2.7.0")

	var lines []string
	for _, l := range s.Transcript() {
		if l.Client {
			lines = append(lines, map[bool]string{false: "", true: "TLS: "}[l.TLS]+l.Text)
		}
	}
	want := []string{"EHLO client.test", "AUTH PLAIN", "STARTTLS", "TLS: EHLO client.test",
		"TLS: AUTH PLAIN " + plain("relay", "wrong"), "TLS: AUTH PLAIN", "TLS: " + plain("relay", "s3cret")}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("commands\n got %q\nwant %q", lines, want)
	}

	// A STARTTLS hook that answers 220 and then sends no TLS at all.
	s.On(StartTLS, func(ss *Session, _ string) string {
		ss.Write([]byte("220 2.0.0 Ready to start TLS\r\nthis is not TLS\r\n"))
		return Hangup
	})
	c = dial(t, s)
	c.reply()
	c.expect("STARTTLS", "220")
	if r, end := c.reply(), c.reply(); r != "this is not TLS" || end != "EOF" {
		t.Errorf("after 220: %q, then %q", r, end)
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fake.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"fake.test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
