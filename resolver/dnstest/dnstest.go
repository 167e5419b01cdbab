// Package dnstest is an in-process DNS server for tests: it answers from
// a small zone held in memory, over UDP and TCP on one 127.0.0.x address,
// like a recursive server that already knows every answer. Every test of
// the relay that needs DNS points its resolver.Resolver at one; no test
// asks the real DNS.
//
//	s, err := dnstest.Start("127.0.0.53:0")
//	...
//	defer s.Close()
//	err = s.Add("example.org. 300 IN MX 10 mx1.example.org.",
//		"mx1.example.org. 300 IN A 127.0.0.2")
//	r := resolver.New(resolver.Config{Servers: []string{s.Addr()}})
//
// Answers follow RFC 1034 section 4.3.2 as far as a test needs:
//
//   - records of the type asked, following CNAMEs in the zone (at most 8,
//     else SERVFAIL) unless CNAME is asked;
//   - NODATA (NOERROR, empty answer) for a name that exists with other
//     types, or is an empty non-terminal (RFC 8020: a name below it
//     exists); NXDOMAIN otherwise; both with an SOA in the authority
//     section (RFC 2308 section 3): the closest enclosing SOA added, else
//     a synthetic one for the root with TTL and MINIMUM 60;
//   - EDNS0 is echoed; UDP answers larger than the client's buffer (512
//     without EDNS0) are truncated (TC), and TCP carries the whole answer.
//
// There are no wildcards, no referrals and no DNSSEC records: SetAD sets
// the AD bit as a validating resolver would (only for queries with the DO
// or AD bit, RFC 6840 section 5.7).
package dnstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Query identifies the queries counted by Queries: the name as a
// lowercase FQDN and the type.
type Query struct {
	Name string
	Type uint16
}

// Server is a running test DNS server. Its methods are safe for concurrent
// use and take effect for the next query.
type Server struct {
	addr     string
	udp, tcp *dns.Server
	closed   chan struct{}
	close    sync.Once

	mu      sync.Mutex
	rrs     map[string][]dns.RR // by lowercase owner name
	rcodes  map[Query]int
	trunc   map[string]bool
	ad      bool
	delay   time.Duration
	queries map[Query]int
}

// Start starts a server on addr ("127.0.0.53:0": a free port, the same for
// UDP and TCP).
func Start(addr string) (*Server, error) {
	pc, l, err := listen(addr)
	if err != nil {
		return nil, fmt.Errorf("dnstest: %w", err)
	}
	s := &Server{
		addr:    pc.LocalAddr().String(),
		closed:  make(chan struct{}),
		rrs:     map[string][]dns.RR{},
		rcodes:  map[Query]int{},
		trunc:   map[string]bool{},
		queries: map[Query]int{},
	}
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	s.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serve), NotifyStartedFunc: notify}
	s.tcp = &dns.Server{Listener: l, Handler: dns.HandlerFunc(s.serve), NotifyStartedFunc: notify}
	errc := make(chan error, 2)
	go func() { errc <- s.udp.ActivateAndServe() }()
	go func() { errc <- s.tcp.ActivateAndServe() }()
	for range 2 {
		select {
		case <-started:
		case err := <-errc:
			pc.Close()
			l.Close()
			return nil, fmt.Errorf("dnstest: serve: %w", err)
		}
	}
	return s, nil
}

// listen opens a UDP and a TCP socket on the same address; with port 0,
// it retries until a port free for UDP is also free for TCP.
func listen(addr string) (net.PacketConn, net.Listener, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	for try := 0; ; try++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		if port != "0" || try == 20 {
			return nil, nil, err
		}
	}
}

// Addr returns the server's address, "127.0.0.x:port", for
// resolver.Config.Servers.
func (s *Server) Addr() string { return s.addr }

// Close stops the server; queries being delayed are dropped.
func (s *Server) Close() error {
	var err error
	s.close.Do(func() {
		close(s.closed)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = errors.Join(s.udp.ShutdownContext(ctx), s.tcp.ShutdownContext(ctx))
	})
	return err
}

// Add adds records in zone-file syntax, one per string, with fully
// qualified names: "example.org. 300 IN MX 10 mx1.example.org." (see
// dns.NewRR; a missing TTL means 3600). Nothing is added if a line does
// not parse.
func (s *Server) Add(lines ...string) error {
	var rrs []dns.RR
	for _, line := range lines {
		rr, err := dns.NewRR(line)
		if err != nil {
			return fmt.Errorf("dnstest: %q: %w", line, err)
		}
		if rr == nil {
			return fmt.Errorf("dnstest: %q: no record", line)
		}
		rrs = append(rrs, rr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range rrs {
		n := key(rr.Header().Name)
		s.rrs[n] = append(s.rrs[n], rr)
	}
	return nil
}

// Remove removes the records of type qtype of name (dns.TypeANY: all of
// them).
func (s *Server) Remove(name string, qtype uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := key(name)
	var keep []dns.RR
	for _, rr := range s.rrs[n] {
		if qtype != dns.TypeANY && rr.Header().Rrtype != qtype {
			keep = append(keep, rr)
		}
	}
	if len(keep) == 0 {
		delete(s.rrs, n)
	} else {
		s.rrs[n] = keep
	}
}

// SetRcode makes queries for (name, qtype) fail with rcode
// (dns.RcodeServerFailure, dns.RcodeRefused, ...); qtype dns.TypeANY
// means every type of name. dns.RcodeSuccess answers normally again.
func (s *Server) SetRcode(name string, qtype uint16, rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := Query{key(name), qtype}
	if rcode == dns.RcodeSuccess {
		delete(s.rcodes, q)
	} else {
		s.rcodes[q] = rcode
	}
}

// SetTruncate makes UDP answers for name (any type) empty with the TC bit
// set, so that the client must ask again over TCP.
func (s *Server) SetTruncate(name string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.trunc[key(name)] = true
	} else {
		delete(s.trunc, key(name))
	}
}

// SetAD sets the AD bit on answers (NOERROR and NXDOMAIN) to queries that
// ask for DNSSEC (DO or AD bit), as a validating resolver does for secure
// data.
func (s *Server) SetAD(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ad = on
}

// SetDelay delays every answer by d (a slow server); 0 answers at once.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Queries returns how many queries arrived for each name and type, over
// UDP and TCP together.
func (s *Server) Queries() map[Query]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[Query]int, len(s.queries))
	for q, n := range s.queries {
		m[q] = n
	}
	return m
}

// Count returns how many queries arrived for (name, qtype).
func (s *Server) Count(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[Query{key(name), qtype}]
}

// key is the map key of a name: a lowercase FQDN.
func key(name string) string { return strings.ToLower(dns.Fqdn(name)) }

// StartTB is Start on 127.0.0.53 port 0 for a test: the records are
// added, the server is closed when tb's test ends, and a failure to start
// or a bad record line ends the test.
func StartTB(tb testing.TB, records ...string) *Server {
	tb.Helper()
	s, err := Start("127.0.0.53:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	if err := s.Add(records...); err != nil {
		tb.Fatal(err)
	}
	return s
}
