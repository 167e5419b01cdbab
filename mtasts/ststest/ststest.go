// Package ststest is the HTTPS server of MTA-STS policies in tests: one
// server on a 127.0.0.x address and a free port answers for every
// mta-sts.<domain> of a test (by the Host of the request) at the place
// RFC 8461 section 3.3 gives, /.well-known/mta-sts.txt, with the
// certificate the test gives it. Clients reach it with
// mtasts.NewClient(mtasts.ClientOptions{Port: s.Port(), RootCAs: <the
// test's CA>}) over a test DNS server that points mta-sts.<domain> at the
// server's address.
//
//	s := ststest.Start(t, "127.0.0.2:0", cert)
//	s.Set("example.org", ststest.Response{Body: "version: STSv1\n..."})
//
// A domain without a Response, or another path, gets 404.
package ststest

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Response is what the server answers for one domain.
type Response struct {
	Status      int    // default 200
	ContentType string // default "text/plain; charset=utf-8"
	Body        string
	Location    string        // the Location header, for a redirect
	Delay       time.Duration // before the answer (a slow policy host)
}

// Server is a running policy server. Its methods are safe for concurrent
// use.
type Server struct {
	port string

	mu    sync.Mutex
	resps map[string]Response // by host name
	hits  map[string]int      // requests by host name
}

// Start serves on addr ("127.0.0.2:0") with cert until tb's test ends.
// TLS handshake failures (a client that does not trust cert) are not
// logged.
func Start(tb testing.TB, addr string, cert tls.Certificate) *Server {
	tb.Helper()
	s := &Server{resps: map[string]Response{}, hits: map[string]int{}}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	srv.Listener.Close()
	srv.Listener = l
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)
	srv.StartTLS()
	tb.Cleanup(srv.Close)
	_, s.port, _ = net.SplitHostPort(l.Addr().String())
	return s
}

// Port is the port the server listens on (for mtasts.ClientOptions.Port).
func (s *Server) Port() string { return s.port }

// Set makes the server answer r for mta-sts.<domain>.
func (s *Server) Set(domain string, r Response) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resps["mta-sts."+domain] = r
}

// Requests returns how many requests arrived for mta-sts.<domain>.
func (s *Server) Requests(domain string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits["mta-sts."+domain]
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	s.mu.Lock()
	s.hits[host]++
	resp, ok := s.resps[host]
	s.mu.Unlock()
	if !ok || r.URL.Path != "/.well-known/mta-sts.txt" || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	if resp.Delay > 0 {
		t := time.NewTimer(resp.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
	}
	if resp.ContentType == "" {
		resp.ContentType = "text/plain; charset=utf-8"
	}
	w.Header().Set("Content-Type", resp.ContentType)
	if resp.Location != "" {
		w.Header().Set("Location", resp.Location)
	}
	if resp.Status == 0 {
		resp.Status = http.StatusOK
	}
	w.WriteHeader(resp.Status)
	w.Write([]byte(resp.Body))
}
