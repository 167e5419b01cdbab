package integration

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// submitOnce sends one message through s's 587 as alice (STARTTLS, AUTH
// PLAIN) and returns how long it took, connect to the 250 after the dot.
func (s *subRelay) submitOnce(t *testing.T, pool *x509.CertPool, n int) time.Duration {
	t.Helper()
	t0 := time.Now()
	host, _ := splitAddr(s.sub)
	c, err := smtp.Dial(s.sub)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.StartTLS(&tls.Config{ServerName: "smtp.relay.test", RootCAs: pool}); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(smtp.PlainAuth("", "alice@example.org", alicePW, host)); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("alice@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("bob@remote.test"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, "From: alice@example.org\r\nSubject: latency %d\r\n\r\nhello\r\n", n)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	d := time.Since(t0)
	c.Quit()
	return d
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// A flood on port 25 does not slow port 587: the MX listener's sessions
// are all taken by idle connections (and more are turned away with 421),
// while a desktop user submits as fast as before. Each listener has its
// own session budget and goroutines (max_sessions), so this is what the
// relay must guarantee (shared/PRINCIPLES.md: submission is separate).
func TestSubmissionNotSlowedByPort25Flood(t *testing.T) {
	const mxMax = 400
	s := startSubmissionRelay(t, subOpts{mx: fmt.Sprintf("max_sessions = %d", mxMax)})
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(s.ca)
	pool.AppendCertsFromPEM(caPEM)
	const n = 9
	s.submitOnce(t, pool, 0) // warm up (first TLS handshake, first AUTH)
	var quiet, flooded []time.Duration
	for i := range n {
		quiet = append(quiet, s.submitOnce(t, pool, i))
	}

	// The flood: every MX session slot held by an idle client that got
	// its banner, then as many again that are refused.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range mxMax {
		c, err := net.Dial("tcp", s.mx)
		if err != nil {
			t.Fatalf("flood connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	var wg sync.WaitGroup
	errs := make(chan error, mxMax)
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(60 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "220 ") {
				errs <- fmt.Errorf("flood banner %q: %v", line, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	refused := 0
	stopFlood := make(chan struct{})
	var fwg sync.WaitGroup
	fwg.Add(1)
	go func() { // keeps knocking while 587 is measured
		defer fwg.Done()
		for {
			select {
			case <-stopFlood:
				return
			default:
			}
			c, err := net.Dial("tcp", s.mx)
			if err != nil {
				continue
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "421 4.7.0 Too many connections") {
				refused++
			}
		}
	}()
	for i := range n {
		flooded = append(flooded, s.submitOnce(t, pool, n+i))
	}
	close(stopFlood)
	fwg.Wait()
	if refused == 0 {
		t.Fatal("the MX listener was not full: no 421 while flooded")
	}
	q, f := median(quiet), median(flooded)
	t.Logf("587 submission, median of %d: quiet %v, port 25 flooded (%d idle sessions, %d refused meanwhile) %v", n, q, mxMax, refused, f)
	// Relative timing on a shared machine: flooded within twice quiet,
	// plus slack for scheduling noise.
	if f > 2*q+100*time.Millisecond {
		t.Errorf("587 slowed by the port 25 flood: median %v, quiet %v", f, q)
	}
	if _, err := s.be.WaitMessages(2*n+1, 60*time.Second); err != nil {
		t.Error(err)
	}
}
