package metrics

import (
	"crypto/x509"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mxedge/mxedge/delivery"
	"github.com/mxedge/mxedge/queue"
	"github.com/mxedge/mxedge/smtpd"
	"github.com/mxedge/mxedge/verifycache"
)

type fakeListener struct{}

func (fakeListener) Counters() smtpd.Counters {
	return smtpd.Counters{Open: 2, Sessions: 7, Messages: 5, Bytes: 900}
}
func (fakeListener) Refusals() map[string]uint64 { return map[string]uint64{"relay": 2, "dnsbl": 1} }
func (fakeListener) TLSSessions() map[string]uint64 {
	return map[string]uint64{"TLSv1.2": 1, "TLSv1.3": 6, "other": 0}
}

type fakeVerifier struct{}

func (fakeVerifier) Stats() (verifycache.Stats, error) {
	return verifycache.Stats{Hits: 4, Misses: 1, Probes: 1, LatencyAvg: 20 * time.Millisecond,
		ProbeResults: map[string]uint64{"exists": 1}, Entries: map[string]int{"exists": 1}}, nil
}

type fakeQueue struct{ oldest time.Time }

func (q fakeQueue) Counts() (queue.Counts, error) {
	return queue.Counts{Incoming: 1, Deferred: 4, Hold: 2, Active: 1, Oldest: q.oldest}, nil
}

type fakeCerts struct{ notAfter time.Time }

func (c fakeCerts) Leaves() []*x509.Certificate {
	return []*x509.Certificate{{NotAfter: c.notAfter.Add(time.Hour)}, {NotAfter: c.notAfter}}
}

// allowedLabels are every label name a family of ours may have; each
// takes its values from the configuration or a fixed set.
var allowedLabels = map[string][]string{
	"listener": nil, // configuration names
	"check":    nil, // policy chain check names
	"status":   {"sent", "deferred", "bounced", "other"},
	"class":    {"route", "mx", "smarthost"},
	"result":   {"hit", "miss", "exists", "unknown", "tempfail", "ok", "rcode", "error"},
	"version":  {"none", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3", "other"},
	"policy":   {"none", "may", "encrypt", "verify", "dane", "dane-unusable", "mta-sts", "other"},
	"state":    {"exists", "unknown", "expired", "tempfail", "incoming", "deferred", "hold"},
}

// TestCardinality: whatever status a caller passes, the label values
// stay in their fixed sets, and no family has a label outside
// allowedLabels (no recipient, sender, domain or client IP).
func TestCardinality(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	Listeners(reg, map[string]Listener{"mx": fakeListener{}})
	Verify(reg, fakeVerifier{})
	expiry := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	CertExpiry(reg, map[string]Certs{"mx": fakeCerts{expiry}})
	for _, s := range []string{"sent", "sent", "deferred", "bounced", "alice@example.org", "4.2.2 mailbox full"} {
		m.Delivered(s, "example.org", 3*time.Second)
	}
	m.Delivered("sent", delivery.ClassRoute, time.Second)
	m.Delivered("deferred", "", time.Second)
	m.DNSExchanged("ok", time.Millisecond)
	m.DNSExchanged("example.org SERVFAIL", time.Millisecond)
	DeadHops(reg, func() int { return 3 })
	QueueState(reg, fakeQueue{expiry.Add(-90 * time.Minute)}, func() time.Time { return expiry })
	Auth(reg, func() (uint64, uint64) { return 9, 1 })
	DKIM(reg, func() (uint64, uint64) { return 12, 0 })
	OutboundTLS(reg, func() []delivery.TLSCount {
		return []delivery.TLSCount{{Version: "TLSv1.3", Policy: "dane", N: 3}, {Version: "none", Policy: "may", N: 1}}
	})
	got := samples(t, reg, func(family, label, value string) {
		vals, ok := allowedLabels[label]
		if !ok {
			t.Errorf("%s: label %q not allowed", family, label)
		}
		if vals != nil && !slices.Contains(vals, value) {
			t.Errorf("%s: %s=%q outside its fixed set", family, label, value)
		}
	})
	for k, want := range map[string]float64{
		"mxedge_dns_queries_total,result=ok":                       1,
		"mxedge_dns_queries_total,result=error":                    1,
		"mxedge_dns_latency_seconds":                               2,
		"mxedge_dead_hops":                                         3,
		"mxedge_queue_messages,state=deferred":                     4,
		"mxedge_tls_sessions_total,listener=mx,version=TLSv1.3":    6,
		"mxedge_auth_failures_total":                               9,
		"mxedge_dkim_signed_total":                                 12,
		"mxedge_queue_messages,state=hold":                         2,
		"mxedge_queue_active_messages":                             1,
		"mxedge_queue_oldest_message_age_seconds":                  5400,
		"mxedge_deliveries_total,status=sent":                      3,
		"mxedge_deliveries_total,status=other":                     2,
		"mxedge_deliveries_by_class_total,class=route,status=sent": 1,
		"mxedge_delivery_latency_seconds":                          3,
		"mxedge_sessions_open,listener=mx":                         2,
		"mxedge_messages_accepted_total,listener=mx":               5,
		"mxedge_refusals_total,check=relay,listener=mx":            2,
		"mxedge_verify_lookups_total,result=hit":                   4,
		"mxedge_tls_cert_expiry_timestamp_seconds,listener=mx":     float64(expiry.Unix()),
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
}

// samples gathers reg's mxedge_ families: every sample's value by
// "NAME,LABEL=VALUE,..." ("NAME" without labels), a histogram's count
// there and its sum under the key plus " sum". check, if set, sees every
// label.
func samples(t *testing.T, reg *prometheus.Registry, check func(family, label, value string)) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		if !strings.HasPrefix(f.GetName(), "mxedge_") {
			continue
		}
		for _, mt := range f.GetMetric() {
			key := f.GetName()
			for _, lp := range mt.GetLabel() {
				if check != nil {
					check(f.GetName(), lp.GetName(), lp.GetValue())
				}
				key += "," + lp.GetName() + "=" + lp.GetValue()
			}
			switch {
			case mt.Counter != nil:
				got[key] = mt.Counter.GetValue()
			case mt.Gauge != nil:
				got[key] = mt.Gauge.GetValue()
			case mt.Histogram != nil:
				got[key] = float64(mt.Histogram.GetSampleCount())
				got[key+" sum"] = mt.Histogram.GetSampleSum()
			}
		}
	}
	return got
}

// byClass is the mxedge_deliveries_by_class_total part of samples.
func byClass(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for k, v := range samples(t, reg, nil) {
		if rest, ok := strings.CutPrefix(k, "mxedge_deliveries_by_class_total,"); ok {
			out[rest] = v
		}
	}
	return out
}

// A delivery moves its destination class and status by exactly 1 and no
// other series; one without a next hop moves none of them.
func TestDeliveriesByClass(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	before := byClass(t, reg)
	if len(before) != 9 {
		t.Errorf("%d series at the start, want 3 classes x 3 statuses: %v", len(before), before)
	}
	for _, tc := range []struct{ status, class, series string }{
		{"sent", delivery.ClassRoute, "class=route,status=sent"},
		{"sent", delivery.ClassMX, "class=mx,status=sent"},
		{"deferred", delivery.ClassMX, "class=mx,status=deferred"},
		{"bounced", delivery.ClassSmarthost, "class=smarthost,status=bounced"},
		{"sent", "", ""},
	} {
		m.Delivered(tc.status, tc.class, time.Second)
		after := byClass(t, reg)
		for k, v := range after {
			want := before[k]
			if k == tc.series {
				want++
			}
			if v != want {
				t.Errorf("after %s via %q: %s = %v, want %v", tc.status, tc.class, k, v, want)
			}
		}
		before = after
	}
}

// N group commits move both commit histograms' counts by N; the batch
// size histogram's sum is the updates they carried.
func TestCommitHistograms(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	sizes := []int{1, 1, 5, 20}
	for _, n := range sizes {
		m.Committed(2*time.Millisecond, n)
	}
	got := samples(t, reg, nil)
	const d, b = "mxedge_queue_commit_duration_seconds", "mxedge_queue_commit_batch_size"
	if got[d] != 4 || got[b] != 4 || got[b+" sum"] != 27 || got[d+" sum"] < 0.0079 || got[d+" sum"] > 0.0081 {
		t.Errorf("after 4 commits of 27 updates in 8 ms: duration count %v sum %v, batch size count %v sum %v",
			got[d], got[d+" sum"], got[b], got[b+" sum"])
	}
}
