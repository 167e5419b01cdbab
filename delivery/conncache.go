package delivery

import "time"

// The connection cache: idle sessions per next hop, like Postfix's
// scache(8) with smtp_connection_cache_on_demand. A session is parked
// after a transaction that left it outside any mail transaction, and taken
// by the next transaction to the same hop, most recently used first (so a
// burst's surplus connections age out while the busy ones stay warm).
//
// RSET before reuse (RFC 5321 section 4.1.1.5), as Postfix's smtp(8)
// verifies a cached session (smtp_rset_timeout): a message on a taken
// session goes with SendTransactionAfterReset (go-smtp fork, FORK.md
// section 11), RSET first in the same pipelined group as MAIL, RCPT and
// DATA, which both ends a transaction left open (every RCPT refused, DATA
// refused) and finds a connection the next hop dropped while it was idle,
// before anything of the next message is sent, at no round trip of its
// own. A failed RSET, or a connection that still fails at MAIL (a network
// error or 421 before anything was accepted), makes Deliverer.walk retry
// once on a new connection (never later: once DATA was sent, the next hop
// may have the message). A verification probe on a cached session
// (client.go) still sends RSET on its own first (checkCached).
//
// Ownership: a session is owned by the goroutine using it, or by the cache
// (the idle map) while parked. Whoever removes it from the idle map under
// mu owns it; the idle timer's function does nothing if the session is
// gone from the map.

// take returns a cached session for key (session.key: the next hop,
// plus the TLS plan if it is strict) that may be reused, or nil.
// Sessions found expired are closed.
func (d *Deliverer) take(hop string) *session {
	now := d.now()
	var s *session
	var expired []*session
	d.mu.Lock()
	list := d.idle[hop]
	for len(list) > 0 && s == nil {
		s, list = list[len(list)-1], list[:len(list)-1]
		s.timer.Stop()
		if now.Sub(s.used) >= d.lim.idleTime || !d.reusable(s, now) {
			expired, s = append(expired, s), nil
		}
	}
	if len(list) == 0 {
		delete(d.idle, hop)
	} else {
		d.idle[hop] = list
	}
	d.mu.Unlock()
	for _, e := range expired {
		d.retire(e)
	}
	return s
}

// reusable reports whether s may carry another transaction: younger than
// reuseTime (Postfix smtp_connection_reuse_time_limit) and fewer than
// reuseCount transactions.
func (d *Deliverer) reusable(s *session, now time.Time) bool {
	return now.Sub(s.created) < d.lim.reuseTime && s.count < d.lim.reuseCount && s.probes < maxProbesPerConn
}

// maxProbesPerConn bounds the verification probes (MAIL, RCPT, then the
// next user's RSET: no DATA) on one connection. Servers count such
// commands: Exim's smtp_accept_max_nonmail (10) dropped the connection
// with "554 Too many nonmail commands" at the 6th probe when every reuse
// sent RSET and a new EHLO (integration/exim_test.go); reuse now sends
// RSET alone, and after this many probes the connection ends with QUIT
// and the next probe opens a new one, a margin for servers that count
// RSET alone.
const maxProbesPerConn = 5

// park caches s, which is outside any transaction, for idleTime, or closes
// it if it may not be reused or the Deliverer is closed. With maxIdle
// sessions to the hop already cached, the least recently used one goes.
func (d *Deliverer) park(s *session) {
	now := d.now()
	s.used = now
	if !d.reusable(s, now) {
		d.retire(s)
		return
	}
	var evicted *session
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		d.retire(s)
		return
	}
	list := d.idle[s.key]
	if len(list) >= d.lim.maxIdle {
		evicted = list[0]
		evicted.timer.Stop()
		list = append(list[:0], list[1:]...)
	}
	d.idle[s.key] = append(list, s)
	s.parks++
	gen := s.parks
	s.timer = time.AfterFunc(d.lim.idleTime, func() { d.expire(s, gen) })
	d.mu.Unlock()
	if evicted != nil {
		d.retire(evicted)
	}
}

// expire closes s if it is still idle in the cache since its gen-th
// park: its idle timer fired. (A timer that fired while take stopped it
// finds s gone, or parked again with a new timer.)
func (d *Deliverer) expire(s *session, gen int) {
	d.mu.Lock()
	list := d.idle[s.key]
	found := false
	for i, x := range list {
		if x == s && s.parks == gen {
			list = append(list[:i], list[i+1:]...)
			found = true
			break
		}
	}
	if len(list) == 0 {
		delete(d.idle, s.key)
	} else {
		d.idle[s.key] = list
	}
	d.mu.Unlock()
	if found {
		d.retire(s)
	}
}

// retire closes s, which the caller owns, with QUIT in the background;
// Close waits for those. After Close it just closes the socket.
func (d *Deliverer) retire(s *session) {
	d.mu.Lock()
	closed := d.closed
	if !closed {
		d.quits.Add(1)
	}
	d.mu.Unlock()
	if closed {
		s.c.Close()
		return
	}
	go func() {
		defer d.quits.Done()
		s.quit()
	}()
}

// Close closes every cached connection (QUIT, at most 2 s each, in
// parallel) and waits for connections being closed in the background.
// Deliveries after Close still work but keep no connection. Call it after
// the queue's Run has returned.
func (d *Deliverer) Close() error {
	d.mu.Lock()
	d.closed = true
	var all []*session
	for hop, list := range d.idle {
		for _, s := range list {
			s.timer.Stop()
			all = append(all, s)
		}
		delete(d.idle, hop)
	}
	d.quits.Add(len(all)) // under mu: no Add can race with a Wait
	d.mu.Unlock()
	for _, s := range all {
		go func() {
			defer d.quits.Done()
			s.quit()
		}()
	}
	d.quits.Wait()
	return nil
}

// checkCached verifies with RSET that a cached session is still usable
// before it carries another message (as Postfix's smtp(8) does with
// smtp_rset_timeout), so a connection the next hop dropped while idle is
// found before the transaction starts. A failing session is closed and
// false returned: the caller connects anew.
func (d *Deliverer) checkCached(s *session) bool {
	s.c.CommandTimeout = d.replyTimeout
	if err := s.reset(); err != nil {
		d.log.Debug("cached connection failed RSET", "relay", s.relay, "err", err)
		s.c.Close()
		return false
	}
	return true
}
