package submission

import (
	"bytes"
	"context"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-milter"

	"github.com/mxedge/mxedge/internal/miltertest"
	"github.com/mxedge/mxedge/queue"
)

// spamMilter is a filter written with go-milter's server: it rejects a
// body with "BUY NOW", tempfails one with "LATER", and otherwise adds a
// header; it records the macros it saw.
type spamMilter struct {
	milter.NoOpMilter
	mu     *sync.Mutex
	macros map[string]string
	body   bytes.Buffer
}

func (s *spamMilter) record(m *milter.Modifier) (milter.Response, error) {
	s.mu.Lock()
	for k, v := range m.Macros {
		s.macros[k] = v
	}
	s.mu.Unlock()
	return milter.RespContinue, nil
}

func (s *spamMilter) Connect(_ string, _ string, _ uint16, _ net.IP, m *milter.Modifier) (milter.Response, error) {
	return s.record(m)
}
func (s *spamMilter) Helo(_ string, m *milter.Modifier) (milter.Response, error) { return s.record(m) }
func (s *spamMilter) MailFrom(_ string, m *milter.Modifier) (milter.Response, error) {
	return s.record(m)
}

func (s *spamMilter) Headers(_ textproto.MIMEHeader, m *milter.Modifier) (milter.Response, error) {
	return milter.RespContinue, nil
}

func (s *spamMilter) BodyChunk(c []byte, _ *milter.Modifier) (milter.Response, error) {
	s.body.Write(c)
	return milter.RespContinue, nil
}

func (s *spamMilter) Body(m *milter.Modifier) (milter.Response, error) {
	switch {
	case bytes.Contains(s.body.Bytes(), []byte("BUY NOW")):
		return milter.RespReject, nil
	case bytes.Contains(s.body.Bytes(), []byte("LATER")):
		return milter.RespTempFail, nil
	}
	m.AddHeader("X-Spam-Checked", "yes; score=0.1")
	return milter.RespAccept, nil
}

func startMilter(t *testing.T) (addr string, macros func() map[string]string) {
	t.Helper()
	var mu sync.Mutex
	seen := map[string]string{}
	ln := miltertest.Start(t, "127.0.0.1:0", func() milter.Milter { return &spamMilter{mu: &mu, macros: seen} },
		milter.OptAddHeader|milter.OptQuarantine)
	return ln.Addr().String(), func() map[string]string {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]string{}
		for k, v := range seen {
			out[k] = v
		}
		return out
	}
}

func TestMilterVerdicts(t *testing.T) {
	addr, macros := startMilter(t)
	ms := Milters{{Name: "spam", Network: "tcp", Address: addr, DefaultAction: "tempfail", Hostname: "smtp.example.org"}}
	sub := queue.Origin{Listener: "submission", Kind: "submission", ClientIP: "192.0.2.7", AuthUser: "alice@example.org", TLS: "TLSv1.3 TLS_AES_128_GCM_SHA256", Helo: "laptop"}
	ctx := context.Background()

	v, err := ms.Filter(ctx, queued(t, sub, "From: alice@example.org\r\nSubject: hi\r\n\r\nhello\r\n"))
	if err != nil || v.Hold || string(v.Fields) != "X-Spam-Checked: yes; score=0.1\r\n" {
		t.Errorf("clean: %+v %v", v, err)
	}
	got := macros()
	for k, want := range map[string]string{"{auth_authen}": "alice@example.org", "{mail_addr}": "alice@example.org", "{client_addr}": "192.0.2.7", "j": "smtp.example.org", "{tls_version}": "TLSv1.3"} {
		if got[k] != want {
			t.Errorf("macro %s = %q, want %q (all: %v)", k, got[k], want, got)
		}
	}
	if !strings.HasPrefix(got["i"], "0") {
		t.Errorf("macro i (queue ID) = %q", got["i"])
	}

	v, err = ms.Filter(ctx, queued(t, sub, "From: alice@example.org\r\n\r\nBUY NOW\r\n"))
	if err != nil || !v.Hold || v.Reply != "550 5.7.1 Message rejected by the content filter" {
		t.Errorf("spam: %+v %v", v, err)
	}
	if _, err := ms.Filter(ctx, queued(t, sub, "From: alice@example.org\r\n\r\nLATER\r\n")); err == nil {
		t.Error("tempfail not a deferral")
	}
	// MX mail is not this filter's.
	if v, err := ms.Filter(ctx, queued(t, queue.Origin{Listener: "mx", Kind: "mx"}, "From: x@y\r\n\r\nBUY NOW\r\n")); err != nil || v.Hold || v.Fields != nil {
		t.Errorf("mx mail filtered: %+v %v", v, err)
	}
	// A filter that is down: tempfail defers, accept passes, reject holds.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := ln.Addr().String()
	ln.Close()
	for action, check := range map[string]func(queue.Verdict, error) bool{
		"tempfail": func(v queue.Verdict, err error) bool { return err != nil },
		"accept":   func(v queue.Verdict, err error) bool { return err == nil && !v.Hold },
		"reject":   func(v queue.Verdict, err error) bool { return err == nil && v.Hold },
	} {
		ms := Milters{{Name: "down", Network: "tcp", Address: down, DefaultAction: action}}
		if v, err := ms.Filter(ctx, queued(t, sub, "From: a@b\r\n\r\nx\r\n")); !check(v, err) {
			t.Errorf("down, %s: %+v %v", action, v, err)
		}
	}
}

func TestParseMilterAddress(t *testing.T) {
	for in, want := range map[string]string{"inet:127.0.0.1:11332": "tcp 127.0.0.1:11332", "inet6:[::1]:11332": "tcp [::1]:11332", "unix:/run/rspamd/milter.sock": "unix /run/rspamd/milter.sock"} {
		n, a, err := ParseMilterAddress(in)
		if err != nil || n+" "+a != want {
			t.Errorf("%s: %s %s %v", in, n, a, err)
		}
	}
	for _, bad := range []string{"127.0.0.1:11332", "inet:nohost", "unix:relative"} {
		if _, _, err := ParseMilterAddress(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
