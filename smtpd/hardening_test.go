package smtpd

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mxedge/mxedge/delivery"
	"github.com/mxedge/mxedge/internal/fakeclock"
	"github.com/mxedge/mxedge/internal/smtptest"
	"github.com/mxedge/mxedge/internal/testlog"
	"github.com/mxedge/mxedge/policy"
	"github.com/mxedge/mxedge/queue"
)

// Protocol hardening, each as an exact reply sequence.

// Error limits (Postfix smtpd_soft/hard_error_limit): 10 errors, then
// every reply waits; 20, then 421 and close.
func TestErrorLimits(t *testing.T) {
	const sleep = 40 * time.Millisecond
	addr, _, _ := startListener(t, func(o *Options) { o.ErrorSleep = sleep })
	c := dial(t, addr)
	c.cmd("EHLO client.test", "250")
	for i := 1; i <= 20; i++ {
		t0 := time.Now()
		c.cmd("XBOG", "500 5.5.2 Error: command not recognized")
		if d := time.Since(t0); i > 10 && d < sleep {
			t.Errorf("reply to error %d after %v, want >= %v", i, d, sleep)
		}
	}
	c.expect("421 4.7.0 mx.example.test Error: too many errors")
	c.expect("EOF")
}

// Junk commands: 100 are free, each one more is an error.
func TestJunkCommandLimit(t *testing.T) {
	addr, _, _ := startListener(t, func(o *Options) { o.ErrorSleep = time.Millisecond })
	c := dial(t, addr)
	c.cmd("EHLO client.test", "250")
	for i := 0; i < 100; i++ {
		c.cmd([]string{"NOOP", "RSET", "VRFY x"}[i%3], "2")
	}
	for i := 0; i < 20; i++ {
		c.cmd("NOOP", "250 2.0.0 Ok")
	}
	c.expect("421 4.7.0 mx.example.test Error: too many errors")
}

// A session ends after SessionTime (by the listener's clock) at its next
// command, whatever it does.
func TestSessionTimeCap(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	addr, q, _ := startListener(t, func(o *Options) { o.Now = clock.Now })
	c := dial(t, addr)
	c.cmd("EHLO client.test", "250")
	c.cmd("MAIL FROM:<s@src.test>", "250")
	clock.Advance(29 * time.Minute)
	c.cmd("RCPT TO:<u@relay.test>", "250")
	clock.Advance(time.Minute)
	c.cmd("RCPT TO:<v@relay.test>", "421 4.4.2 mx.example.test Error: session time limit exceeded")
	c.expect("EOF")
	if st, _ := q.Stats(); st.Messages != 0 {
		t.Errorf("queued %+v", st)
	}
}

// ... and a session that only waits, or trickles junk, is cut off by the
// real clock at the same time.
func TestSessionTimeCapIdle(t *testing.T) {
	addr, _, _ := startListener(t, func(o *Options) { o.SessionTime = 300 * time.Millisecond })
	c := dial(t, addr)
	t0 := time.Now()
	c.cmd("EHLO client.test", "250")
	c.expect("421 4.4.2 mx.example.test Error: timeout exceeded")
	if d := time.Since(t0); d < 250*time.Millisecond || d > 5*time.Second {
		t.Errorf("cut off after %v", d)
	}
}

// A session may send SessionMessages messages; the next MAIL is 421.
func TestSessionMessageCap(t *testing.T) {
	addr, q, _ := startListener(t, func(o *Options) { o.SessionMessages = 2 })
	c := dial(t, addr)
	for i := 0; i < 2; i++ {
		c.envelope("u@relay.test")
		c.send("Subject: x\r\n\r\nhi\r\n.\r\n")
		queuedID(t, c.reply())
	}
	c.cmd("MAIL FROM:<s@src.test>", "421 4.7.0 Error: too many messages in one session, closing connection")
	c.expect("EOF")
	if st, _ := q.Stats(); st.Messages != 2 {
		t.Errorf("queued %+v", st)
	}
}

// The reply codes of section 7, and a HELO argument with control bytes:
// refused, never echoed, never in a log line or Received header.
func TestReplyCodesAndHeloControlBytes(t *testing.T) {
	var logs testlog.Buffer
	addr, q, _ := startListener(t, func(o *Options) {
		o.Logger = logs.Logger()
		o.MessageSize = 1000
		o.Recipients = 2
		o.ErrorSleep = time.Millisecond // more than 10 errors below
	})
	c := dial(t, addr)
	c.cmd("MAIL FROM:<s@src.test>", "503 5.5.1 Error: send HELO/EHLO first")
	c.cmd("EHLO evil\x00.test", "501 5.5.2 Invalid domain name")
	c.cmd("EHLO evil\x1b[31m.test", "501 5.5.2 Invalid domain name")
	c.cmd("HELO a\tb", "501 5.5.2 Invalid domain name")
	c.cmd("EHLO client.test", "250")
	c.cmd("MAIL FROM:<s@src.test> FOO=BAR", "555 5.5.4 Unsupported option: FOO")
	c.cmd("MAIL FROM:<s@src.test> SIZE=1001", "552 5.3.4")
	c.cmd("MAIL FROM s@src.test", "501 5.5.2 Syntax: MAIL FROM:<address>")
	c.cmd("MAIL FROM:<s@src..test>", "501 5.1.7 Bad sender address syntax")
	c.cmd("RCPT TO:<u@relay.test>", "503 5.5.1")
	c.cmd("MAIL FROM:<s@src.test>", "250 2.1.0 Ok")
	c.cmd("MAIL FROM:<s@src.test>", "503 5.5.1")
	c.cmd("RCPT TO:<u@relay.test> FOO=BAR", "555 5.5.4")
	c.cmd("RCPT TO:<u@relay..test>", "501 5.1.3 Bad recipient address syntax")
	c.cmd("RCPT FROM:<u@relay.test>", "501 5.5.2 Syntax: RCPT TO:<address>")
	c.cmd("RCPT TO:<a@relay.test>", "250 2.1.5 Ok")
	c.cmd("RCPT TO:<b@relay.test>", "250 2.1.5 Ok")
	c.cmd("RCPT TO:<c@relay.test>", "452 4.5.3")
	c.cmd("DATA", "354")
	c.send("Subject: x\r\n\r\nhi\r\n.\r\n")
	id := queuedID(t, c.reply())
	body := stored(t, q, id)
	for _, bad := range []string{"\x00", "\x1b", "evil"} {
		if strings.Contains(string(body), bad) || strings.Contains(logs.String(), bad) {
			t.Errorf("%q reached the message or the log", bad)
		}
	}
	if !strings.HasPrefix(string(body), "Received: from client.test ") {
		t.Errorf("Received %q", body)
	}
}

// RCPT TO:<postmaster> without a domain is accepted (RFC 5321 section
// 4.5.1) and goes to postmaster of the first relay domain.
func TestPostmasterWithoutDomain(t *testing.T) {
	rec := &recorder{}
	addr, q, _ := startListener(t, func(o *Options) { o.PostmasterDomain = "relay.test" }, rec)
	c := dial(t, addr)
	c.cmd("EHLO client.test", "250")
	c.cmd("MAIL FROM:<s@src.test>", "250")
	c.cmd("RCPT TO:<PostMaster>", "250 2.1.5 Ok")
	c.cmd("RCPT TO:<postmaster>", "250") // the same one
	c.cmd("DATA", "354")
	c.send("Subject: x\r\n\r\nhi\r\n.\r\n")
	id := queuedID(t, c.reply())
	env, _ := q.Get(id)
	if len(env.Rcpts) != 1 || env.Rcpts[0].Addr != "postmaster@relay.test" || rec.last() != "postmaster@relay.test" {
		t.Errorf("recipients %+v, checks saw %q", env.Rcpts, rec.last())
	}
	// Without relay domains there is no postmaster to route to.
	addr2, _, _ := startListener(t, nil)
	c = dial(t, addr2)
	c.cmd("EHLO client.test", "250")
	c.cmd("MAIL FROM:<s@src.test>", "250")
	c.cmd("RCPT TO:<postmaster>", "550 5.1.1")
}

// 32 case variants of one mailbox are one recipient, delivered once (at
// the backend: one RCPT, one message); in a relay domain configured
// case-sensitive they stay 32.
func TestCaseVariantDuplicatesDeliveredOnce(t *testing.T) {
	be, err := smtptest.Start("127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	addr, q, _ := startListener(t, func(o *Options) { o.CaseSensitive = map[string]bool{"strict.test": true} },
		relayFor("relay.test", "strict.test"))
	d := delivery.New(delivery.Options{Hostname: "mx.example.test", Routes: map[string]string{"relay.test": be.Addr(), "strict.test": be.Addr()},
		ConnectTimeout: 2 * time.Second, ReplyTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	defer d.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx, d, time.Second) }()
	defer func() { cancel(); <-done }()

	variants := func(local, domain string) []string {
		var out []string
		for m := 0; m < 32; m++ {
			b := []byte(local)
			for i := range b {
				if m&(1<<i) != 0 {
					b[i] -= 'a' - 'A'
				}
			}
			out = append(out, string(b)+"@"+domain)
		}
		return out
	}
	c := dial(t, addr)
	c.cmd("EHLO client.test", "250")
	c.cmd("MAIL FROM:<s@src.test>", "250")
	for _, r := range variants("alice", "Relay.Test") {
		c.cmd("RCPT TO:<"+r+">", "250")
	}
	c.cmd("DATA", "354")
	c.send("Subject: x\r\n\r\nhi\r\n.\r\n")
	queuedID(t, c.reply())
	msgs, err := be.WaitMessages(1, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(msgs[0].Rcpts); n != 1 || msgs[0].Rcpts[0] != "<alice@relay.test>" {
		t.Errorf("backend got recipients %v", msgs[0].Rcpts)
	}

	c.cmd("MAIL FROM:<s@src.test>", "250")
	for _, r := range variants("alice", "strict.test") {
		c.cmd("RCPT TO:<"+r+">", "250")
	}
	c.cmd("DATA", "354")
	c.send("Subject: y\r\n\r\nhi\r\n.\r\n")
	queuedID(t, c.reply())
	msgs, err = be.WaitMessages(2, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(msgs[1].Rcpts); n != 32 {
		t.Errorf("case-sensitive domain: %d recipients at the backend, want 32", n)
	}
}

// BDAT 0 LAST with nothing before it is accepted: the message is our
// Received header alone (as Postfix accepts an empty DATA).
func TestBdatZeroLastAlone(t *testing.T) {
	addr, q, _ := startListener(t, nil)
	c := dial(t, addr)
	c.cmd("EHLO client.test", "250")
	c.cmd("MAIL FROM:<s@src.test>", "250")
	c.cmd("RCPT TO:<u@relay.test>", "250")
	c.send("BDAT 0 LAST\r\n")
	id := queuedID(t, c.reply())
	body := string(stored(t, q, id))
	if !strings.HasPrefix(body, "Received: from client.test") || strings.Count(body, "\r\n") != 3 {
		t.Errorf("stored %q", body)
	}
}

// Refusal lines are rate-limited per client: 5 a minute are logged, the
// rest counted and summed up once the minute is over.
func TestRefusalLogRateLimit(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	var logs testlog.Buffer
	s, addr, _, _ := startServer(t, func(o *Options) {
		o.Now = clock.Now
		o.Logger = logs.Logger()
		o.SoftErrors, o.HardErrors = 1000, 1000
	}, queue.Options{})
	c := dial(t, addr)
	c.cmd("EHLO client.test", "250")
	c.cmd("MAIL FROM:<s@src.test>", "250")
	for i := 0; i < 50; i++ {
		c.cmd(fmt.Sprintf("RCPT TO:<v%d@elsewhere.example>", i), "554 5.7.1")
	}
	if n := strings.Count(logs.String(), `msg="recipient rejected"`); n != 5 {
		t.Errorf("%d refusal lines, want 5", n)
	}
	clock.Advance(time.Minute)
	s.refusals.sweep()
	if !strings.Contains(logs.String(), `msg="refusals not logged" listener=mx client=127.0.0.1/32 count=45 in=1m0s limit=false`) {
		t.Errorf("no summary:\n%s", logs.String())
	}
	// The next minute logs again.
	c.cmd("RCPT TO:<x@elsewhere.example>", "554 5.7.1")
	if n := strings.Count(logs.String(), `msg="recipient rejected"`); n != 6 {
		t.Errorf("%d refusal lines after a minute, want 6", n)
	}
}

// relayFor is relay control for domains, first in a test's chain.
func relayFor(domains ...string) *policy.Relay { return policy.NewRelay(domains) }
