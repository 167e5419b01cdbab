package smtp_test

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/emersion/go-smtp"
)

// authBackend's sessions offer PLAIN for alice/secret.
type authBackend struct{ forkBackend }

func (be *authBackend) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &authSession{forkSession{be: &be.forkBackend}}, nil
}

type authSession struct{ forkSession }

func (s *authSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *authSession) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user == "alice" && pass == "secret" {
			return nil
		}
		return errors.New("bad")
	}), nil
}

// FORK.md "AUTH": 538 before TLS, no mechanism offered before TLS, 501 for
// bad base64 and for "*", 503 for AUTH twice, during a transaction and on a
// listener without AUTH.
func TestForkAuth(t *testing.T) {
	l := startAuth(t, &authBackend{})
	c := dialFork(t, l)
	if got := c.cmd("EHLO client.example", "250"); contains(got, "AUTH") {
		t.Errorf("AUTH offered before TLS: %q", got)
	}
	c.cmd("AUTH PLAIN "+b64("\x00alice\x00secret"), "538 5.7.11 ")
	c.cmd("STARTTLS", "220 ")
	tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c = &forkClient{t: t, c: tc, r: bufio.NewReader(tc)}
	if got := c.cmd("EHLO client.example", "250"); !contains(got, "250-AUTH PLAIN") {
		t.Errorf("AUTH not offered after TLS: %q", got)
	}
	c.cmd("AUTH", "501 5.5.4 ")
	c.cmd("AUTH PLAIN !!!notbase64", "501 5.5.2 Invalid base64 data")
	c.cmd("AUTH PLAIN", "334 ")
	c.cmd("@@@", "501 5.5.2 Invalid base64 data")
	c.cmd("AUTH PLAIN", "334 ")
	c.cmd("*", "501 5.7.0 Authentication cancelled")
	c.cmd("MAIL FROM:<a@b.example>", "250 ")
	c.cmd("AUTH PLAIN "+b64("\x00alice\x00secret"), "503 5.5.1 Error: AUTH not allowed during a mail transaction")
	c.cmd("RSET", "250 ")
	c.cmd("AUTH PLAIN "+b64("\x00alice\x00secret"), "235 ")
	c.cmd("AUTH PLAIN "+b64("\x00alice\x00secret"), "503 5.5.1 Already authenticated")

	// A listener whose sessions have no AUTH (an MX).
	_, _, ml := startFork(t, func(s *smtp.Server) { s.TLSConfig = testTLSConfig(t) })
	m := dialFork(t, ml)
	m.cmd("EHLO client.example", "250")
	m.cmd("AUTH PLAIN "+b64("\x00alice\x00secret"), "503 5.5.1 Error: authentication not enabled")
}

func startAuth(t *testing.T, be *authBackend) *countingListener {
	t.Helper()
	_, _, l := startFork(t, func(s *smtp.Server) {
		s.TLSConfig = testTLSConfig(t)
		s.Backend = be
	})
	return l
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func contains(s, sub string) bool { return strings.Contains(s, sub) }
