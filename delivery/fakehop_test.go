package delivery

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxedge/mxedge/internal/fakeclock"
)

// fakeHop is a next hop whose connections a test scripts, for what
// internal/smtptest cannot do: close an idle connection, refuse the
// greeting, hold the greeting back. It records the client address of every
// connection in the order accepted, so that a test can prove that no
// connection was made (see acceptedBefore).
type fakeHop struct {
	ln     net.Listener
	handle func(c net.Conn)

	mu       sync.Mutex
	accepted []string
	acceptCh chan string
	wg       sync.WaitGroup
}

// startFakeHop listens on 127.0.0.6 and runs handle for every connection;
// it stops when the test ends.
func startFakeHop(t *testing.T, handle func(c net.Conn)) *fakeHop {
	t.Helper()
	return startFakeHopAt(t, "127.0.0.6:0", handle)
}

// startFakeHopAt is startFakeHop on addr.
func startFakeHopAt(t *testing.T, addr string, handle func(c net.Conn)) *fakeHop {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	h := &fakeHop{ln: ln, handle: handle, acceptCh: make(chan string, 1000)}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			h.mu.Lock()
			h.accepted = append(h.accepted, c.RemoteAddr().String())
			h.mu.Unlock()
			h.acceptCh <- c.RemoteAddr().String()
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				defer c.Close()
				h.handle(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); h.wg.Wait() })
	return h
}

func (h *fakeHop) addr() string { return h.ln.Addr().String() }

// conns is the number of connections accepted so far.
func (h *fakeHop) conns() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.accepted)
}

// acceptedBefore connects a marker connection of its own and returns how
// many connections the hop accepted before it. Connections are accepted in
// the order they were made, so this counts every connection made before
// the call, including any whose Accept had not run yet.
func (h *fakeHop) acceptedBefore(t *testing.T) int {
	t.Helper()
	c, err := net.Dial("tcp", h.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	marker := c.LocalAddr().String()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case a := <-h.acceptCh:
			if a == marker {
				h.mu.Lock()
				defer h.mu.Unlock()
				for i, x := range h.accepted {
					if x == marker {
						h.accepted = append(h.accepted[:i], h.accepted[i+1:]...)
						return i
					}
				}
			}
		case <-timeout:
			t.Fatal("marker connection not accepted")
		}
	}
}

// script is what serveSMTP does at the points a test cares about.
type script struct {
	// greeting replaces "220 fake.test ESMTP"; a code other than 220 ends
	// the session after it.
	greeting string
	// dot returns the reply to the final "." of the n-th message on this
	// connection (n from 1); "" closes the connection without a reply.
	// nil: 250.
	dot func(n int) string
	// idle runs after the reply to the n-th message; false closes the
	// connection (after it wrote, say, a 421).
	idle func(n int, w *bufio.Writer) bool
	// tls, if set, is offered with STARTTLS.
	tls *tls.Config
	// starttls replaces the reply "220 2.0.0 Ready to start TLS"; a reply
	// other than 220 keeps the session in plaintext. "garbage" answers
	// 220 and then sends bytes that are not TLS.
	starttls string
	// record gets every command line, "TLS: " in front after STARTTLS,
	// and "DATA: <bytes>" for each message.
	record func(line string)
	// no8bit: do not announce 8BITMIME.
	no8bit bool
	// auth, if set, is offered as AUTH PLAIN (after STARTTLS if tls is
	// set) and is the base64 response that succeeds.
	auth string
}

// serveSMTP is a minimal SMTP server session in which every command
// succeeds, scripted by s.
func serveSMTP(c net.Conn, s script) {
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	say := func(line string) { w.WriteString(line + "\r\n"); w.Flush() }
	if s.greeting == "" {
		s.greeting = "220 fake.test ESMTP"
	}
	say(s.greeting)
	if !strings.HasPrefix(s.greeting, "220") {
		return
	}
	n := 0
	prefix := ""
	record := func(line string) {
		if s.record != nil {
			s.record(prefix + line)
		}
	}
	for {
		c.SetReadDeadline(time.Now().Add(time.Minute))
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		record(strings.TrimRight(line, "\r\n"))
		verb, _, _ := strings.Cut(strings.ToUpper(strings.TrimSpace(line)), " ")
		switch verb {
		case "EHLO":
			say("250-fake.test")
			if s.tls != nil && prefix == "" {
				say("250-STARTTLS")
			}
			if s.auth != "" && (s.tls == nil || prefix != "") {
				say("250-AUTH PLAIN")
			}
			if !s.no8bit {
				say("250-8BITMIME")
			}
			say("250 SIZE 104857600")
		case "AUTH":
			if f := strings.Fields(line); len(f) == 3 && f[2] == s.auth {
				say("235 2.7.0 Authentication successful")
			} else {
				say("535 5.7.8 Authentication credentials invalid")
			}
		case "STARTTLS":
			if s.tls == nil || prefix != "" {
				say("502 5.5.1 no")
				continue
			}
			reply := s.starttls
			if reply == "" || reply == "garbage" {
				reply = "220 2.0.0 Ready to start TLS"
			}
			say(reply)
			if !strings.HasPrefix(reply, "220") {
				continue
			}
			if s.starttls == "garbage" {
				c.Write([]byte("this is not TLS\r\n"))
				return
			}
			tc := tls.Server(c, s.tls)
			tc.SetDeadline(time.Now().Add(10 * time.Second))
			if err := tc.Handshake(); err != nil {
				return
			}
			tc.SetDeadline(time.Time{})
			c = tc
			r, w = bufio.NewReader(tc), bufio.NewWriter(tc)
			prefix = "TLS: "
		case "DATA":
			say("354 go ahead")
			var data strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(l)
			}
			record("DATA: " + data.String())
			n++
			reply := "250 2.0.0 Ok: queued"
			if s.dot != nil {
				reply = s.dot(n)
			}
			if reply == "" {
				return
			}
			say(reply)
			if s.idle != nil && !s.idle(n, w) {
				return
			}
		case "QUIT":
			say("221 2.0.0 Bye")
			return
		default:
			say("250 2.0.0 Ok")
		}
	}
}

// fakeClock is the Deliverer's clock in tests.
type fakeClock = fakeclock.Clock

func newFakeClock() *fakeClock {
	return fakeclock.New(time.Date(2025, 11, 23, 10, 0, 0, 0, time.UTC))
}
