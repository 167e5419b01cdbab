package smtpd

import (
	"strings"
	"testing"
)

// Issue 16, section 6: the smaller protocol points as a client sees them.

// RFC 5321 section 4.1.1.1: the first line of the EHLO reply names the
// server; RCPT before MAIL and DATA/BDAT without a recipient are bad
// sequences (503 5.5.1, RFC 5321 section 4.3.2), not 502.
func TestEhloNamesServerAndBadSequence(t *testing.T) {
	addr, _, _ := startListener(t, nil)
	c := dial(t, addr)
	c.send("EHLO client.test\r\n")
	first, err := c.r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if first != "250-mx.example.test\r\n" {
		t.Errorf("first EHLO line %q, want 250-mx.example.test", first)
	}
	c.expect("250 ") // the rest of the reply
	c.cmd("RCPT TO:<u@relay.test>", "503 5.5.1")
	c.cmd("DATA", "503 5.5.1")
	c.cmd("MAIL FROM:<s@src.test>", "250")
	c.cmd("DATA", "503 5.5.1")
	c.cmd("BDAT 4 LAST", "503 5.5.1")
}

// RFC 6531 section 3.7.3: a message received with SMTPUTF8 says
// "with UTF8SMTP" (UTF8SMTPS with TLS, UTF8SMTPA, UTF8SMTPSA) in its
// Received header, never "UTF8ESMTP".
func TestReceivedWithKeyword(t *testing.T) {
	for _, tc := range []struct {
		tls, auth, utf8 bool
		want            string
	}{
		{false, false, false, "ESMTP"},
		{true, false, false, "ESMTPS"},
		{false, true, false, "ESMTPA"},
		{true, true, false, "ESMTPSA"},
		{false, false, true, "UTF8SMTP"},
		{true, false, true, "UTF8SMTPS"},
		{false, true, true, "UTF8SMTPA"},
		{true, true, true, "UTF8SMTPSA"},
	} {
		if got := withKeyword(tc.tls, tc.auth, tc.utf8); got != tc.want {
			t.Errorf("tls=%v auth=%v utf8=%v: %q, want %q", tc.tls, tc.auth, tc.utf8, got, tc.want)
		}
	}

	addr, q, _ := startListener(t, nil)
	c := dial(t, addr)
	c.cmd("EHLO client.test", "250")
	c.cmd("MAIL FROM:<jörg@src.test> SMTPUTF8", "250")
	c.cmd("RCPT TO:<user@relay.test>", "250")
	c.cmd("DATA", "354")
	c.send("Subject: grüße\r\n\r\nbody\r\n.\r\n")
	id := queuedID(t, c.reply())
	body := string(stored(t, q, id))
	if !strings.Contains(body, "(mxedge) with UTF8SMTP id "+id) {
		t.Errorf("Received header: %q", body[:strings.Index(body, ";")])
	}
}
