package mtasts

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"time"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/resolver"
)

// Limits of a policy fetch (RFC 8461 section 3.3 suggests both).
const (
	// MaxPolicySize is the largest policy body accepted.
	MaxPolicySize = 64 << 10
	// FetchTimeout bounds one fetch: connection, TLS, headers and body.
	FetchTimeout = time.Minute
	// dialTimeout bounds one TCP connection attempt.
	dialTimeout = 10 * time.Second
	// maxAddrs is the number of addresses of mta-sts.<domain> tried.
	maxAddrs = 4
)

// errRedirect stops the HTTP client at a redirect: RFC 8461 section 3.3,
// "HTTP 3xx redirects MUST NOT be followed".
var errRedirect = errors.New("redirect not followed")

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// policyURL is where a domain's policy is fetched from (RFC 8461 section
// 3.3). domain is a validated lowercase domain.
func policyURL(domain string) string {
	return "https://mta-sts." + domain + "/.well-known/mta-sts.txt"
}

// fetch gets and parses domain's policy file (RFC 8461 section 3.3). The
// result has no ID or Fetched yet.
func (c *Cache) fetch(ctx context.Context, domain string) (*Policy, error) {
	ctx, cancel := context.WithTimeout(ctx, FetchTimeout)
	defer cancel()
	url := policyURL(domain)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("mtasts: fetch %s: %w", url, err)
	}
	// No HTTP caching (section 3.3): Go's client has no cache, and this
	// asks any cache on the way not to answer either.
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("mtasts: fetch %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := readPolicyBody(resp)
	if err != nil {
		return nil, fmt.Errorf("mtasts: fetch %s: %w", url, err)
	}
	p, err := parsePolicy(body)
	if err != nil {
		return nil, fmt.Errorf("mtasts: fetch %s: %w", url, err)
	}
	return p, nil
}

// readPolicyBody checks a policy response and returns its body: status 200
// only (a 3xx is a redirect not followed), media type text/plain (section
// 3.3: "senders SHOULD validate that the media type is text/plain"), at
// most MaxPolicySize bytes.
func readPolicyBody(resp *http.Response) ([]byte, error) {
	if resp.StatusCode != http.StatusOK {
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			return nil, fmt.Errorf("HTTP %s to %q: %w", resp.Status, resp.Header.Get("Location"), errRedirect)
		}
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "text/plain" {
		return nil, fmt.Errorf("media type %q, not text/plain", resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if len(body) > MaxPolicySize {
		return nil, fmt.Errorf("body larger than %d bytes", MaxPolicySize)
	}
	return body, nil
}

// httpClient returns the client fetches use: a copy of hc (default: a
// new one over r) that follows no redirects, keeps no cookies and gives
// up after FetchTimeout at most, whatever the caller's client says.
func httpClient(hc *http.Client, r Resolver) *http.Client {
	if hc == nil {
		hc = defaultClient(r)
	}
	c := *hc
	c.CheckRedirect = noRedirects
	c.Jar = nil
	if c.Timeout <= 0 || c.Timeout > FetchTimeout {
		c.Timeout = FetchTimeout
	}
	return &c
}

// defaultClient is an HTTPS client that verifies certificates against the
// system roots (RFC 8461 section 3.3: valid for mta-sts.<domain>, chained
// to a trusted root, not expired), TLS 1.2 or later, resolving names with
// r. No proxy: the policy host is asked directly. No connection is kept
// open: policies are fetched seldom and from many hosts.
func defaultClient(r Resolver) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:            (&dialer{r: r}).DialContext,
			TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:    15 * time.Second,
			ResponseHeaderTimeout:  30 * time.Second,
			DisableKeepAlives:      true,
			MaxResponseHeaderBytes: 64 << 10,
		},
		Timeout: FetchTimeout,
	}
}

// dialer connects to a host name by the IPv4 and IPv6 addresses r gives
// for it, in that order, trying at most maxAddrs of them.
type dialer struct {
	r Resolver
	// port, if set, replaces the port dialled (tests: the policy server
	// listens on a free port, not 443).
	port string
	d    net.Dialer
}

// DialContext is http.Transport.DialContext.
func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if d.port != "" {
		port = d.port
	}
	if ip := net.ParseIP(host); ip != nil {
		return d.dial(ctx, network, net.JoinHostPort(host, port))
	}
	var ips []string
	var lookupErr error
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		rrs, _, err := d.r.Lookup(ctx, host, qtype)
		if err != nil && !resolver.IsNotFound(err) {
			lookupErr = err
		}
		for _, rr := range rrs {
			switch rr := rr.(type) {
			case *dns.A:
				ips = append(ips, rr.A.String())
			case *dns.AAAA:
				ips = append(ips, rr.AAAA.String())
			}
		}
	}
	if len(ips) == 0 {
		if lookupErr != nil {
			return nil, lookupErr
		}
		return nil, fmt.Errorf("mtasts: %s has no address", host)
	}
	var errs []error
	for _, ip := range ips[:min(len(ips), maxAddrs)] {
		conn, err := d.dial(ctx, network, net.JoinHostPort(ip, port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func (d *dialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	return d.d.DialContext(ctx, network, addr)
}
