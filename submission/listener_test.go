package submission

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxedge/mxedge/auth"
	"github.com/mxedge/mxedge/internal/fakeclock"
	"github.com/mxedge/mxedge/internal/testlog"
	"github.com/mxedge/mxedge/policy"
	"github.com/mxedge/mxedge/queue"
	"github.com/mxedge/mxedge/smtpd"
)

// cheapHash is an argon2id password hash cheap enough for tests (the
// parameters travel in the hash).
func cheapHash(t *testing.T, pw string) string {
	t.Helper()
	return "{ARGON2ID}$argon2id$v=19$m=1024,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$" + argonKey(pw)
}

func argonKey(pw string) string {
	// Computed like auth's own hashes; see auth.HashPassword.
	return base64.RawStdEncoding.EncodeToString(argonIDKey(pw))
}

type fixture struct {
	addr   string
	q      *queue.Queue
	clock  *fakeclock.Clock
	logs   *testlog.Buffer
	delays *[]time.Duration
	store  *Store
}

func testTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "smtp.example.org"},
		DNSNames: []string{"smtp.example.org"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// startSubmission runs a submission listener of kind with a real queue,
// a users file with alice (pw "alice-pw", senders alice@example.org and
// *@example.net), and limits.
func startSubmission(t *testing.T, kind policy.Kind, limits Limits, edit func(*smtpd.Options)) *fixture {
	t.Helper()
	return startSubmissionHold(t, kind, limits, false, edit)
}

func startSubmissionHold(t *testing.T, kind policy.Kind, limits Limits, hold bool, edit func(*smtpd.Options)) *fixture {
	t.Helper()
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	os.WriteFile(users, []byte("alice@example.org:"+cheapHash(t, "alice-pw")+"::::::senders=alice@example.org,*@example.net\n"), 0o600)
	f := &fixture{clock: fakeclock.New(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)), logs: &testlog.Buffer{}, delays: &[]time.Duration{}}
	log := f.logs.Logger()
	uf, err := auth.OpenFile(users, log)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	a := auth.New(auth.Options{Backend: uf, Logger: log,
		Guard: auth.NewGuard(auth.GuardOptions{Now: f.clock.Now, Delay: 3 * time.Second}),
		Sleep: func(d time.Duration) { mu.Lock(); *f.delays = append(*f.delays, d); mu.Unlock() }})
	if f.store, err = OpenStore(filepath.Join(dir, "submission.db"), f.clock.Now); err != nil {
		t.Fatal(err)
	}
	if f.q, err = queue.Open(filepath.Join(dir, "queue"), queue.Options{Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	o := smtpd.Options{Name: string(kind), Hostname: "smtp.example.org", Logger: log, TLS: testTLS(t)}
	if err := Profile(&o, kind, a); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&o)
	}
	ch := Chain(Checks{Senders: uf, Limits: limits, HoldOverLimit: hold, Store: f.store, Hostname: "smtp.example.org", Now: f.clock.Now, Logger: log})
	s := smtpd.New(o, f.q, ch)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close(); f.q.Close(); f.store.Close() })
	f.addr = ln.Addr().String()
	return f
}

type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func (f *fixture) dial(t *testing.T, implicit bool) *client {
	t.Helper()
	var c net.Conn
	var err error
	if implicit {
		c, err = tls.Dial("tcp", f.addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		c, err = net.Dial("tcp", f.addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, c: c, r: bufio.NewReader(c)}
	cl.expect("220")
	return cl
}

// starttls dials, says EHLO and starts TLS.
func (f *fixture) starttls(t *testing.T) *client {
	t.Helper()
	c := f.dial(t, false)
	c.cmd("EHLO client.example", "250")
	c.cmd("STARTTLS", "220")
	tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return &client{t: t, c: tc, r: bufio.NewReader(tc)}
}

// reply reads a reply, its lines joined by "\n"; "EOF" at the end.
func (c *client) reply() string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	var lines []string
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			if lines == nil {
				return "EOF"
			}
			c.t.Fatalf("reading reply: %v", err)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(lines, "\n")
		}
	}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) cmd(line, want string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.expect(want)
}

func (c *client) expect(want string) string {
	c.t.Helper()
	got := c.reply()
	if !strings.HasPrefix(got, want) {
		c.t.Fatalf("got %q, want %q...", got, want)
	}
	return got
}

func plain(user, pw string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pw))
}

// message sends one message in an authenticated session and returns the
// reply to the final dot.
func (c *client) message(from, to, data string) string {
	c.t.Helper()
	c.cmd("MAIL FROM:<"+from+">", "250")
	c.cmd("RCPT TO:<"+to+">", "250")
	c.cmd("DATA", "354")
	c.send(data + "\r\n.\r\n")
	return c.reply()
}

func queuedID(t *testing.T, reply string) string {
	t.Helper()
	i := strings.Index(reply, "queued as ")
	if !strings.HasPrefix(reply, "250 2.0.0") || i < 0 {
		t.Fatalf("reply %q has no queue ID", reply)
	}
	return reply[i+len("queued as "):]
}

func stored(t *testing.T, q *queue.Queue, id string) string {
	t.Helper()
	msg, err := q.Message(id)
	if err != nil {
		t.Fatal(err)
	}
	r, err := msg.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	return string(b)
}

// Port 587: nothing before TLS, AUTH after it, then mail to any domain;
// the message gets Date and Message-ID, and Received says ESMTPSA.
func TestSubmission587(t *testing.T) {
	f := startSubmission(t, policy.KindSubmission, Limits{}, nil)
	c := f.dial(t, false)
	if ehlo := c.cmd("EHLO client.example", "250"); strings.Contains(ehlo, "AUTH") || !strings.Contains(ehlo, "STARTTLS") {
		t.Errorf("EHLO before TLS: %q", ehlo)
	}
	c.cmd("MAIL FROM:<alice@example.org>", "530 5.7.0 Must issue a STARTTLS command first")
	c.cmd("AUTH PLAIN "+plain("alice@example.org", "alice-pw"), "538 5.7.11 ")

	c = f.starttls(t)
	if ehlo := c.cmd("EHLO client.example", "250"); !strings.Contains(ehlo, "250-AUTH PLAIN LOGIN") {
		t.Errorf("EHLO after TLS: %q", ehlo)
	}
	c.cmd("MAIL FROM:<alice@example.org>", "530 5.7.0 Authentication required")
	c.cmd("AUTH PLAIN "+plain("alice@example.org", "wrong"), "535 5.7.8 Authentication failed")
	c.cmd("AUTH PLAIN "+plain("alice@example.org", "alice-pw"), "235 2.0.0")
	c.cmd("MAIL FROM:<bob@example.org>", "553 5.7.1 Sender address not owned by user")
	rep := c.message("alice@example.org", "someone@elsewhere.example", "From: Alice <alice@example.org>\r\nTo: someone@elsewhere.example\r\nSubject: hi\r\n\r\nbody")
	msg := stored(t, f.q, queuedID(t, rep))
	for _, want := range []string{"with ESMTPSA id ", "\r\n\tby smtp.example.org (mxedge)", "Date: Sun, 01 Mar 2026 10:00:00 +0000\r\n", "Message-ID: <", "@smtp.example.org>\r\n", "From: Alice <alice@example.org>"} {
		if !strings.Contains(msg, want) {
			t.Errorf("stored message lacks %q:\n%s", want, msg)
		}
	}
	env, _ := f.q.Get(queuedID(t, rep))
	if env.Origin.AuthUser != "alice@example.org" || env.Origin.Kind != "submission" {
		t.Errorf("origin %+v", env.Origin)
	}

	// The client's own Date and Message-ID are kept, nothing added.
	rep = c.message("x@example.net", "a@b.example", "From: x@example.net\r\nDate: Mon, 2 Mar 2026 08:00:00 +0100\r\nMessage-ID: <own@example.net>\r\n\r\nbody")
	msg = stored(t, f.q, queuedID(t, rep))
	if strings.Count(msg, "Message-ID:") != 1 || strings.Count(msg, "Date:") != 1 {
		t.Errorf("fields added although present:\n%s", msg)
	}

	// From: not owned, 8-bit header, no From at all.
	if rep := c.message("alice@example.org", "a@b.example", "From: boss@example.org\r\n\r\nbody"); !strings.HasPrefix(rep, "553 5.7.1 From: address not owned by user") {
		t.Errorf("foreign From: %q", rep)
	}
	if rep := c.message("alice@example.org", "a@b.example", "From: alice@example.org, boss@example.com\r\n\r\nbody"); !strings.HasPrefix(rep, "553 5.7.1") {
		t.Errorf("second foreign From: %q", rep)
	}
	if rep := c.message("alice@example.org", "a@b.example", "From: alice@example.org\r\nSubject: Grüße\r\n\r\nbody"); !strings.HasPrefix(rep, "554 5.6.7 ") {
		t.Errorf("8-bit Subject: %q", rep)
	}
	if rep := c.message("alice@example.org", "a@b.example", "Subject: no from\r\n\r\nbody"); !strings.HasPrefix(rep, "554 5.6.0 ") {
		t.Errorf("no From: %q", rep)
	}
	// With SMTPUTF8 the 8-bit Subject is fine.
	c.cmd("MAIL FROM:<alice@example.org> SMTPUTF8", "250")
	c.cmd("RCPT TO:<a@b.example>", "250")
	c.cmd("DATA", "354")
	c.send("From: alice@example.org\r\nSubject: Grüße\r\n\r\nbody\r\n.\r\n")
	c.expect("250 2.0.0")
	if st, _ := f.q.Stats(); st.Messages != 3 {
		t.Errorf("queued %d messages, want 3", st.Messages)
	}
}

// Port 465: TLS from the first byte, LOGIN works.
func TestSubmissions465(t *testing.T) {
	f := startSubmission(t, policy.KindSubmissions, Limits{}, func(o *smtpd.Options) { o.HideClientIP = true })
	c := f.dial(t, true)
	if ehlo := c.cmd("EHLO client.example", "250"); !strings.Contains(ehlo, "AUTH PLAIN LOGIN") || strings.Contains(ehlo, "STARTTLS") {
		t.Errorf("EHLO on 465: %q", ehlo)
	}
	c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
	c.cmd(base64.StdEncoding.EncodeToString([]byte("alice@example.org")), "334 UGFzc3dvcmQ6")
	c.cmd(base64.StdEncoding.EncodeToString([]byte("alice-pw")), "235 ")
	rep := c.message("alice@example.org", "x@y.example", "From: alice@example.org\r\n\r\nhi")
	msg := stored(t, f.q, queuedID(t, rep))
	if !strings.HasPrefix(msg, "Received: from submission-client\r\n\t(using TLSv1.3") || strings.Contains(msg, "127.0.0.1") || strings.Contains(msg, "client.example") {
		t.Errorf("hide_client_ip: %s", msg[:strings.Index(msg, "From:")])
	}
	// A plaintext client on 465 gets nothing.
	nc, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.Write([]byte("EHLO plain.example\r\n"))
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, _ := io.ReadAll(nc); strings.Contains(string(b), "220") {
		t.Errorf("plaintext answered: %q", b)
	}
}

// The AUTH exchange's failure modes, each a clear 5xx.
func TestAuthFailureReplies(t *testing.T) {
	f := startSubmission(t, policy.KindSubmission, Limits{}, nil)
	c := f.starttls(t)
	c.cmd("EHLO client.example", "250")
	c.cmd("AUTH PLAIN ###", "501 5.5.2 Invalid base64 data")
	c.cmd("AUTH PLAIN", "334")
	c.cmd("*", "501 5.7.0 Authentication cancelled")
	c.cmd("AUTH LOGIN", "334")
	c.cmd("not base64!", "501 5.5.2 Invalid base64 data")
	c.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("no nuls here")), "501 5.5.2 Invalid PLAIN response")
	c.cmd("AUTH CRAM-MD5", "504 5.5.4 ")
	c.cmd("AUTH PLAIN "+strings.Repeat("A", 20<<10), "500 5.5.2 Line too long")
	c.cmd("AUTH PLAIN "+plain("alice@example.org", "alice-pw"), "235 ")
	c.cmd("AUTH PLAIN "+plain("alice@example.org", "alice-pw"), "503 5.5.1 Already authenticated")
}

// Eleven wrong passwords from one address: five answered at once, four
// delayed, the tenth 421 and closed; then locked out (421 at AUTH) for 15
// minutes, while the right password from elsewhere still works.
func TestLockoutSequence(t *testing.T) {
	f := startSubmission(t, policy.KindSubmission, Limits{}, nil)
	c := f.starttls(t)
	c.cmd("EHLO client.example", "250")
	for i := 1; i <= 9; i++ {
		c.cmd("AUTH PLAIN "+plain("alice@example.org", "guess"), "535 5.7.8 Authentication failed")
		want := 0
		if i > 5 {
			want = i - 5
		}
		if len(*f.delays) != want {
			t.Fatalf("after failure %d: %d delays, want %d", i, len(*f.delays), want)
		}
	}
	for _, d := range *f.delays {
		if d != 3*time.Second {
			t.Errorf("delay %v, want the configured 3s", d)
		}
	}
	c.cmd("AUTH PLAIN "+plain("alice@example.org", "guess"), "421 4.7.0 Too many authentication failures")
	if got := c.reply(); got != "EOF" {
		t.Fatalf("connection not closed: %q", got)
	}
	c = f.starttls(t)
	c.cmd("EHLO client.example", "250")
	c.cmd("AUTH PLAIN "+plain("alice@example.org", "alice-pw"), "421 4.7.0 Too many authentication failures")
	if n := strings.Count(f.logs.String(), `msg="auth failed"`); n != 10 {
		t.Errorf("%d failure lines, want 10:\n%s", n, f.logs.String())
	}
	if !strings.Contains(f.logs.String(), `level=WARN msg="auth failed" listener=submission client_ip=127.0.0.1 user=alice@example.org mech=PLAIN failures=10 locked=true`) {
		t.Errorf("fail2ban line:\n%s", f.logs.String())
	}
	f.clock.Advance(15 * time.Minute)
	c = f.starttls(t)
	c.cmd("EHLO client.example", "250")
	c.cmd("AUTH PLAIN "+plain("alice@example.org", "alice-pw"), "235 ")
}

// The 101st message of an hour gets 450 4.7.1; an hour later it goes;
// the recipient limit counts recipients of the transaction too; the
// counters survive reopening the store.
func TestRateLimit(t *testing.T) {
	f := startSubmission(t, policy.KindSubmission, Limits{MessagesPerHour: 100, MessagesPerDay: 1000, RecipientsPerHour: 150, RecipientsPerDay: 3000}, nil)
	c := f.starttls(t)
	c.cmd("EHLO client.example", "250")
	c.cmd("AUTH PLAIN "+plain("alice@example.org", "alice-pw"), "235 ")
	for i := 1; i <= 100; i++ {
		c.cmd("MAIL FROM:<alice@example.org>", "250")
		c.cmd("RCPT TO:<r@x.example>", "250")
		c.cmd("DATA", "354")
		c.send("From: alice@example.org\r\n\r\nmessage\r\n.\r\n")
		c.expect("250 2.0.0")
		f.clock.Advance(30 * time.Second)
	}
	c.cmd("MAIL FROM:<alice@example.org>", "450 4.7.1 Message rate limit exceeded")
	if n := strings.Count(f.logs.String(), `msg="user over limit"`); n != 1 {
		t.Errorf("%d over-limit lines", n)
	}
	c.cmd("MAIL FROM:<alice@example.org>", "450 4.7.1")
	if n := strings.Count(f.logs.String(), `msg="user over limit"`); n != 1 {
		t.Errorf("logged again within the hour: %d lines", n)
	}
	u := f.store.Usage("alice@example.org")
	if u.HourMessages != 100 || u.HourRcpts != 100 || u.DayMessages != 100 {
		t.Errorf("usage %+v", u)
	}
	f.clock.Advance(10 * time.Minute) // 60 minutes after the first
	c.cmd("MAIL FROM:<alice@example.org>", "250")
	for i := 1; i <= 150; i++ {
		c.cmd(fmt.Sprintf("RCPT TO:<r%d@x.example>", i), "250")
	}
	c.cmd("RCPT TO:<one-more@x.example>", "450 4.7.1 Recipient rate limit exceeded")
	c.cmd("RSET", "250")
	if err := f.store.Flush(); err != nil {
		t.Fatal(err)
	}
}

// With over_limit = "hold" the message over the limit is accepted and
// queued on hold, with the reason; the ones before it are not held.
func TestRateLimitHold(t *testing.T) {
	f := startSubmissionHold(t, policy.KindSubmission, Limits{MessagesPerHour: 2}, true, nil)
	c := f.starttls(t)
	c.cmd("EHLO client.example", "250")
	c.cmd("AUTH PLAIN "+plain("alice@example.org", "alice-pw"), "235 ")
	var ids []string
	for range 3 {
		ids = append(ids, queuedID(t, c.message("alice@example.org", "x@y.example", "From: alice@example.org\r\n\r\nhi")))
	}
	for i, id := range ids {
		env, err := f.q.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if held := i == 2; env.Held != held || f.q.State(env) != map[bool]string{true: "hold", false: "incoming"}[held] {
			t.Errorf("message %d: held %v state %s", i+1, env.Held, f.q.State(env))
		}
		if i == 2 && env.HoldReason != "ratelimit: user alice@example.org over its limit: messages per hour 2/2" {
			t.Errorf("hold reason %q", env.HoldReason)
		}
	}
}
