package smtpd

import (
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/mxedge/mxedge/policy"
	"github.com/mxedge/mxedge/queue"
)

// FuzzGate drives the gate (per-client limits, pregreet test, the
// session behind it) with random client bytes and timing: each input is
// a script of writes, pauses, half-closes and reads on up to two
// connections from 127.0.0.x. Nothing may panic, and once the clients are
// gone every session ends and no goroutine is left behind.
func FuzzGate(f *testing.F) {
	f.Add([]byte("\x00\x08EHLO x\r\n\x03"))                                                     // early talker
	f.Add([]byte("\x01\x10\x03\x00\x10EHLO client.test\r\n\x03\x00\x06QUIT\r\n\x03"))           // patient
	f.Add([]byte("\x01\x0f\x00\x30MAIL FROM:<a@b.test>\r\nRCPT TO:<u@relay.test>\r\nDATA\r\n")) // pipelined, no HELO
	f.Add([]byte("\x04\x00\x04NOOP\x02\x04\x00\x02\r\n\x03"))                                   // two connections, half-close
	f.Add([]byte("\x05\x05\x05\x05\x00\x01x"))                                                  // over the session limit
	srv, addr := fuzzServer(f)
	var (
		once     sync.Once
		baseline int
	)
	f.Fuzz(func(t *testing.T, script []byte) {
		once.Do(func() { baseline = runtime.NumGoroutine() })
		var conns []net.Conn
		cur := -1
		dial := func() {
			if len(conns) >= 2 {
				return
			}
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(40+len(conns)))}, Timeout: time.Second}
			nc, err := d.Dial("tcp", addr)
			if err != nil {
				return
			}
			conns = append(conns, nc)
			cur = len(conns) - 1
		}
		dial()
		buf := make([]byte, 4096)
		for i := 0; i < len(script) && cur >= 0; i++ {
			nc := conns[cur]
			switch script[i] % 6 {
			case 0: // write the next n bytes
				if i+1 >= len(script) {
					break
				}
				n := int(script[i+1])
				i += 2
				end := min(i+n, len(script))
				nc.SetWriteDeadline(time.Now().Add(time.Second))
				nc.Write(script[i:end])
				i = end - 1
			case 1: // pause
				if i+1 < len(script) {
					i++
					time.Sleep(time.Duration(script[i]%40) * time.Millisecond)
				}
			case 2: // half-close
				if tc, ok := nc.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
			case 3: // read what is there
				nc.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
				nc.Read(buf)
			case 4: // another connection, or switch
				if len(conns) < 2 {
					dial()
				} else {
					cur = 1 - cur
				}
			case 5: // a connection that is dropped at once
				if c, err := net.Dial("tcp", addr); err == nil {
					c.Close()
				}
			}
		}
		for _, nc := range conns {
			nc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			io.Copy(io.Discard, nc)
			nc.Close()
		}
		deadline := time.Now().Add(10 * time.Second)
		for srv.gate.sessions.Load() != 0 || runtime.NumGoroutine() > baseline {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Fatalf("sessions %d, goroutines %d (baseline %d) after the clients left:\n%s",
					srv.gate.sessions.Load(), runtime.NumGoroutine(), baseline, buf[:n])
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
}

// fuzzServer starts the listener FuzzGate drives, for the whole run.
func fuzzServer(f *testing.F) (*Server, string) {
	dir := f.TempDir()
	q, err := queue.Open(dir, queue.Options{Logger: discardLogger()})
	if err != nil {
		f.Fatal(err)
	}
	chain := (&policy.Chain{}).Add(&policy.Limits{Sessions: 1, ConnRate: 1000}).Add(policy.NewRelay([]string{"relay.test"}))
	s := New(Options{Hostname: "mx.example.test", Logger: discardLogger(), PregreetWait: 15 * time.Millisecond,
		CommandTimeout: 300 * time.Millisecond, DataTimeout: 300 * time.Millisecond, SessionTime: 2 * time.Second,
		ErrorSleep: time.Millisecond}, q, chain)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	served := make(chan struct{})
	go func() { s.Serve(ln); close(served) }()
	f.Cleanup(func() { s.smtp.Close(); <-served; q.Close() })
	// Serving (every goroutine of the listener started) once a banner
	// comes; then back to no session, for the goroutine baseline.
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		f.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Read(make([]byte, 1)); err != nil {
		f.Fatal(err)
	}
	nc.Close()
	for deadline := time.Now().Add(10 * time.Second); s.gate.sessions.Load() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			f.Fatal("the first session did not end")
		}
	}
	return s, ln.Addr().String()
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
