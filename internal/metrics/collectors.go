package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mxedge/mxedge/delivery"
)

var (
	descSessionsOpen = prometheus.NewDesc("mxedge_sessions_open",
		"SMTP sessions open now, by listener.", []string{"listener"}, nil)
	descSessions = prometheus.NewDesc("mxedge_sessions_total",
		"SMTP connections accepted past the session limit, by listener.", []string{"listener"}, nil)
	descAccepted = prometheus.NewDesc("mxedge_messages_accepted_total",
		"Messages committed to the queue (250 queued as), by listener.", []string{"listener"}, nil)
	descAcceptedBytes = prometheus.NewDesc("mxedge_bytes_accepted_total",
		"Bytes of the messages committed to the queue, by listener.", []string{"listener"}, nil)
	descRefusals = prometheus.NewDesc("mxedge_refusals_total",
		"Refusals by listener and check (limit, pregreet, iprev, dnsbl, relay, verify, ...): the check names of the policy chain.",
		[]string{"listener", "check"}, nil)
	descTLSIn = prometheus.NewDesc("mxedge_tls_sessions_total",
		"Inbound SMTP sessions under TLS (STARTTLS or implicit), by listener and protocol version.",
		[]string{"listener", "version"}, nil)

	descVerifyLookups = prometheus.NewDesc("mxedge_verify_lookups_total",
		"Recipient verification lookups, by result: hit (answered from the cache), miss (started or joined a probe).",
		[]string{"result"}, nil)
	descVerifyProbes = prometheus.NewDesc("mxedge_verify_probes_total",
		"Verification probes sent to the next hop, by result.", []string{"result"}, nil)
	descVerifyLatency = prometheus.NewDesc("mxedge_verify_probe_latency_seconds",
		"Verification probe latency (sum and count since start).", nil, nil)
	descVerifyEntries = prometheus.NewDesc("mxedge_verify_cache_entries",
		"Verification cache entries by state.", []string{"state"}, nil)

	descTLSOut = prometheus.NewDesc("mxedge_tls_out_sessions_total",
		"Outbound SMTP sessions by TLS version (none: plaintext) and the TLS policy that applied (none, may, encrypt, verify, dane, dane-unusable, mta-sts).",
		[]string{"version", "policy"}, nil)

	descQueueMessages = prometheus.NewDesc("mxedge_queue_messages",
		"Messages in the queue by stored state: incoming (not tried yet), deferred (tried, waiting for the next attempt), hold.",
		[]string{"state"}, nil)
	descQueueActive = prometheus.NewDesc("mxedge_queue_active_messages",
		"Messages with a delivery attempt in flight now (also counted in mxedge_queue_messages).", nil, nil)
	descQueueOldest = prometheus.NewDesc("mxedge_queue_oldest_message_age_seconds",
		"Age of the oldest message in the queue; 0 when it is empty.", nil, nil)

	descCertExpiry = prometheus.NewDesc("mxedge_tls_cert_expiry_timestamp_seconds",
		"Earliest NotAfter (Unix time) of a listener's certificates.", []string{"listener"}, nil)
)

// listenerCollector reads the listeners' live counters at scrape time.
type listenerCollector map[string]Listener

func (c listenerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSessionsOpen, descSessions, descAccepted, descAcceptedBytes, descRefusals, descTLSIn} {
		ch <- d
	}
}

func (c listenerCollector) Collect(ch chan<- prometheus.Metric) {
	for name, l := range c {
		n := l.Counters()
		ch <- prometheus.MustNewConstMetric(descSessionsOpen, prometheus.GaugeValue, float64(n.Open), name)
		ch <- prometheus.MustNewConstMetric(descSessions, prometheus.CounterValue, float64(n.Sessions), name)
		ch <- prometheus.MustNewConstMetric(descAccepted, prometheus.CounterValue, float64(n.Messages), name)
		ch <- prometheus.MustNewConstMetric(descAcceptedBytes, prometheus.CounterValue, float64(n.Bytes), name)
		for check, v := range l.Refusals() {
			ch <- prometheus.MustNewConstMetric(descRefusals, prometheus.CounterValue, float64(v), name, check)
		}
		for version, v := range l.TLSSessions() {
			ch <- prometheus.MustNewConstMetric(descTLSIn, prometheus.CounterValue, float64(v), name, version)
		}
	}
}

// verifyCollector reads the verifier's counters at scrape time (the
// entry counts are a read transaction on verify.db, not the queue).
type verifyCollector struct{ v Verifier }

func (c verifyCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descVerifyLookups, descVerifyProbes, descVerifyLatency, descVerifyEntries} {
		ch <- d
	}
}

func (c verifyCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.v.Stats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descVerifyLookups, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(descVerifyLookups, prometheus.CounterValue, float64(st.Hits), "hit")
	ch <- prometheus.MustNewConstMetric(descVerifyLookups, prometheus.CounterValue, float64(st.Misses), "miss")
	for r, n := range st.ProbeResults {
		ch <- prometheus.MustNewConstMetric(descVerifyProbes, prometheus.CounterValue, float64(n), r)
	}
	sum := st.LatencyAvg.Seconds() * float64(st.Probes)
	ch <- prometheus.MustNewConstSummary(descVerifyLatency, st.Probes, sum, nil)
	for s, n := range st.Entries {
		ch <- prometheus.MustNewConstMetric(descVerifyEntries, prometheus.GaugeValue, float64(n), s)
	}
}

// certCollector reads the listeners' certificates at scrape time (a
// renewal shows at the next scrape).
type certCollector map[string]Certs

func (c certCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descCertExpiry }

func (c certCollector) Collect(ch chan<- prometheus.Metric) {
	for name, cs := range c {
		var earliest float64
		for _, l := range cs.Leaves() {
			if t := float64(l.NotAfter.Unix()); earliest == 0 || t < earliest {
				earliest = t
			}
		}
		if earliest != 0 {
			ch <- prometheus.MustNewConstMetric(descCertExpiry, prometheus.GaugeValue, earliest, name)
		}
	}
}

// tlsOutCollector reads the deliverer's TLS counts at scrape time.
type tlsOutCollector func() []delivery.TLSCount

func (c tlsOutCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descTLSOut }

func (c tlsOutCollector) Collect(ch chan<- prometheus.Metric) {
	for _, n := range c() {
		ch <- prometheus.MustNewConstMetric(descTLSOut, prometheus.CounterValue, float64(n.N), n.Version, n.Policy)
	}
}

// queueCollector reads the queue's live counts at scrape time (atomic
// counters and one read transaction: no scan, no write lock).
type queueCollector struct {
	q   Queue
	now func() time.Time
}

func (c queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueueMessages, descQueueActive, descQueueOldest} {
		ch <- d
	}
}

func (c queueCollector) Collect(ch chan<- prometheus.Metric) {
	n, err := c.q.Counts()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descQueueMessages, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(descQueueMessages, prometheus.GaugeValue, float64(n.Incoming), "incoming")
	ch <- prometheus.MustNewConstMetric(descQueueMessages, prometheus.GaugeValue, float64(n.Deferred), "deferred")
	ch <- prometheus.MustNewConstMetric(descQueueMessages, prometheus.GaugeValue, float64(n.Hold), "hold")
	ch <- prometheus.MustNewConstMetric(descQueueActive, prometheus.GaugeValue, float64(n.Active))
	age := 0.0
	if !n.Oldest.IsZero() {
		age = max(0, c.now().Sub(n.Oldest).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(descQueueOldest, prometheus.GaugeValue, age)
}
