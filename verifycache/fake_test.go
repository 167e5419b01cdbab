package verifycache

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxedge/mxedge/delivery"
	"github.com/mxedge/mxedge/internal/fakeclock"
)

// FakeBackend is a mailbox backend for the tests: a hand-written SMTP
// server on 127.0.0.x that records every command line, knows a set of
// users and can be told to hold RCPT replies, refuse MAIL, or accept any
// recipient (catch-all). Exported for the external tests of this package.
type FakeBackend struct {
	ln net.Listener

	mu    sync.Mutex
	users map[string]bool // nil: every recipient exists (catch-all)
	// Gate, if set, makes each RCPT wait until a value is received from
	// it (or it is closed) before answering.
	gate      chan struct{}
	mailReply string // if set, the reply to MAIL
	rcptReply string // if set, the reply to every RCPT
	cmds      []string
	conns     int
	inRcpt    int // RCPTs waiting at the gate
	closed    chan struct{}
	wg        sync.WaitGroup
	open      map[net.Conn]bool
}

// StartFake starts a backend on addr ("127.0.0.3:0") that knows users.
func StartFake(t testing.TB, addr string, users ...string) *FakeBackend {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b := &FakeBackend{ln: ln, closed: make(chan struct{}), open: map[net.Conn]bool{}}
	if users != nil {
		b.SetUsers(users...)
	}
	b.wg.Add(1)
	go b.accept()
	t.Cleanup(b.Close)
	return b
}

// Addr is the backend's "host:port".
func (b *FakeBackend) Addr() string { return b.ln.Addr().String() }

// SetUsers replaces the known users (local parts, compared exactly).
func (b *FakeBackend) SetUsers(users ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.users = map[string]bool{}
	for _, u := range users {
		b.users[u] = true
	}
}

// CatchAll makes every recipient exist.
func (b *FakeBackend) CatchAll() {
	b.mu.Lock()
	b.users = nil
	b.mu.Unlock()
}

// Hold makes RCPT replies wait for the returned channel (send or close).
func (b *FakeBackend) Hold() chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gate = make(chan struct{})
	return b.gate
}

// SetMailReply sets the reply to MAIL ("" for 250).
func (b *FakeBackend) SetMailReply(r string) { b.mu.Lock(); b.mailReply = r; b.mu.Unlock() }

// SetRcptReply sets the reply to every RCPT ("" to decide by users).
func (b *FakeBackend) SetRcptReply(r string) { b.mu.Lock(); b.rcptReply = r; b.mu.Unlock() }

// Commands returns every command line received.
func (b *FakeBackend) Commands() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.cmds...)
}

// Count returns how many command lines start with prefix (case-sensitive).
func (b *FakeBackend) Count(prefix string) int {
	n := 0
	for _, c := range b.Commands() {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

// Conns returns the number of connections accepted.
func (b *FakeBackend) Conns() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.conns
}

// Waiting returns the number of RCPTs held at the gate.
func (b *FakeBackend) Waiting() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inRcpt
}

// DropIdle closes every open connection (the far end timing out idle
// connections).
func (b *FakeBackend) DropIdle() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.open {
		c.Close()
	}
}

// Close stops the backend.
func (b *FakeBackend) Close() {
	select {
	case <-b.closed:
		return
	default:
	}
	close(b.closed)
	b.ln.Close()
	b.DropIdle()
	b.wg.Wait()
}

func (b *FakeBackend) accept() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		b.conns++
		b.open[c] = true
		b.mu.Unlock()
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.serve(c)
			b.mu.Lock()
			delete(b.open, c)
			b.mu.Unlock()
		}()
	}
}

func (b *FakeBackend) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	say := func(s string) { c.Write([]byte(s + "\r\n")) }
	say("220 backend.test ESMTP fake")
	for {
		c.SetReadDeadline(time.Now().Add(time.Minute))
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		b.mu.Lock()
		b.cmds = append(b.cmds, line)
		mailReply, rcptReply, gate := b.mailReply, b.rcptReply, b.gate
		b.mu.Unlock()
		verb := strings.ToUpper(line)
		switch {
		case strings.HasPrefix(verb, "EHLO"):
			say("250-backend.test")
			say("250-8BITMIME")
			say("250-SMTPUTF8")
			say("250 ENHANCEDSTATUSCODES")
		case strings.HasPrefix(verb, "MAIL FROM:"):
			if mailReply != "" {
				say(mailReply)
				continue
			}
			say("250 2.1.0 Ok")
		case strings.HasPrefix(verb, "RCPT TO:"):
			if gate != nil {
				b.mu.Lock()
				b.inRcpt++
				b.mu.Unlock()
				select {
				case <-gate:
				case <-b.closed:
				}
				b.mu.Lock()
				b.inRcpt--
				b.mu.Unlock()
			}
			if rcptReply != "" {
				say(rcptReply)
				continue
			}
			arg := strings.TrimPrefix(line[len("RCPT TO:"):], " ")
			arg, _, _ = strings.Cut(arg, " ")
			addr := strings.Trim(arg, "<>")
			local := addr[:max(strings.LastIndexByte(addr, '@'), 0)]
			b.mu.Lock()
			ok := b.users == nil || b.users[local]
			b.mu.Unlock()
			if !ok {
				say("550 5.1.1 <" + addr + ">: Recipient address rejected: User unknown in local recipient table")
				continue
			}
			say("250 2.1.5 Ok")
		case verb == "DATA":
			say("354 go ahead") // a probe must never get here
		case verb == "RSET":
			say("250 2.0.0 Ok")
		case verb == "QUIT":
			say("221 2.0.0 Bye")
			return
		default:
			say("502 5.5.2 Error: command not recognized")
		}
	}
}

// fakeClock is a settable cache clock.
type fakeClock = fakeclock.Clock

func newFakeClock() *fakeClock {
	return fakeclock.New(time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC))
}

// switchDialer is a Dialer over delivery's client layer whose next hops
// can be changed (backend moved or down): each set builds a Deliverer with
// one route per hop, so dead-hop state starts afresh. (The adapter is
// internal/probedial's, which this package's own tests cannot import.)
type switchDialer struct {
	t     testing.TB
	mu    sync.Mutex
	d     *delivery.Deliverer
	names []string // the route domain of each hop, in order
}

func (r *switchDialer) set(hops ...string) {
	routes := map[string]string{}
	names := make([]string, len(hops))
	for i, h := range hops {
		names[i] = fmt.Sprintf("hop%d.test", i)
		routes[names[i]] = h
	}
	d := delivery.New(delivery.Options{Hostname: "mx1.relay.test", Routes: routes,
		ConnectTimeout: 2 * time.Second, ReplyTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	r.t.Cleanup(func() { d.Close() })
	r.mu.Lock()
	r.d, r.names = d, names
	r.mu.Unlock()
}

func (r *switchDialer) Hops(ctx context.Context, _ string) ([]Hop, error) {
	r.mu.Lock()
	d, names := r.d, r.names
	r.mu.Unlock()
	var out []Hop
	for _, n := range names {
		hs, err := d.Hops(ctx, n)
		if err != nil {
			return nil, err
		}
		for _, h := range hs {
			out = append(out, testHop{d, h})
		}
	}
	return out, nil
}

type testHop struct {
	d *delivery.Deliverer
	h delivery.Hop
}

func (h testHop) String() string { return h.h.String() }

func (h testHop) Dial(ctx context.Context, fresh bool, debug io.Writer) (Conn, error) {
	c, err := h.d.Dial(ctx, h.h, delivery.DialOptions{Fresh: fresh, Debug: debug})
	var de *delivery.DialError
	if errors.As(err, &de) {
		return nil, &DialError{Stage: de.Stage, Refused: de.Refused, Text: de.Text}
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// syncBuffer is a log sink shared by goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// deadAddr returns an address where nothing listens.
func deadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
