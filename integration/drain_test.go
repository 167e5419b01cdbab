package integration

import (
	"bufio"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// smtpConn is a raw client session for the drain scenarios.
type smtpConn struct {
	t  *testing.T
	c  net.Conn
	rd *bufio.Reader
}

func dialSMTP(t *testing.T, addr string) *smtpConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return &smtpConn{t: t, c: c, rd: bufio.NewReader(c)}
}

// reply reads one (multi-line) reply and returns its last line.
func (s *smtpConn) reply() string {
	s.t.Helper()
	for {
		line, err := s.rd.ReadString('\n')
		if err != nil {
			s.t.Fatalf("reading reply: %v (got %q)", err, line)
		}
		if len(line) < 4 || line[3] != '-' {
			return strings.TrimRight(line, "\r\n")
		}
	}
}

func (s *smtpConn) cmd(line, wantPrefix string) string {
	s.t.Helper()
	fmt.Fprintf(s.c, "%s\r\n", line)
	got := s.reply()
	if !strings.HasPrefix(got, wantPrefix) {
		s.t.Fatalf("%s: %q, want %s...", line, got, wantPrefix)
	}
	return got
}

// startTransaction opens a session and stops inside DATA.
func startTransaction(t *testing.T, addr string) *smtpConn {
	s := dialSMTP(t, addr)
	if b := s.reply(); !strings.HasPrefix(b, "220 ") {
		t.Fatalf("banner %q", b)
	}
	s.cmd("EHLO client.src.test", "250 ")
	s.cmd("MAIL FROM:<sender@src.test>", "250 2.1.0")
	s.cmd("RCPT TO:<alice@relay.test>", "250 2.1.5")
	s.cmd("DATA", "354 ")
	fmt.Fprintf(s.c, "Subject: in flight\r\n\r\nbody\r\n")
	return s
}

func (s *smtpConn) finishData() string {
	s.t.Helper()
	return s.cmd(".", "250 2.0.0 Ok: queued as ")
}

// Operator's story: maintenance on one relay of the pair. "mxedge drain"
// makes new connections get 421 4.3.2 (senders try the other MX) while a
// session in flight still gets its message queued; "mxedge drain -off"
// takes new connections again.
func TestDrain(t *testing.T) {
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	cfg := writeConfig(t, dir, relayConfig(filepath.Join(dir, "data"), mx, be.Addr()))
	startRelay(t, dir, "-config", cfg)

	inFlight := startTransaction(t, mx)
	if out := mustMxedge(t, "drain", "-config", cfg); !strings.HasPrefix(out, "draining") {
		t.Fatalf("mxedge drain: %q", out)
	}
	if b := dialSMTP(t, mx).reply(); !strings.HasPrefix(b, "421 4.3.2 ") {
		t.Errorf("new connection while draining: %q, want 421 4.3.2", b)
	}
	inFlight.finishData()
	if _, err := be.WaitMessages(1, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if out := mustMxedge(t, "drain", "-off", "-config", cfg); !strings.HasPrefix(out, "accepting") {
		t.Fatalf("mxedge drain -off: %q", out)
	}
	if b := dialSMTP(t, mx).reply(); !strings.HasPrefix(b, "220 ") {
		t.Errorf("new connection after drain -off: %q, want 220", b)
	}
}

// SIGTERM: new connections get 421 4.3.2 at once, a session in the middle
// of DATA finishes and gets its 250, then the relay exits 0.
func TestSIGTERMLetsSessionsFinish(t *testing.T) {
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	cfg := writeConfig(t, dir, relayConfig(filepath.Join(dir, "data"), mx, be.Addr()))
	r := startRelay(t, dir, "-config", cfg)

	inFlight := startTransaction(t, mx)
	stopped := make(chan error, 1)
	go func() {
		code, err := r.stop(30 * time.Second)
		if err == nil && code != 0 {
			err = fmt.Errorf("exit code %d", code)
		}
		stopped <- err
	}()
	if _, err := r.logs.wait("listener draining|draining=true", 1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if b := dialSMTP(t, mx).reply(); !strings.HasPrefix(b, "421 4.3.2 ") {
		t.Errorf("new connection after SIGTERM: %q, want 421 4.3.2", b)
	}
	select {
	case err := <-stopped:
		t.Fatalf("relay stopped (%v) with a session in DATA", err)
	default:
	}
	inFlight.finishData()
	inFlight.cmd("QUIT", "221 ")
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}
