package smtptest

import (
	"fmt"
	"net"
	"sort"
	"time"
)

// markerIP is the source address of the server's own marker connections
// (see Conns). No test client uses it.
var markerIP = net.IPv4(127, 0, 0, 254)

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		remote := c.RemoteAddr().String()
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok && a.IP.Equal(markerIP) {
			c.Close()
			s.mu.Lock()
			s.markers[remote] = true
			s.notifyLocked()
			s.mu.Unlock()
			continue
		}
		s.mu.Lock()
		if s.done {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.remotes = append(s.remotes, remote)
		ss := &Session{Conn: len(s.remotes), Remote: remote, srv: s, raw: c, w: c, handler: s.cfg.handler,
			dropped: make(chan struct{}), ended: make(chan struct{})}
		s.open[ss] = true
		s.notifyLocked()
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serve(ss)
			c.Close()
			s.mu.Lock()
			delete(s.open, ss)
			s.mu.Unlock()
			close(ss.ended)
		}()
	}
}

// openSessionsLocked returns the open sessions in the order accepted.
// s.mu must be held.
func (s *Server) openSessionsLocked() []*Session {
	open := make([]*Session, 0, len(s.open))
	for ss := range s.open {
		open = append(open, ss)
	}
	sort.Slice(open, func(i, j int) bool { return open[i].Conn < open[j].Conn })
	return open
}

// Conns returns the number of connections made to the server before the
// call, including any the server had not accepted yet: it makes a marker
// connection of its own (from 127.0.0.254, not counted) and waits until
// that is accepted, and connections are accepted in the order they were
// made. So a test can prove that no connection was made.
func (s *Server) Conns() int {
	s.flush()
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.remotes)
}

// Remotes returns the client address of every connection, in the order
// accepted, counted as Conns counts them.
func (s *Server) Remotes() []string {
	s.flush()
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.remotes...)
}

// WaitConns waits until at least n connections were accepted, or timeout
// passed.
func (s *Server) WaitConns(n int, timeout time.Duration) error {
	var got int
	if !s.waitFor(timeout, func() bool { got = len(s.remotes); return got >= n }) {
		return fmt.Errorf("smtptest: %d of %d connections within %v", got, n, timeout)
	}
	return nil
}

// flush waits until every connection made before the call is accepted
// (see Conns). It gives up if the server is closed.
func (s *Server) flush() {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: markerIP}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", s.Addr())
	if err != nil {
		return
	}
	marker := c.LocalAddr().String()
	c.Close()
	s.waitFor(5*time.Second, func() bool {
		if s.markers[marker] {
			delete(s.markers, marker)
			return true
		}
		return s.done
	})
}

// CloseIdle closes every open connection, as a server does when its idle
// timeout strikes (call it while the connections are idle): it first
// writes farewell to each, unless "" (Postfix says "421 4.4.2 <host>
// Error: timeout exceeded"). It returns when their sessions are over.
func (s *Server) CloseIdle(farewell string) {
	s.mu.Lock()
	open := s.openSessionsLocked()
	s.mu.Unlock()
	for _, ss := range open {
		ss.drop(farewell)
	}
	for _, ss := range open {
		<-ss.ended
	}
}

// Hold makes every session that reaches stage wait there, before the
// reply, until release is called (or its connection is closed, or the
// server). A second Hold of the same stage replaces the gate for sessions
// that arrive later.
func (s *Server) Hold(stage Stage) (release func()) {
	g := make(chan struct{})
	s.mu.Lock()
	s.gates[stage] = g
	s.mu.Unlock()
	released := false
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if released {
			return
		}
		released = true
		close(g)
		if s.gates[stage] == g {
			s.gates[stage] = nil
		}
	}
}

// Held returns the number of sessions waiting at a Hold now.
func (s *Server) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// WaitHeld waits until at least n sessions wait at a Hold, or timeout
// passed.
func (s *Server) WaitHeld(n int, timeout time.Duration) error {
	var got int
	if !s.waitFor(timeout, func() bool { got = s.held; return got >= n }) {
		return fmt.Errorf("smtptest: %d of %d sessions held within %v", got, n, timeout)
	}
	return nil
}

// hold waits at stage's gate, if there is one. It returns false if the
// connection or the server was closed meanwhile.
func (ss *Session) hold(stage Stage) bool {
	s := ss.srv
	s.mu.Lock()
	g := s.gates[stage]
	if g == nil {
		s.mu.Unlock()
		return true
	}
	s.held++
	s.notifyLocked()
	s.mu.Unlock()
	ok := false
	select {
	case <-g:
		ok = true
	case <-ss.dropped:
	case <-s.closed:
	}
	s.mu.Lock()
	s.held--
	s.notifyLocked()
	s.mu.Unlock()
	return ok
}

// waitFor waits until cond, called with s.mu held, returns true, or
// timeout passed.
func (s *Server) waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok, changed := cond(), s.changed
		s.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return false
		}
	}
}
