package verifycache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Domain modes (config: verify.mode, verify_domains).
const (
	ModeProbe = "probe" // SMTP probes to the next hop
	ModeList  = "list"  // a static recipient list
	ModeOff   = "off"   // not verified
)

// Policy is how one domain's recipients are verified.
type Policy struct {
	Mode string
	List List // ModeList only
}

// Options configure a Verifier. Zero durations and counts take the
// defaults of config [verify] (see examples/mxedge.toml).
type Options struct {
	// ProbeSender is the MAIL FROM of probes; "" is the null sender <>.
	ProbeSender string
	// Dialer reaches a domain's next hops: delivery's outbound client
	// layer (required).
	Dialer Dialer
	// Domains maps each relay domain to its policy; a domain not in it is
	// not verified (Verify accepts).
	Domains map[string]Policy

	PositiveTTL  time.Duration // 30 days
	RefreshAfter time.Duration // 7 days
	NegativeTTL  time.Duration // 3 hours
	TempfailTTL  time.Duration // 1 minute
	InlineWait   time.Duration // 8 seconds
	ProbeTimeout time.Duration // 30 seconds, one whole probe
	// ReplyTimeout bounds each reply within a probe (the TCP connect is
	// bounded by the Dialer; timeouts.reply).
	ReplyTimeout time.Duration
	Concurrency  int     // probes in flight per next hop, 4
	Rate         float64 // probes started per second per next hop, 20

	DictLimit      int           // 20
	DictDisconnect int           // 50
	DictWindow     time.Duration // 1 hour
	DictDelay      time.Duration // 1 second; negative: none

	// CatchAllInterval: how often a probed domain is tested for a
	// catch-all backend; 1 day; negative: never.
	CatchAllInterval time.Duration
	// MaintainEvery: period of the background pass (cleanup, catch-all
	// tests, idle connections); 1 minute; negative: no background pass
	// (tests call Maintain).
	MaintainEvery time.Duration

	// Now is the clock of every TTL and window; time.Now if nil. Tests
	// move it to day 29 or day 31. Latencies, rate limits and the inline
	// wait use real time.
	Now func() time.Time
	// NoSync skips fsync of verify.db (tests, benchmarks). A cache loses
	// nothing that a probe cannot find out again, but the file could be
	// damaged by a power failure.
	NoSync bool
	Logger *slog.Logger
}

func (o *Options) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	set(&o.PositiveTTL, 30*24*time.Hour)
	set(&o.RefreshAfter, 7*24*time.Hour)
	set(&o.NegativeTTL, 3*time.Hour)
	set(&o.TempfailTTL, time.Minute)
	set(&o.InlineWait, 8*time.Second)
	set(&o.ProbeTimeout, 30*time.Second)
	set(&o.ReplyTimeout, 5*time.Minute)
	set(&o.DictWindow, time.Hour)
	set(&o.DictDelay, time.Second)
	set(&o.CatchAllInterval, 24*time.Hour)
	set(&o.MaintainEvery, time.Minute)
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Rate == 0 {
		o.Rate = 20
	}
	if o.DictLimit <= 0 {
		o.DictLimit = 20
	}
	if o.DictDisconnect < o.DictLimit {
		o.DictDisconnect = max(50, o.DictLimit)
	}
	if o.DictDelay < 0 {
		o.DictDelay = 0
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Action is what the MX listener does with a recipient.
type Action int

const (
	Accept     Action = iota // 250
	Reject                   // 550 5.1.1: the address does not exist
	Defer                    // 450 4.1.1 (451 4.3.0 with Err): try again later
	Disconnect               // too many unknown recipients: the session ends after the transaction
)

func (a Action) String() string {
	switch a {
	case Accept:
		return "accept"
	case Reject:
		return "reject"
	case Defer:
		return "defer"
	case Disconnect:
		return "disconnect"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Verdict is the answer of Verify.
type Verdict struct {
	Action Action
	// Source of the answer: "cache", "probe", "list", "off", or
	// "dictionary" (the client is over its limit and was not probed).
	Source string
	// Reply: the next hop's reply behind a Reject or Defer from a probe or
	// the cache ("550 5.1.1 <x@example.org>: User unknown"); empty for
	// lists. Printable ASCII, at most 300 octets.
	Reply string
	// Err: an internal error behind a Defer (log it; never show it).
	Err error
	// Delay: wait this long before answering (dictionary attack).
	Delay time.Duration
}

// Verifier answers "does this recipient exist?" for the MX listener. It is
// safe for concurrent use.
type Verifier struct {
	set    atomic.Pointer[settings] // Reconfigure swaps it
	now    func() time.Time
	log    *slog.Logger
	store  *store
	prober *prober
	flight flight
	guard  *guard
	temp   *tempCache
	stats  counters

	catchMu sync.Mutex
	catch   map[string]DomainCheck
	used    map[string]bool // domains probed for an RCPT since Open
	cleaned time.Time       // last cleanup (cache clock)

	ctx    context.Context // ends at Close: aborts probes
	cancel context.CancelFunc
	mu     sync.RWMutex // guards closed against wg.Add
	closed bool
	wg     sync.WaitGroup // probes and the background pass
}

// Open opens (creating it if needed) the cache file at path and returns a
// Verifier that is ready for Verify. Unless o.MaintainEvery is negative it
// runs the background pass (cleanup, catch-all tests) until Close; the
// first pass starts at once.
func Open(path string, o Options) (*Verifier, error) {
	o.defaults()
	st, err := openStore(path, o.NoSync)
	if err != nil {
		return nil, err
	}
	catch, err := st.domains()
	if err != nil {
		st.close()
		return nil, err
	}
	v := &Verifier{
		now:    o.Now,
		log:    o.Logger,
		store:  st,
		prober: &prober{dialer: o.Dialer, now: time.Now},
		guard:  newGuard(o.DictLimit, o.DictDisconnect, o.DictWindow, o.DictDelay, o.Now),
		temp:   newTempCache(),
		catch:  catch,
		used:   map[string]bool{},
	}
	v.apply(o)
	v.stats.results = map[Result]*uint64{}
	v.ctx, v.cancel = context.WithCancel(context.Background())
	if o.MaintainEvery > 0 {
		v.wg.Add(1)
		go v.loop(o.MaintainEvery)
	}
	return v, nil
}

// settings are the Options in force (defaults applied) and the domains'
// policies.
type settings struct {
	o       Options
	domains map[string]Policy
}

// cur returns the settings in force.
func (v *Verifier) cur() *settings { return v.set.Load() }

// Reconfigure takes the settings of o (a configuration reload) for the
// next RCPT, probe and background pass: ProbeSender, Domains
// (modes and lists), the TTLs and the refresh age, InlineWait, the probe
// and reply timeouts, Concurrency and Rate, the dictionary limits and
// CatchAllInterval. The cache's entries (their expiry was fixed when they
// were stored), the temporary results, the dictionary counts and the
// counters stay; probes in flight finish under the old settings. o's
// Dialer, Now, NoSync, MaintainEvery and Logger are ignored: those of
// Open stay.
func (v *Verifier) Reconfigure(o Options) {
	old := v.cur().o
	o.Dialer, o.Now, o.NoSync, o.MaintainEvery, o.Logger = old.Dialer, old.Now, old.NoSync, old.MaintainEvery, old.Logger
	o.defaults()
	v.apply(o)
}

// apply puts o (defaults applied) in force.
func (v *Verifier) apply(o Options) {
	v.prober.configure(o)
	v.guard.set(o.DictLimit, o.DictDisconnect, o.DictWindow, o.DictDelay)
	v.set.Store(&settings{o: o, domains: maps.Clone(o.Domains)})
}

// Close stops the background pass, aborts probes in flight (their waiters
// get a deferral), closes idle connections with QUIT and closes the file.
func (v *Verifier) Close() error {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return nil
	}
	v.closed = true
	v.mu.Unlock()
	v.cancel()
	v.wg.Wait()
	return v.store.close()
}

// Verify decides whether the MX listener accepts addr (wire form, see
// Normalize) from the client at ip. It returns after at most InlineWait,
// or when ctx ends; a probe that takes longer goes on and fills the cache.
// The verdict's Delay is for the caller to apply. An internal error is a
// Defer with Err set, never a Reject.
func (v *Verifier) Verify(ctx context.Context, ip, addr string) Verdict {
	pol, ok := v.cur().domains[domainOf(addr)]
	if !ok || pol.Mode == ModeOff {
		return Verdict{Action: Accept, Source: ModeOff}
	}
	if pol.Mode == ModeList {
		if pol.List.Has(addr) {
			return Verdict{Action: Accept, Source: ModeList}
		}
		return v.unknown(ip, Verdict{Action: Reject, Source: ModeList})
	}

	v.stats.lookups.Add(1)
	now := v.now()
	e, have, err := v.store.get(addr)
	if err != nil {
		v.log.Error("verify lookup failed", "to", "<"+addr+">", "err", err)
		return Verdict{Action: Defer, Source: "cache", Err: err}
	}
	if have && e.Valid(now) {
		switch e.State {
		case StateExists:
			v.stats.hits.Add(1)
			v.maybeRefresh(e, now)
			return Verdict{Action: Accept, Source: "cache"}
		case StateUnknown:
			v.stats.hits.Add(1)
			return v.unknown(ip, Verdict{Action: Reject, Source: "cache", Reply: e.Reply})
		}
	}
	if v.guard.limited(ip) {
		// Over the limit: no probe for this client, whatever the address.
		v.stats.dictDeferred.Add(1)
		return v.unknown(ip, Verdict{Action: Defer, Source: "dictionary"})
	}
	if t, ok := v.temp.get(addr, now); ok {
		v.stats.hits.Add(1)
		return Verdict{Action: Defer, Source: "cache", Reply: t.reply}
	}
	v.stats.misses.Add(1)
	return v.wait(ctx, ip, addr)
}

// unknown counts an unknown recipient of ip and escalates vd against a
// dictionary attack.
func (v *Verifier) unknown(ip string, vd Verdict) Verdict {
	n, limit, disconnect, delay := v.guard.add(ip)
	if n >= limit {
		vd.Delay = delay
	}
	if n >= disconnect {
		if n == disconnect {
			v.log.Warn("verify: too many unknown recipients, session ends after the transaction", "client_ip", ip,
				"unknown", n, "window", v.cur().o.DictWindow.String())
		}
		vd.Action = Disconnect
		v.stats.dictDisconnects.Add(1)
	}
	return vd
}

// wait starts (or joins) the probe of addr and waits for it up to
// InlineWait.
func (v *Verifier) wait(ctx context.Context, ip, addr string) Verdict {
	ch := v.startProbe(addr, "rcpt")
	t := time.NewTimer(v.cur().o.InlineWait)
	defer t.Stop()
	var r singleflight.Result
	select {
	case r = <-ch:
	case <-t.C:
		v.stats.inlineTimeouts.Add(1)
		return Verdict{Action: Defer, Source: "probe", Reply: "probe still running"}
	case <-ctx.Done():
		return Verdict{Action: Defer, Source: "probe", Reply: "probe still running"}
	}
	c, _ := r.Val.(outcome)
	if r.Err != nil {
		return Verdict{Action: Defer, Source: "probe", Err: r.Err}
	}
	if c.have && c.entry.Valid(v.now()) {
		switch c.entry.State {
		case StateExists:
			return Verdict{Action: Accept, Source: "probe"}
		case StateUnknown:
			return v.unknown(ip, Verdict{Action: Reject, Source: "probe", Reply: c.entry.Reply})
		}
	}
	return Verdict{Action: Defer, Source: "probe", Reply: c.res.Reply}
}

// maybeRefresh starts a background probe of a known address whose
// last confirmation is older than RefreshAfter, unless one failed less
// than TempfailTTL ago.
func (v *Verifier) maybeRefresh(e Entry, now time.Time) {
	o := &v.cur().o
	if now.Sub(e.Verified) < o.RefreshAfter || now.Sub(e.LastProbe) < o.TempfailTTL || v.flight.inFlight(e.Addr) {
		return
	}
	v.stats.refreshes.Add(1)
	v.startProbe(e.Addr, "refresh")
}

// startProbe returns the channel of the probe in flight for addr,
// starting it if there is none. The probe runs on its own (bounded by
// ProbeTimeout and Close), so its result is cached even when nobody waits
// any more.
func (v *Verifier) startProbe(addr, why string) <-chan singleflight.Result {
	ch, joined := v.flight.start(addr, func() (outcome, error) {
		v.mu.RLock()
		if v.closed {
			v.mu.RUnlock()
			return outcome{res: ProbeResult{Addr: addr, Result: ResultTempfail, Reply: "shutting down"}}, nil
		}
		v.wg.Add(1)
		v.mu.RUnlock()
		defer v.wg.Done()
		res := v.prober.probe(v.ctx, addr, false)
		e, have, err := v.record(res, why)
		if res.Stage == stageRcpt {
			v.firstUse(domainOf(addr))
		}
		return outcome{res: res, entry: e, have: have}, err
	})
	if joined {
		v.stats.coalesced.Add(1)
	}
	return ch
}

// record logs a probe, counts it and stores its result by the cache's
// rules, returning the entry of the address afterwards (have is false
// when there is none).
func (v *Verifier) record(res ProbeResult, why string) (Entry, bool, error) {
	v.stats.probe(res)
	v.logProbe(res, why)
	if v.ctx.Err() != nil {
		return Entry{}, false, errors.New("verifycache: closed")
	}
	now := v.now()
	addr := res.Addr
	var keptPositive bool
	e, have, err := v.store.update(addr, func(cur Entry, have bool) (Entry, bool) {
		keptPositive = false
		positive := have && cur.State == StateExists
		switch res.Result {
		case ResultExists:
			return Entry{State: StateExists, Reply: res.Reply, Route: res.Route, Verified: now,
				Expires: now.Add(v.cur().o.PositiveTTL), LastProbe: now}, true
		case ResultUnknown:
			if positive && cur.Valid(now) {
				// A failed refresh never overwrites a valid positive
				// entry: only Forget does.
				keptPositive = true
				cur.LastProbe, cur.LastResult = now, "unknown: "+res.Reply
				return cur, true
			}
			return Entry{State: StateUnknown, Reply: res.Reply, Route: res.Route, Verified: now,
				Expires: now.Add(v.cur().o.NegativeTTL), LastProbe: now}, true
		default:
			if positive {
				// Remember the attempt, so that refreshes wait
				// TempfailTTL between tries.
				cur.LastProbe, cur.LastResult = now, "tempfail: "+res.Reply
				return cur, true
			}
			return cur, false
		}
	})
	if err != nil {
		v.log.Error("verify: storing probe result failed", "to", "<"+addr+">", "err", err)
		return Entry{}, false, err
	}
	if keptPositive && why != "admin" {
		v.log.Warn("verify: refresh failed, known address kept", "to", "<"+addr+">", "route", res.Route,
			"result", string(res.Result), "reply", res.Reply, "verified", e.Verified.Format(time.RFC3339))
	}
	if res.Result == ResultTempfail && !(have && e.Valid(now)) {
		v.temp.put(addr, tempEntry{until: now.Add(v.cur().o.TempfailTTL), reply: res.Reply, route: res.Route, at: now})
	} else {
		v.temp.remove(addr)
	}
	return e, have, nil
}

// logProbe writes the one line per probe: address, route, result, reply,
// latency.
func (v *Verifier) logProbe(res ProbeResult, why string) {
	level := slog.LevelInfo
	msg := "verify probe"
	if res.Refused {
		level = slog.LevelWarn
		msg = "verify probe refused by the next hop (check probe_sender and the backend's rules)"
	}
	v.log.Log(context.Background(), level, msg, "to", "<"+res.Addr+">", "route", res.Route,
		"result", string(res.Result), "reply", res.Reply, "latency", res.Latency.Round(time.Microsecond).String(),
		"stage", res.Stage, "why", why, "reused", res.Reused)
}

// loop runs Maintain every period until Close.
func (v *Verifier) loop(every time.Duration) {
	defer v.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		v.Maintain(v.ctx)
		select {
		case <-t.C:
		case <-v.ctx.Done():
			return
		}
	}
}

// cleanupEvery is the period of the expired-entry cleanup.
const cleanupEvery = time.Hour

// Maintain is the periodic pass: every cleanupEvery it deletes expired
// entries; it forgets expired temporary results and dictionary windows,
// closes idle connections, and runs the catch-all tests that are due.
func (v *Verifier) Maintain(ctx context.Context) {
	now := v.now()
	v.catchMu.Lock()
	due := now.Sub(v.cleaned) >= cleanupEvery
	if due {
		v.cleaned = now
	}
	v.catchMu.Unlock()
	if due {
		if _, err := v.Cleanup(); err != nil {
			v.log.Error("verify cleanup failed", "err", err)
		}
	}
	v.temp.sweep(now)
	v.guard.sweep()
	v.checkCatchAllDue(ctx, now)
}

// Cleanup deletes the expired entries now and returns how many.
func (v *Verifier) Cleanup() (int, error) {
	n, err := v.store.cleanup(v.now())
	if n > 0 {
		v.log.Info("verify cleanup", "deleted", n)
	}
	return n, err
}

// probeDomains returns the domains verified by probes, sorted.
func (v *Verifier) probeDomains() []string {
	var out []string
	for d, p := range v.cur().domains {
		if p.Mode == ModeProbe {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}
