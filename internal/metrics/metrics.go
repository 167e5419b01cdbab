// Package metrics exports what the relay does as Prometheus metrics
// (github.com/prometheus/client_golang) on the registry it is given: no
// package-level state and no default registry, so that two relays (an
// MX-10 pair) run in one test process with their own numbers.
//
// Most families are read at scrape time from counters the stages keep
// live anyway (smtpd.Server.Counters and Refusals, the verifier's
// counters, queue.Queue.Counts, the certificates' expiry): the hot path pays one atomic add,
// and a scrape never scans the queue or takes its write lock. Delivery
// results come through queue.Observer (Delivered), the queue's group
// commits through queue.CommitObserver (Committed); each only bumps
// counters and histograms.
//
// Label values are bounded and never come from client input: listener
// names and check names are the configuration's, statuses are a fixed
// set (an unknown status is counted as "other"). No recipient, sender,
// client address or domain label exists (TestCardinality).
//
// The names are the contract of examples/grafana-dashboard.json and
// examples/alerts.yml; rename nothing without them.
package metrics

import (
	"crypto/x509"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mxedge/mxedge/delivery"
	"github.com/mxedge/mxedge/queue"
	"github.com/mxedge/mxedge/smtpd"
	"github.com/mxedge/mxedge/verifycache"
)

// Listener is what a listener's families are read from (smtpd.Server).
type Listener interface {
	Counters() smtpd.Counters
	Refusals() map[string]uint64
	TLSSessions() map[string]uint64 // by version, a fixed set
}

// Verifier is what the verify families are read from
// (verifycache.Verifier).
type Verifier interface {
	Stats() (verifycache.Stats, error)
}

// Queue is what the queue families are read from (queue.Queue.Counts:
// live counters, no scan).
type Queue interface {
	Counts() (queue.Counts, error)
}

// Certs are a listener's certificates (certs.Store).
type Certs interface {
	Leaves() []*x509.Certificate
}

// Metrics are one relay's metrics on one registry.
type Metrics struct {
	deliveries *prometheus.CounterVec
	byClass    *prometheus.CounterVec
	latency    prometheus.Histogram
	dns        *prometheus.CounterVec
	dnsLatency prometheus.Histogram
	commitTime prometheus.Histogram
	commitSize prometheus.Histogram
}

// DeliveryStatuses are the status label values of
// mxedge_deliveries_total.
var deliveryStatuses = []string{"sent", "deferred", "bounced"}

// destinationClasses are the class label values of
// mxedge_deliveries_by_class_total: how delivery chose the next hop.
var destinationClasses = []string{delivery.ClassRoute, delivery.ClassMX, delivery.ClassSmarthost}

// New registers the relay's fixed families (and Go's runtime and
// process collectors) on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mxedge_deliveries_total",
			Help: "Delivery attempt results per recipient, by status (sent, deferred, bounced).",
		}, []string{"status"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mxedge_delivery_latency_seconds",
			Help: "Time from acceptance to successful delivery, per recipient.",
			// 100 ms (the backend next door) to 3 days (the queue lifetime).
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 72 * 3600},
		}),
		byClass: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mxedge_deliveries_by_class_total",
			Help: "Delivery attempt results per recipient, by destination class (route: a fixed [routes] next hop, mx: MX lookup, smarthost) and status; recipients without a next hop are not counted.",
		}, []string{"class", "status"}),
		dns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mxedge_dns_queries_total",
			Help: "DNS exchanges with the configured servers, by result: ok (NOERROR, NXDOMAIN), rcode (SERVFAIL, REFUSED, ...), error (timeout, network).",
		}, []string{"result"}),
		dnsLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mxedge_dns_latency_seconds",
			Help:    "Duration of DNS exchanges with one server.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
		}),
		commitTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mxedge_queue_commit_duration_seconds",
			Help: "Duration of the queue's group commits (bbolt write transactions, from the first update to durable on disk).",
			// A local SSD's fsync (~0.5 ms) to a stalled disk.
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
		}),
		commitSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mxedge_queue_commit_batch_size",
			Help: "Queue updates (a message received, an attempt's outcome, a removal) per group commit.",
			// At most queue.concurrency (bbolt's MaxBatchSize) per batch.
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
		}),
	}
	for _, r := range []string{"ok", "rcode", "error"} {
		m.dns.WithLabelValues(r)
	}
	for _, s := range deliveryStatuses {
		m.deliveries.WithLabelValues(s) // present at 0 from the start
	}
	m.deliveries.WithLabelValues("other")
	for _, c := range destinationClasses {
		for _, st := range deliveryStatuses {
			m.byClass.WithLabelValues(c, st)
		}
	}
	reg.MustRegister(m.deliveries, m.byClass, m.latency, m.dns, m.dnsLatency, m.commitTime, m.commitSize,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Delivered implements queue.Observer. A class outside
// destinationClasses ("": no next hop) is counted in
// mxedge_deliveries_total only.
func (m *Metrics) Delivered(status, class string, delay time.Duration) {
	if !slices.Contains(deliveryStatuses, status) {
		status = "other"
	}
	m.deliveries.WithLabelValues(status).Inc()
	if slices.Contains(destinationClasses, class) {
		m.byClass.WithLabelValues(class, status).Inc()
	}
	if status == "sent" {
		m.latency.Observe(delay.Seconds())
	}
}

// Committed implements queue.CommitObserver.
func (m *Metrics) Committed(took time.Duration, updates int) {
	m.commitTime.Observe(took.Seconds())
	m.commitSize.Observe(float64(updates))
}

// DNSExchanged implements resolver.Observer.
func (m *Metrics) DNSExchanged(result string, took time.Duration) {
	if result != "ok" && result != "rcode" {
		result = "error"
	}
	m.dns.WithLabelValues(result).Inc()
	m.dnsLatency.Observe(took.Seconds())
}

// DeadHops registers mxedge_dead_hops: the next hops marked dead now.
func DeadHops(reg prometheus.Registerer, count func() int) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mxedge_dead_hops",
		Help: "Next hops marked dead after connection failures (deliveries to them are deferred without a connection).",
	}, func() float64 { return float64(count()) }))
}

// Listeners registers the families of the listeners, by name (the
// configuration's listener names).
func Listeners(reg prometheus.Registerer, ls map[string]Listener) {
	reg.MustRegister(listenerCollector(ls))
}

// Verify registers the recipient verification families of v.
func Verify(reg prometheus.Registerer, v Verifier) {
	reg.MustRegister(verifyCollector{v})
}

// Auth registers mxedge_auth_failures_total and
// mxedge_auth_lockouts_total, read from the submission listeners' guard.
func Auth(reg prometheus.Registerer, counts func() (failures, lockouts uint64)) {
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "mxedge_auth_failures_total",
			Help: "Failed SMTP authentications on the submission listeners (wrong user or password).",
		}, func() float64 { f, _ := counts(); return float64(f) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "mxedge_auth_lockouts_total",
			Help: "Client networks locked out after too many authentication failures.",
		}, func() float64 { _, l := counts(); return float64(l) }))
}

// DKIM registers mxedge_dkim_signed_total and
// mxedge_dkim_sign_errors_total, read from the queue's signer.
func DKIM(reg prometheus.Registerer, counts func() (signed, failed uint64)) {
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "mxedge_dkim_signed_total",
			Help: "Messages DKIM-signed before their first delivery attempt ([[dkim_sign]]).",
		}, func() float64 { n, _ := counts(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "mxedge_dkim_sign_errors_total",
			Help: "DKIM signing attempts that failed (the message is retried).",
		}, func() float64 { _, n := counts(); return float64(n) }))
}

// OutboundTLS registers mxedge_tls_out_sessions_total: outbound
// sessions by TLS version ("none" for plaintext) and policy, read from
// delivery.Deliverer.TLSSessions at scrape time.
func OutboundTLS(reg prometheus.Registerer, sessions func() []delivery.TLSCount) {
	reg.MustRegister(tlsOutCollector(sessions))
}

// QueueState registers mxedge_queue_messages (by state),
// mxedge_queue_active_messages and
// mxedge_queue_oldest_message_age_seconds, read from q at scrape time;
// now is the clock of the age [time.Now].
func QueueState(reg prometheus.Registerer, q Queue, now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	reg.MustRegister(queueCollector{q, now})
}

// CertExpiry registers mxedge_tls_cert_expiry_timestamp_seconds: the
// earliest NotAfter of each listener's certificates.
func CertExpiry(reg prometheus.Registerer, cs map[string]Certs) {
	reg.MustRegister(certCollector(cs))
}
