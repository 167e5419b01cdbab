package mtasts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"

	"github.com/mxedge/mxedge/internal/domainname"
	"github.com/mxedge/mxedge/resolver"
)

// Resolver looks up DNS records; *resolver.Resolver is one. Errors must
// classify with resolver.IsNotFound and resolver.IsTemporary.
type Resolver interface {
	Lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, resolver.Result, error)
}

// Options configure a Cache.
type Options struct {
	// Resolver looks up the TXT records, and the addresses of
	// mta-sts.<domain> for the default HTTPClient. Required.
	Resolver Resolver
	// HTTPClient fetches policies; default: NewClient, resolving with
	// Resolver and verifying certificates against the system roots. Any
	// client given is copied and made to follow no redirects, keep no
	// cookies, and time out after FetchTimeout at most.
	HTTPClient *http.Client
	// Dir, if not empty, is the directory of the cache file
	// (mtasts.json); "" keeps the cache in memory only.
	Dir string
	// Now is the clock of policy ages; default time.Now. Network
	// timeouts use the real clock.
	Now func() time.Time
	// Log receives one line per fetch failure, refresh, and cache file
	// problem; default: discarded.
	Log *slog.Logger
}

// Timing of fetches and refreshes.
const (
	// retryFetchAfter is how long a failed fetch is not retried for the
	// same domain and id (RFC 8461 section 3.3: "five minutes or longer
	// per version ID").
	retryFetchAfter = 5 * time.Minute
	// maxRefreshMargin bounds how long before expiry Refresh starts
	// refetching a policy; policies with a shorter max_age are refetched
	// after half of it.
	maxRefreshMargin = 7 * 24 * time.Hour
)

// Cache holds the MTA-STS policies of recipient domains. It is safe for
// concurrent use.
type Cache struct {
	r      Resolver
	client *http.Client
	now    func() time.Time
	log    *slog.Logger
	file   string // "" = memory only

	mu       sync.Mutex
	policies map[string]*Policy   // by domain; never modified once stored
	failed   map[string]time.Time // by flightKey: no fetch before then
	flights  singleflight.Group   // by flightKey

	saveMu sync.Mutex // serializes writes of the cache file
}

// New returns a Cache; with o.Dir, it loads the policies saved there
// that are still valid. A cache file that cannot be parsed is renamed
// aside (".bad") and logged, not fatal: the relay must still start.
func New(o Options) (*Cache, error) {
	if o.Resolver == nil {
		return nil, errors.New("mtasts: no resolver")
	}
	c := &Cache{
		r:        o.Resolver,
		client:   httpClient(o.HTTPClient, o.Resolver),
		now:      o.Now,
		log:      o.Log,
		policies: map[string]*Policy{},
		failed:   map[string]time.Time{},
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if o.Dir != "" {
		c.file = cacheFile(o.Dir)
		if err := c.load(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Get returns the policy in force for domain; see the package
// documentation for the contract. It looks up the TXT record at
// _mta-sts.<domain> every time (the resolver caches it for its TTL), and
// fetches the policy when none is cached, the cached one has expired, or
// the id has changed.
func (c *Cache) Get(ctx context.Context, domain string) (*Policy, error) {
	domain, err := normalizeDomain(domain)
	if err != nil {
		return nil, err
	}
	cached := c.valid(domain)
	id, err := c.lookupID(ctx, domain)
	switch {
	case err != nil && cached != nil:
		// RFC 8461 section 3.3: no "live" policy discoverable, but a
		// valid cached one: apply it.
		c.log.Debug("mta-sts: TXT lookup failed, using cached policy", "domain", domain, "id", cached.ID, "err", err)
		return cached, nil
	case errors.Is(err, ErrNoRecord):
		return nil, nil
	case errors.Is(err, ErrInvalidRecord):
		c.log.Info("mta-sts: invalid TXT record, no policy", "domain", domain, "err", err)
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("mtasts: %s: %w", domain, err)
	case cached != nil && cached.ID == id:
		return cached, nil
	}
	p, err := c.fetchShared(ctx, domain, id)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("mtasts: %s: %w", domain, ctx.Err())
		}
		// Section 3.3: without a valid cached policy, deliver as though
		// the domain has no policy; with one, keep it.
		return cached, nil
	}
	return p.clone(), nil
}

// valid returns a copy of the cached policy of domain if it has not
// expired.
func (c *Cache) valid(domain string) *Policy {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.policies[domain]
	if p == nil || !c.now().Before(p.Expires()) {
		return nil
	}
	return p.clone()
}

// lookupID returns the id of domain's MTA-STS TXT record. Errors: a
// resolver error (temporary), ErrNoRecord, ErrInvalidRecord.
func (c *Cache) lookupID(ctx context.Context, domain string) (string, error) {
	id, _, err := lookupRecord(ctx, c.r, domain)
	return id, err
}

func flightKey(domain, id string) string { return domain + " " + id }

// fetchShared fetches domain's policy for TXT id and caches it, unless a
// fetch for the same domain and id is in progress (then it waits for
// that one) or failed less than retryFetchAfter ago (then it fails at
// once). The fetch runs on its own context (ctx's values, FetchTimeout),
// so a caller that gives up does not spoil it for the others: it still
// fills the cache. The policy returned is shared: clone it.
func (c *Cache) fetchShared(ctx context.Context, domain, id string) (*Policy, error) {
	key := flightKey(domain, id)
	c.mu.Lock()
	if until, ok := c.failed[key]; ok {
		if c.now().Before(until) {
			c.mu.Unlock()
			return nil, fmt.Errorf("mtasts: %s: fetch for id %s failed recently", domain, id)
		}
		delete(c.failed, key)
	}
	c.mu.Unlock()
	fctx := context.WithoutCancel(ctx)
	ch := c.flights.DoChan(key, func() (any, error) { return c.runFetch(fctx, domain, id) })
	select {
	case r := <-ch:
		p, _ := r.Val.(*Policy)
		return p, r.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// runFetch is the flight of (domain, id): fetch, then cache the policy or
// remember the failure, then log.
func (c *Cache) runFetch(ctx context.Context, domain, id string) (*Policy, error) {
	p, err := fetch(ctx, c.client, domain)
	key := flightKey(domain, id)
	c.mu.Lock()
	if err == nil {
		p.ID, p.Fetched = id, c.now()
		c.policies[domain] = p
	} else {
		c.failed[key] = c.now().Add(retryFetchAfter)
	}
	old := c.policies[domain]
	c.mu.Unlock()

	if err != nil {
		level := slog.LevelWarn
		if old != nil && old.Mode == ModeNone {
			level = slog.LevelInfo // section 3.3: alert unless mode none
		}
		c.log.Log(ctx, level, "mta-sts: policy fetch failed", "domain", domain, "id", id, "err", err)
	} else {
		c.log.Info("mta-sts: policy fetched", "domain", domain, "id", id, "mode", string(p.Mode),
			"mx", strings.Join(p.MX, ","), "max_age", int64(p.MaxAge/time.Second))
		c.save() // before anyone is told: a policy in use survives a crash
	}
	return p, err
}

// Refresh refetches the cached policies that are close to expiry (RFC
// 8461 section 3.3: "MTAs SHOULD proactively refresh cached policies
// before they expire"), so that an attacker who blocks DNS or HTTPS at the
// time of a delivery finds the policy still cached. A policy is due once
// less than min(max_age/2, 7 days) of its life remains; it is refetched
// only while its TXT record still exists (a domain withdrawing MTA-STS
// publishes mode none first, RFC 8461 section 8.3; without a record the
// cached policy runs out). Failures are logged and retried at the next
// call (not before retryFetchAfter). Expired policies are dropped. The
// daemon calls Refresh periodically (hourly is plenty); it returns when
// done or when ctx ends.
func (c *Cache) Refresh(ctx context.Context) {
	now := c.now()
	var due []*Policy
	var domains []string
	expired := false
	c.mu.Lock()
	for d, p := range c.policies {
		switch {
		case !now.Before(p.Expires()):
			delete(c.policies, d)
			expired = true
			c.log.Info("mta-sts: cached policy expired", "domain", d, "id", p.ID, "mode", string(p.Mode))
		case !now.Before(refreshAt(p)):
			due = append(due, p)
			domains = append(domains, d)
		}
	}
	for k, until := range c.failed {
		if !now.Before(until) {
			delete(c.failed, k)
		}
	}
	c.mu.Unlock()
	if expired {
		c.save()
	}
	for i, d := range domains {
		if ctx.Err() != nil {
			return
		}
		c.refresh(ctx, d, due[i])
	}
}

// refreshAt is when Refresh starts refetching p.
func refreshAt(p *Policy) time.Time {
	return p.Expires().Add(-min(p.MaxAge/2, maxRefreshMargin))
}

// refresh refetches the policy of domain, whose cached policy is old.
func (c *Cache) refresh(ctx context.Context, domain string, old *Policy) {
	level := slog.LevelWarn
	if old.Mode == ModeNone {
		level = slog.LevelInfo
	}
	id, err := c.lookupID(ctx, domain)
	if err != nil {
		c.log.Log(ctx, level, "mta-sts: refresh: TXT lookup failed, keeping cached policy", "domain", domain,
			"id", old.ID, "expires", old.Expires().UTC().Format(time.RFC3339), "err", err)
		return
	}
	// Failures are logged by the flight.
	c.fetchShared(ctx, domain, id)
}

// normalizeDomain returns domain in the relay's one normal form
// (domainname: lowercase, A-labels, a trailing dot dropped), or an error
// wrapping resolver.ErrInvalid if it is not a host name.
func normalizeDomain(domain string) (string, error) {
	d, err := domainname.Normalize(domain, domainname.Options{TrailingDot: true, ASCII: true})
	if err != nil {
		return "", fmt.Errorf("mtasts: domain %q: %w", domain, resolver.ErrInvalid)
	}
	return d, nil
}
