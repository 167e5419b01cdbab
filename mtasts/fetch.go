package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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

// Fetch gets and parses domain's policy file (RFC 8461 section 3.3) with
// client, a client of NewClient (or any: a copy of it is made to follow no
// redirects, keep no cookies and give up after FetchTimeout). It does not
// look at the TXT record (see LookupRecord) and caches nothing: it is the
// fetch of a Cache, for "mxedge doctor" and tests. The error says what
// failed (connection, certificate, status, media type, size, syntax). The
// result has no ID or Fetched.
func Fetch(ctx context.Context, client *http.Client, domain string) (*Policy, error) {
	if client == nil {
		return nil, errors.New("mtasts: fetch: no HTTP client")
	}
	domain, err := normalizeDomain(domain)
	if err != nil {
		return nil, err
	}
	return fetch(ctx, httpClient(client, nil), domain)
}

// fetch is Fetch with a client of httpClient and a normalized domain.
func fetch(ctx context.Context, client *http.Client, domain string) (*Policy, error) {
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
	resp, err := client.Do(req)
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
		hc = NewClient(ClientOptions{Resolver: r})
	}
	c := *hc
	c.CheckRedirect = noRedirects
	c.Jar = nil
	if c.Timeout <= 0 || c.Timeout > FetchTimeout {
		c.Timeout = FetchTimeout
	}
	return &c
}

// ClientOptions configure NewClient.
type ClientOptions struct {
	// Resolver resolves mta-sts.<domain> (the relay's resolver, never
	// the system's). Required.
	Resolver Resolver
	// RootCAs verify the policy host's certificate; nil: the system
	// roots. Tests give the pool of their own CA.
	RootCAs *x509.CertPool
	// Port, if not empty, is dialled instead of 443: a test's HTTPS
	// server listens on a free port of a 127.0.0.x address.
	Port string
}

// NewClient returns the HTTPS client of policy fetches (RFC 8461 section
// 3.3): the certificate verified for mta-sts.<domain> against o.RootCAs
// (chained to a trusted root, not expired), TLS 1.2 or later, names
// resolved with o.Resolver, no redirects followed, at most FetchTimeout.
// No proxy: the policy host is asked directly. No connection is kept
// open: policies are fetched seldom and from many hosts.
func NewClient(o ClientOptions) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:            (&dialer{r: o.Resolver, port: o.Port}).DialContext,
			TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: o.RootCAs},
			TLSHandshakeTimeout:    15 * time.Second,
			ResponseHeaderTimeout:  30 * time.Second,
			DisableKeepAlives:      true,
			MaxResponseHeaderBytes: 64 << 10,
		},
		CheckRedirect: noRedirects,
		Timeout:       FetchTimeout,
	}
}

// dialer connects to a host name by the IPv4 and IPv6 addresses r gives
// for it, in that order, trying at most maxAddrs of them.
type dialer struct {
	r Resolver
	// port, if set, replaces the port dialled (ClientOptions.Port).
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
