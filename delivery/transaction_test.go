package delivery

import (
	"bufio"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxedge/mxedge/queue"
)

// scripted is a next hop for the transaction tests, written out here so
// that it can prove pipelining: with pipeline set it announces PIPELINING
// and answers nothing of a group before the group's DATA arrived, so a
// client that waits for the MAIL reply before sending RCPT never gets
// one (its reply timeout fails the test). Without pipeline it does not
// announce PIPELINING and notes any command that arrived before the
// previous one was answered.
type scripted struct {
	ln       net.Listener
	pipeline bool
	separate bool                    // each reply in its own writes, split inside the line
	reply    func(cmd string) string // "" for the default (250, 354)
	dotReply string

	mu       sync.Mutex
	cmds     []string
	early    int      // commands that arrived while a reply was owed (no PIPELINING)
	bodies   []string // message data received, final dot excluded
	loneDots int
}

func startScripted(t *testing.T, s *scripted) *scripted {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	s.ln = ln
	if s.dotReply == "" {
		s.dotReply = "250 2.0.0 Ok: queued as SCRIPT"
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); s.serve(c) }()
		}
	}()
	return s
}

func (s *scripted) addr() string { return s.ln.Addr().String() }

func (s *scripted) send(c net.Conn, replies []string) {
	if !s.separate {
		c.Write([]byte(strings.Join(replies, "")))
		return
	}
	for _, r := range replies {
		c.Write([]byte(r[:2]))
		c.Write([]byte(r[2:]))
	}
}

func (s *scripted) serve(c net.Conn) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	c.Write([]byte("220 scripted.test ESMTP\r\n"))
	var pending []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(strings.SplitN(cmd, " ", 2)[0])
		s.mu.Lock()
		s.cmds = append(s.cmds, cmd)
		if !s.pipeline && r.Buffered() > 0 {
			s.early++
		}
		s.mu.Unlock()
		rep := ""
		if s.reply != nil {
			rep = s.reply(cmd)
		}
		switch verb {
		case "EHLO":
			ext := "250-scripted.test\r\n250-ENHANCEDSTATUSCODES\r\n"
			if s.pipeline {
				ext += "250-PIPELINING\r\n"
			}
			s.send(c, []string{ext + "250 8BITMIME\r\n"})
			continue
		case "QUIT":
			s.send(c, append(pending, "221 2.0.0 Bye\r\n"))
			return
		case "RSET":
			s.send(c, append(pending, "250 2.0.0 Ok\r\n"))
			pending = nil
			continue
		case "DATA":
			if rep == "" {
				rep = "354 End data with <CR><LF>.<CR><LF>"
			}
		default:
			if rep == "" {
				rep = "250 2.0.0 Ok"
			}
		}
		pending = append(pending, rep+"\r\n")
		if s.pipeline && verb != "DATA" {
			continue // held until the group's DATA
		}
		s.send(c, pending)
		pending = nil
		if verb != "DATA" || !strings.HasPrefix(rep, "354") {
			continue
		}
		var body strings.Builder
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if l == ".\r\n" {
				break
			}
			body.WriteString(l)
		}
		s.mu.Lock()
		if body.Len() == 0 {
			s.loneDots++
		} else {
			s.bodies = append(s.bodies, body.String())
		}
		s.mu.Unlock()
		s.send(c, []string{s.dotReply + "\r\n"})
	}
}

func (s *scripted) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.cmds...)
}

// deliverTo delivers a three-recipient message to s and returns the
// results by recipient.
func deliverTo(t *testing.T, s *scripted) map[string]queue.Result {
	t.Helper()
	d := New(testOptions(func(o *Options) {
		o.Routes = map[string]string{"relay.test": s.addr()}
		o.ReplyTimeout = 3 * time.Second
	}))
	t.Cleanup(func() { d.Close() })
	msg := spooled(t, "s@src.test", "Subject: x\r\n\r\n.dot\r\n", "a@relay.test", "b@relay.test", "c@relay.test")
	rs := byRcpt(d.Deliver(context.Background(), msg))
	if len(rs) != 3 {
		t.Fatalf("results %+v", rs)
	}
	return rs
}

func wantCodes(t *testing.T, rs map[string]queue.Result, a, b, c int) {
	t.Helper()
	for rcpt, want := range map[string]int{"a@relay.test": a, "b@relay.test": b, "c@relay.test": c} {
		if rs[rcpt].Code != want {
			t.Errorf("%s: %+v, want code %d", rcpt, rs[rcpt], want)
		}
	}
}

// refuse returns a reply function that refuses the RCPTs named with
// reply (and DATA if "DATA" is named).
func refuse(reply string, cmds ...string) func(string) string {
	return func(cmd string) string {
		for _, c := range cmds {
			if strings.Contains(cmd, c) {
				return reply
			}
		}
		return ""
	}
}

// snapshot is what the server saw so far.
func (s *scripted) snapshot() (st struct {
	bodies          []string
	early, loneDots int
}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st.bodies, st.early, st.loneDots = append([]string(nil), s.bodies...), s.early, s.loneDots
	return st
}

func TestPipelinedMiddleRcptRefused(t *testing.T) {
	for _, separate := range []bool{false, true} {
		s := startScripted(t, &scripted{pipeline: true, separate: separate, reply: refuse("550 5.1.1 no such user", "<b@")})
		rs := deliverTo(t, s)
		st := s.snapshot()
		wantCodes(t, rs, 250, 550, 250)
		if rs["b@relay.test"].Enhanced != "5.1.1" || rs["a@relay.test"].Text != "Ok: queued as SCRIPT" {
			t.Errorf("separate=%v: results %+v", separate, rs)
		}
		if len(st.bodies) != 1 || st.bodies[0] != "Subject: x\r\n\r\n..dot\r\n" {
			t.Errorf("separate=%v: bodies %q", separate, st.bodies)
		}
	}
}

func TestPipelinedDataRefused(t *testing.T) {
	s := startScripted(t, &scripted{pipeline: true, reply: refuse("451 4.3.0 try later", "DATA")})
	rs := deliverTo(t, s)
	st := s.snapshot()
	wantCodes(t, rs, 451, 451, 451)
	if len(st.bodies) != 0 || st.loneDots != 0 {
		t.Errorf("message data after a refused DATA: %q, %d lone dots", st.bodies, st.loneDots)
	}
}

func TestPipelinedEveryRcptRefused(t *testing.T) {
	// The next hop answers 354 to DATA although it refused every
	// recipient (RFC 2920 section 3.1): it gets the lone dot, no message.
	s := startScripted(t, &scripted{pipeline: true, separate: true, reply: refuse("550 5.1.1 no such user", "<a@", "<b@", "<c@")})
	rs := deliverTo(t, s)
	st := s.snapshot()
	wantCodes(t, rs, 550, 550, 550)
	if len(st.bodies) != 0 || st.loneDots != 1 {
		t.Errorf("bodies %q, %d lone dots, want none and 1", st.bodies, st.loneDots)
	}
	// The connection was kept; closing the Deliverer QUITs it.
}

func TestPipelinedMailRefused(t *testing.T) {
	s := startScripted(t, &scripted{pipeline: true, reply: refuse("553 5.7.1 sender refused", "MAIL")})
	rs := deliverTo(t, s)
	st := s.snapshot()
	wantCodes(t, rs, 553, 553, 553)
	if len(st.bodies) != 0 {
		t.Errorf("bodies %q", st.bodies)
	}
}

func TestLockstepWithoutPipelining(t *testing.T) {
	s := startScripted(t, &scripted{reply: refuse("550 5.1.1 no such user", "<b@")})
	rs := deliverTo(t, s)
	st := s.snapshot()
	wantCodes(t, rs, 250, 550, 250)
	if st.early != 0 {
		t.Errorf("%d commands sent before the previous reply, to a next hop without PIPELINING: %q", st.early, s.commands())
	}
	cmds := s.commands()
	if len(cmds) < 6 || !strings.HasPrefix(cmds[1], "MAIL FROM:<s@src.test>") || cmds[5] != "DATA" {
		t.Errorf("dialogue %q", cmds)
	}
	if len(st.bodies) != 1 {
		t.Errorf("bodies %q", st.bodies)
	}
}
