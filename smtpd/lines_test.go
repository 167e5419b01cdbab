package smtpd

import (
	"strings"
	"testing"
	"time"
)

// A line of 70 KB inside DATA is message data, not a command: accepted
// (as Postfix does) and stored exactly as sent.
func TestLongDataLineIsDelivered(t *testing.T) {
	addr, q, _ := startListener(t, nil)
	c := dial(t, addr)
	c.envelope("user@relay.test")
	long := strings.Repeat("0123456789", 7000)
	c.send("Subject: long line\r\n\r\n" + long + "\r\n..dot\r\n.\r\n")
	id := queuedID(t, c.reply())
	body := stored(t, q, id)
	if !strings.HasSuffix(string(body), "\r\nSubject: long line\r\n\r\n"+long+"\r\n.dot\r\n") {
		t.Errorf("long line not stored byte-exact (%d bytes stored)", len(body))
	}
	// Command lines are still limited.
	c.cmd("NOOP "+strings.Repeat("x", 3000), "500 5.5.2 Line too long")
	c.cmd("NOOP", "250")
}

// A command cut off by the command timeout (no CRLF yet) is never
// executed: 421, the connection closes, nothing is queued.
func TestPartialCommandAtTimeoutIsNotExecuted(t *testing.T) {
	addr, q, _ := startListener(t, func(o *Options) {
		o.CommandTimeout = 300 * time.Millisecond
	})
	c := dial(t, addr)
	c.cmd("EHLO client.test", "250")
	c.send("MAIL FROM:<a@b.test>")
	if got := c.reply(); got != "421 4.4.2 mx.example.test Error: timeout exceeded" {
		t.Fatalf("partial MAIL at the timeout: %q", got)
	}
	if got := c.reply(); !strings.HasPrefix(got, "EOF") {
		t.Fatalf("connection still open: %q", got)
	}
	if st, _ := q.Stats(); st.Messages != 0 {
		t.Errorf("queued: %+v", st)
	}
}

// RSET after a BDAT chunk without LAST drops the message without a reply
// of its own, and the session goes on (RFC 3030).
func TestBdatThenRsetGoesOn(t *testing.T) {
	addr, q, _ := startListener(t, nil)
	c := dial(t, addr)
	c.cmd("EHLO client.test", "250")
	c.cmd("MAIL FROM:<sender@src.test>", "250")
	c.cmd("RCPT TO:<user@relay.test>", "250")
	c.send("BDAT 18\r\nSubject: partial\r\n")
	c.expect("250")
	c.cmd("RSET", "250 2.0.0 Ok")
	c.cmd("NOOP", "250 2.0.0 Ok")
	if st, _ := q.Stats(); st.Messages != 0 {
		t.Errorf("aborted message queued: %+v", st)
	}
	c.envelope("user@relay.test")
	c.send("Subject: second\r\n\r\nok\r\n.\r\n")
	id := queuedID(t, c.reply())
	if body := stored(t, q, id); !strings.HasSuffix(string(body), "\r\nSubject: second\r\n\r\nok\r\n") {
		t.Errorf("second message %q", body)
	}
}
