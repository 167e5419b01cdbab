package delivery

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/mxedge/mxedge/mxroute"
	"github.com/mxedge/mxedge/queue"
)

// Destinations: where the recipients of one domain go, in this order of
// precedence (Postfix: transport_maps, relayhost, MX):
//
//  1. a route in [routes]: the fixed next hop "host:port", without MX
//     lookup, bracketed or not;
//  2. the smarthost (delivery.smarthost), if set, with TLS required;
//  3. the domain's MX hosts (RFC 5321 section 5.1, package mxroute), at
//     delivery.mx_port.
//
// A destination is the unit of the concurrency limit (limiter.go) and of
// one transaction: recipients of domains sharing a route or the smarthost
// (with the same TLS policy) travel together, MX recipients per domain.

// The classes of destination, as every queue.Result of a routed
// recipient carries them in Class (for the metrics).
const (
	ClassRoute     = "route"     // a fixed next hop in [routes]
	ClassSmarthost = "smarthost" // delivery.smarthost
	ClassMX        = "mx"        // the domain's MX hosts
)

// destination is one group of a message's recipients.
type destination struct {
	key    string // limiter key and log name: "route:HOP", "smarthost", "mx:DOMAIN"
	domain string // a recipient domain (the one, for MX)
	hop    string // route or smarthost "host:port"; "" for MX
	rcpts  []string
}

// destinations groups rcpts by destination, in the order of first
// appearance. Recipients that cannot be routed get results at once.
func (d *Deliverer) destinations(rcpts []string) ([]*destination, []queue.Result) {
	var dests []*destination
	var results []queue.Result
	byKey := map[string]*destination{}
	for _, rcpt := range rcpts {
		domain := domainOf(rcpt)
		key, hop, ok := d.route(domain)
		if !ok {
			results = append(results, queue.Result{Rcpt: rcpt, Code: 451, Enhanced: "4.3.5",
				Text: noRoute(domain)})
			continue
		}
		dest := byKey[key]
		if dest == nil {
			dest = &destination{key: key, domain: domain, hop: hop}
			byKey[key] = dest
			dests = append(dests, dest)
		}
		dest.rcpts = append(dest.rcpts, rcpt)
	}
	return dests, results
}

// route returns the destination key and the fixed next hop (route or
// smarthost; "" for MX) of domain; ok is false if it has none.
func (d *Deliverer) route(domain string) (key, hop string, ok bool) {
	if h, ok := (*d.routes.Load())[domain]; ok {
		return "route:" + h + " " + d.routePlan(domain, hopHost(h)).level, h, true
	}
	if d.smarthost != "" {
		return "smarthost", d.smarthost, true
	}
	if d.resolver != nil {
		return "mx:" + domain, "", true
	}
	return "", "", false
}

func noRoute(domain string) string { return "no route for domain " + domain + " (configuration error)" }

// hopHost is the host of a "host:port" or "[host]:port" next hop.
func hopHost(hop string) string {
	host, _, err := net.SplitHostPort(hop)
	if err != nil {
		return strings.Trim(hop, "[]")
	}
	return host
}

// class is the destination's class (ClassRoute, ClassSmarthost, ClassMX).
func (dest *destination) class() string {
	switch {
	case dest.key == "smarthost":
		return ClassSmarthost
	case dest.hop != "":
		return ClassRoute
	}
	return ClassMX
}

// deliverDest delivers msg to dest's recipients, each result marked with
// the destination's class.
func (d *Deliverer) deliverDest(ctx context.Context, msg *queue.Message, dest *destination) []queue.Result {
	rs := d.sendDest(ctx, msg, dest)
	for i := range rs {
		rs[i].Class = dest.class()
	}
	return rs
}

// sendDest delivers msg to dest's recipients: a concurrency slot, the
// targets, then one walk per max_rcpts_per_transaction recipients.
func (d *Deliverer) sendDest(ctx context.Context, msg *queue.Message, dest *destination) []queue.Result {
	if ok, why := d.limit.acquire(ctx, dest.key, d.lim.slotWait); !ok {
		// Code 0: deferred without a reply from anyone.
		return all(dest.rcpts, "", 0, "4.4.5", why+" for "+dest.name())
	}
	good, bad := false, false
	defer func() { d.limit.release(dest.key, good, bad, d.now()) }()

	targets, f := d.targets(ctx, msg.ID, dest)
	if f != nil {
		return allFailed(dest.rcpts, *f)
	}
	var results []queue.Result
	for rest := dest.rcpts; len(rest) > 0; {
		n := min(len(rest), d.lim.maxRcpts)
		if l := d.rcptLimits.get(dest.key); l > 0 {
			n = min(n, l)
		}
		rs, connected, connFailed := d.walk(ctx, msg, targets, rest[:n])
		good = good || connected
		bad = bad || connFailed && !connected
		// RFC 5321 section 4.5.3.1.10: recipients refused as too many go
		// in the next transaction at once (the session was kept: the same
		// connection), as long as the transaction got somewhere.
		if done, again := splitTooMany(rs); len(again) > 0 && len(again) < n && ctx.Err() == nil {
			d.rcptLimits.learn(dest.key, n-len(again))
			d.log.Info("next hop limits recipients per transaction", "queue_id", msg.ID,
				"destination", dest.name(), "accepted", n-len(again), "again", len(again))
			results = append(results, done...)
			rest = append(again, rest[n:]...)
			continue
		}
		results = append(results, rs...)
		rest = rest[n:]
	}
	return results
}

// name is the destination for messages: the route, "smarthost", or the
// domain.
func (dest *destination) name() string {
	if dest.hop != "" {
		return dest.hop
	}
	return dest.domain
}

// targets returns the addresses to try for dest, in order, or why there
// are none: a permanent failure (Code 550) for an MX walk that says the
// domain takes no mail, a deferral otherwise.
func (d *Deliverer) targets(ctx context.Context, msgID string, dest *destination) ([]*target, *failure) {
	switch {
	case dest.key == "smarthost":
		p := tlsPlan{level: d.shTLS, policy: "smarthost-" + d.shTLS, server: hopHost(dest.hop)}
		return []*target{{name: dest.hop, addr: unbracket(dest.hop), hop: dest.hop, plan: p, authFile: d.shAuth}}, nil
	case dest.hop != "":
		if network, addr, ok := parseLMTPRoute(dest.hop); ok {
			p := tlsPlan{level: levelNone, policy: levelNone}
			if network == "tcp" {
				p = d.routePlan(dest.domain, hopHost(addr))
				addr = unbracket(addr)
			}
			return []*target{{name: dest.hop, addr: addr, hop: dest.hop, plan: p, lmtp: true, network: network}}, nil
		}
		p := d.routePlan(dest.domain, hopHost(dest.hop))
		return []*target{{name: dest.hop, addr: unbracket(dest.hop), hop: dest.hop, plan: p}}, nil
	}
	route, err := mxroute.Gather(ctx, d.resolver, dest.domain, mxroute.Options{Self: d.self, Rand: d.newRand()})
	if err != nil {
		var e *mxroute.Error
		if !errors.As(err, &e) {
			return nil, &failure{enh: "4.4.3", text: "MX lookup for " + dest.domain + " failed, will retry"}
		}
		if e.Err != nil {
			d.log.Info("MX walk failed", "queue_id", msgID, "domain", dest.domain, "dsn", e.Code, "err", e.Err)
		}
		if e.Temporary {
			return nil, &failure{enh: e.Code, text: e.Text}
		}
		// RFC 3463 and RFC 7505 section 4.2: 550 5.1.10 for a null MX;
		// 5.1.2 no such domain, 5.4.6 routing loop, 5.4.4 unroutable.
		return nil, &failure{code: 550, enh: e.Code, text: e.Text}
	}
	tp := d.tls.Load() // one policy for the whole walk, also across a reload
	sts := d.stsLoader(ctx, tp, dest.domain, msgID)
	port := strconv.Itoa(d.mxPort)
	var out []*target
	for _, h := range route.Hosts {
		plan, fail := d.mxPlan(ctx, tp, dest.domain, h.Name, route.Authentic && h.Authentic, sts, msgID)
		for _, ip := range h.Addrs {
			addr := net.JoinHostPort(ip.String(), port)
			out = append(out, &target{name: h.Name, addr: addr, hop: addr, plan: plan, fail: fail})
		}
	}
	return d.failedLast(out), nil
}

// unbracket removes the brackets of "[host]:port" for dialing.
func unbracket(hop string) string {
	// ReplaceAll allocates nothing when there is no bracket (the
	// Replacer built here per call cost ~6 KB per delivery).
	return strings.ReplaceAll(strings.ReplaceAll(hop, "[", ""), "]", "")
}

// newRand returns a generator for one MX shuffle, drawn from the seeded
// one of WithRand; nil without it (mxroute's random source).
func (d *Deliverer) newRand() *rand.Rand {
	if d.rng == nil {
		return nil
	}
	d.rngMu.Lock()
	defer d.rngMu.Unlock()
	return rand.New(rand.NewPCG(d.rng.Uint64(), d.rng.Uint64()))
}

// noteFailed remembers that the address hop could not be connected.
func (d *Deliverer) noteFailed(hop string) {
	d.hopMu.Lock()
	defer d.hopMu.Unlock()
	d.failed[hop] = d.now()
}

// failedLast moves the addresses that failed within lim.failedFor
// (queue.min_backoff: until the next retry) behind the others, keeping
// the order within both groups: the next attempt starts at an address
// that may work, and still reaches the failed one if all others fail.
func (d *Deliverer) failedLast(ts []*target) []*target {
	now := d.now()
	d.hopMu.Lock()
	recent := func(t *target) bool {
		at, ok := d.failed[t.hop]
		if ok && now.Sub(at) >= d.lim.failedFor {
			delete(d.failed, t.hop)
			return false
		}
		return ok
	}
	var ok, failed []*target
	for _, t := range ts {
		if recent(t) {
			failed = append(failed, t)
		} else {
			ok = append(ok, t)
		}
	}
	d.hopMu.Unlock()
	return slices.Concat(ok, failed)
}
