package verifycache

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// latencyWindow is how many recent probe latencies the percentiles are
// computed over.
const latencyWindow = 1024

// counters are the live counters behind Stats.
type counters struct {
	lookups, hits, misses     atomic.Uint64
	coalesced, inlineTimeouts atomic.Uint64
	refreshes                 atomic.Uint64
	dictDeferred              atomic.Uint64
	dictDisconnects           atomic.Uint64

	mu       sync.Mutex
	probes   uint64
	results  map[Result]*uint64
	latSum   time.Duration
	latMax   time.Duration
	recent   [latencyWindow]time.Duration
	nRecent  int
	posWrite int
}

func (c *counters) probe(res ProbeResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.probes++
	n := c.results[res.Result]
	if n == nil {
		n = new(uint64)
		c.results[res.Result] = n
	}
	*n++
	c.latSum += res.Latency
	c.latMax = max(c.latMax, res.Latency)
	c.recent[c.posWrite] = res.Latency
	c.posWrite = (c.posWrite + 1) % latencyWindow
	c.nRecent = min(c.nRecent+1, latencyWindow)
}

// Stats are the counters of "mxedge verify stats", since the start of the
// daemon (entries: the cache file now).
type Stats struct {
	// Entries counts the cache by state: "exists", "unknown", "expired"
	// (awaiting cleanup) in verify.db, "tempfail" in memory.
	Entries map[string]int `json:"entries"`
	// Lookups are RCPTs of probed domains; Hits were answered from the
	// cache (including held temporary failures), Misses started or joined
	// a probe. HitRate is Hits/Lookups.
	Lookups uint64  `json:"lookups"`
	Hits    uint64  `json:"hits"`
	Misses  uint64  `json:"misses"`
	HitRate float64 `json:"hit_rate"`
	// Coalesced lookups joined a probe already in flight; InlineTimeouts
	// gave up waiting (450) while the probe went on.
	Coalesced      uint64 `json:"coalesced"`
	InlineTimeouts uint64 `json:"inline_timeouts"`
	// Probes sent (RCPT, refresh, admin and catch-all), by result.
	Probes       uint64            `json:"probes"`
	ProbeResults map[string]uint64 `json:"probe_results"`
	Refreshes    uint64            `json:"refreshes"`
	// Probe latency: mean and maximum since start, median and 95th
	// percentile of the last 1024 probes.
	LatencyAvg time.Duration `json:"latency_avg_ns"`
	LatencyP50 time.Duration `json:"latency_p50_ns"`
	LatencyP95 time.Duration `json:"latency_p95_ns"`
	LatencyMax time.Duration `json:"latency_max_ns"`
	// Dictionary attack defence: lookups answered without a probe because
	// the client was over verify.dictionary_limit, disconnections, and
	// clients over the limit / disconnected in their current window.
	DictionaryDeferred    uint64 `json:"dictionary_deferred"`
	DictionaryDisconnects uint64 `json:"dictionary_disconnects"`
	ClientsLimited        int    `json:"clients_limited"`
	ClientsCut            int    `json:"clients_cut"`
	// Domains: the verification of every relay domain.
	Domains []DomainStatus `json:"domains"`
	// CatchAll lists the domains whose next hop accepted a random address.
	CatchAll []string `json:"catch_all"`
}

// DomainStatus is one relay domain in Stats.
type DomainStatus struct {
	Domain string `json:"domain"`
	Mode   string `json:"mode"`
	// ListSize is the number of recipients of a list domain.
	ListSize int `json:"list_size,omitempty"`
	// CatchAll is the last catch-all test of a probed domain.
	CatchAll *DomainCheck `json:"catch_all_check,omitempty"`
}

// Stats returns the counters; it counts the cache file's entries, a pass
// over verify.db (about a second per million entries).
func (v *Verifier) Stats() (Stats, error) {
	entries, err := v.store.counts(v.now())
	if err != nil {
		return Stats{}, err
	}
	entries[string(StateTempfail)] = v.temp.sweep(v.now())
	st := Stats{
		Entries:               entries,
		Lookups:               v.stats.lookups.Load(),
		Hits:                  v.stats.hits.Load(),
		Misses:                v.stats.misses.Load(),
		Coalesced:             v.stats.coalesced.Load(),
		InlineTimeouts:        v.stats.inlineTimeouts.Load(),
		Refreshes:             v.stats.refreshes.Load(),
		DictionaryDeferred:    v.stats.dictDeferred.Load(),
		DictionaryDisconnects: v.stats.dictDisconnects.Load(),
		ProbeResults:          map[string]uint64{},
		CatchAll:              []string{},
	}
	if st.Lookups > 0 {
		st.HitRate = float64(st.Hits) / float64(st.Lookups)
	}
	st.ClientsLimited, st.ClientsCut = v.guard.sweep()

	v.stats.mu.Lock()
	st.Probes = v.stats.probes
	for r, n := range v.stats.results {
		st.ProbeResults[string(r)] = *n
	}
	if st.Probes > 0 {
		st.LatencyAvg = v.stats.latSum / time.Duration(st.Probes)
	}
	st.LatencyMax = v.stats.latMax
	recent := slices.Clone(v.stats.recent[:v.stats.nRecent])
	v.stats.mu.Unlock()
	if len(recent) > 0 {
		slices.Sort(recent)
		st.LatencyP50 = recent[len(recent)/2]
		st.LatencyP95 = recent[min(len(recent)*95/100, len(recent)-1)]
	}

	pols := v.cur().domains
	domains := make([]string, 0, len(pols))
	for d := range pols {
		domains = append(domains, d)
	}
	slices.Sort(domains)
	v.catchMu.Lock()
	defer v.catchMu.Unlock()
	for _, d := range domains {
		p := pols[d]
		ds := DomainStatus{Domain: d, Mode: p.Mode, ListSize: len(p.List)}
		if c, ok := v.catch[d]; ok && p.Mode == ModeProbe {
			ds.CatchAll = &c
			if c.CatchAll {
				st.CatchAll = append(st.CatchAll, d)
			}
		}
		st.Domains = append(st.Domains, ds)
	}
	return st, nil
}
