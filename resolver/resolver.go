package resolver

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Defaults of Config.
const (
	DefaultTimeout    = 5 * time.Second
	DefaultAttempts   = 2
	DefaultResolvConf = "/etc/resolv.conf"
	DefaultServer     = "127.0.0.1:53"
)

// Config configures a Resolver. The zero value is usable: the servers of
// /etc/resolv.conf, 5 s per exchange, 2 rounds over the servers, the real
// clock, a cache of DefaultCacheSize answers.
type Config struct {
	// Servers are the recursive servers to ask, "ip:port" (a missing
	// port means 53), in order. Empty: those of ResolvConf, else
	// DefaultServer.
	Servers []string
	// ResolvConf is the resolv.conf read when Servers is empty; default
	// DefaultResolvConf.
	ResolvConf string
	// Timeout bounds each exchange with one server (dial, send, answer);
	// default DefaultTimeout. A truncated UDP answer's TCP retry has its
	// own Timeout.
	Timeout time.Duration
	// Attempts is the number of rounds over Servers; default
	// DefaultAttempts.
	Attempts int
	// CacheSize bounds the number of answers cached; 0 means
	// DefaultCacheSize, negative disables the cache.
	CacheSize int
	// Now is the cache's clock; default time.Now. Network deadlines
	// always use the real clock.
	Now func() time.Time
	// MaxInFlight bounds the exchanges (each a socket, a file descriptor)
	// in flight at once; more wait for one to end, within their context.
	// Default DefaultMaxInFlight. So a flood of new SMTP clients, each
	// with its connect-time lookups, cannot use up the process's file
	// descriptors.
	MaxInFlight int
	// Observer, if set, is told of every exchange with a server
	// (metrics); nil: none.
	Observer Observer
}

// Observer is told of each exchange with one server once it ended:
// result is "ok" (NOERROR or NXDOMAIN), "rcode" (another rcode: SERVFAIL,
// REFUSED, ...) or "error" (timeout, network error, unusable answer);
// took is its duration. It must return at once.
type Observer interface {
	DNSExchanged(result string, took time.Duration)
}

// DefaultMaxInFlight is the default of Config.MaxInFlight.
const DefaultMaxInFlight = 256

// Resolver is a DNS stub resolver with a cache. It is safe for concurrent
// use. Lookups take a context whose deadline bounds the whole lookup;
// each exchange with a server is also bounded by Config.Timeout.
type Resolver struct {
	servers  []string
	timeout  time.Duration
	attempts int
	now      func() time.Time
	udp, tcp *dns.Client
	cache    *cache
	flights  flights
	slots    chan struct{} // exchanges in flight (MaxInFlight)
	obs      Observer
}

// New returns a Resolver for cfg.
func New(cfg Config) *Resolver {
	r := &Resolver{
		servers:  serversOf(cfg),
		timeout:  cfg.Timeout,
		attempts: cfg.Attempts,
		now:      cfg.Now,
		cache:    newCache(cfg.CacheSize),
		obs:      cfg.Observer,
	}
	if cfg.CacheSize == 0 {
		r.cache = newCache(DefaultCacheSize)
	}
	if r.timeout <= 0 {
		r.timeout = DefaultTimeout
	}
	if r.attempts <= 0 {
		r.attempts = DefaultAttempts
	}
	if r.now == nil {
		r.now = time.Now
	}
	n := cfg.MaxInFlight
	if n <= 0 {
		n = DefaultMaxInFlight
	}
	r.slots = make(chan struct{}, n)
	r.udp = &dns.Client{Net: "udp", Timeout: r.timeout}
	r.tcp = &dns.Client{Net: "tcp", Timeout: r.timeout}
	return r
}

// Servers returns the servers r asks, in order.
func (r *Resolver) Servers() []string { return append([]string(nil), r.servers...) }

// serversOf returns cfg's servers as "host:port", falling back to
// resolv.conf and then to DefaultServer.
func serversOf(cfg Config) []string {
	var out []string
	for _, s := range cfg.Servers {
		out = append(out, withPort(s, "53"))
	}
	if len(out) > 0 {
		return out
	}
	path := cfg.ResolvConf
	if path == "" {
		path = DefaultResolvConf
	}
	if cc, err := dns.ClientConfigFromFile(path); err == nil {
		for _, s := range cc.Servers {
			out = append(out, withPort(s, cc.Port))
		}
	}
	if len(out) == 0 {
		out = []string{DefaultServer}
	}
	return out
}

// withPort adds port to a server given without one ("192.0.2.1",
// "2001:db8::1", "[2001:db8::1]").
func withPort(s, port string) string {
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s
	}
	return net.JoinHostPort(strings.Trim(s, "[]"), port)
}

// fqdn returns name as a lowercase fully qualified name, or an error if it
// cannot be one.
func fqdn(name string, qtype uint16) (string, error) {
	n := strings.ToLower(dns.Fqdn(name))
	if _, ok := dns.IsDomainName(n); !ok || name == "" {
		return "", &Error{Name: name, Type: qtype, Kind: ErrInvalid, Rcode: -1}
	}
	return n, nil
}

// lookup answers (name, qtype) from the cache, else by joining an
// identical query in flight, else by asking the servers. Errors are
// *Error; a negative answer is not an error here (see answer.err).
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) (*answer, error) {
	n, err := fqdn(name, qtype)
	if err != nil {
		return nil, err
	}
	k := cacheKey{n, qtype}
	if a, ok := r.cache.get(k, r.now()); ok {
		return a, nil
	}
	a, err := r.flights.do(ctx, k, func(ctx context.Context) (*answer, error) {
		if a, ok := r.cache.get(k, r.now()); ok { // answered meanwhile
			return a, nil
		}
		resp, server, err := r.exchange(ctx, n, qtype)
		if err != nil {
			return nil, err
		}
		a, err := newAnswer(n, qtype, resp, server)
		if err != nil {
			return nil, &Error{Kind: ErrTemporary, Rcode: resp.Rcode, Server: server, Err: err}
		}
		r.cache.put(k, a, r.now())
		return a, nil
	})
	if err != nil {
		var e *Error
		if !errors.As(err, &e) { // the caller's context ended
			e = &Error{Kind: ErrTemporary, Rcode: -1, Err: err}
		} else {
			c := *e // shared with coalesced callers
			e = &c
		}
		e.Name, e.Type = name, qtype
		return nil, e
	}
	return a, nil
}
