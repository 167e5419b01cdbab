package metrics

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mxedge/mxedge/delivery"
)

// TestExamplesUseOurNames: examples/grafana-dashboard.json,
// examples/alerts.yml and the metric list of docs/deploy.md name only
// families this package registers, and the dashboard shows and the list
// names every one of them; their label matchers use labels and values
// the families export (checkSelectors).
func TestExamplesUseOurNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	Listeners(reg, map[string]Listener{"mx": fakeListener{}})
	Verify(reg, fakeVerifier{})
	CertExpiry(reg, map[string]Certs{"mx": fakeCerts{time.Now()}})
	DeadHops(reg, func() int { return 0 })
	QueueState(reg, fakeQueue{}, nil)
	Auth(reg, func() (uint64, uint64) { return 0, 0 })
	DKIM(reg, func() (uint64, uint64) { return 0, 0 })
	OutboundTLS(reg, func() []delivery.TLSCount { return []delivery.TLSCount{{Version: "TLSv1.3", Policy: "may", N: 1}} })
	m.Delivered("sent", delivery.ClassMX, time.Second)
	m.Committed(time.Millisecond, 3)
	m.DNSExchanged("ok", time.Millisecond)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	ours := map[string]bool{}
	labels := map[string]map[string]bool{} // family -> its label names
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "mxedge_") {
			ours[f.GetName()] = true
			labels[f.GetName()] = map[string]bool{}
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					labels[f.GetName()][l.GetName()] = true
				}
			}
		}
	}
	name := regexp.MustCompile(`mxedge_[a-z_]+`)
	for _, file := range []string{"../../examples/grafana-dashboard.json", "../../examples/alerts.yml", "../../docs/deploy.md"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		used := map[string]bool{}
		for _, n := range name.FindAllString(string(data), -1) {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(n, suffix); ok && ours[base] {
					n = base
				}
			}
			if !ours[n] {
				t.Errorf("%s: %s is not a metric of ours", file, n)
			}
			used[n] = true
		}
		checkSelectors(t, file, string(data), labels)
		if !strings.HasSuffix(file, ".yml") {
			for n := range ours {
				if !used[n] {
					t.Errorf("%s: does not show %s", file, n)
				}
			}
		}
	}
}

// checkSelectors: the label matchers of the queries in data
// (mxedge_deliveries_total{status=~"deferred|bounced"}) name labels the
// family has and, where its values are a fixed set (allowedLabels), only
// values of that set: a query on a value the code never exports matches
// nothing and its alert never fires.
func checkSelectors(t *testing.T, file, data string, labels map[string]map[string]bool) {
	t.Helper()
	selector := regexp.MustCompile(`(mxedge_[a-z_]+)\{([^}]*)\}`)
	matcher := regexp.MustCompile(`([a-z_]+)\s*(=~|!~|!=|=)\s*\\?"([^"\\]*)\\?"`)
	for _, sel := range selector.FindAllStringSubmatch(data, -1) {
		family := sel[1]
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(family, suffix); ok && labels[base] != nil {
				family = base
			}
		}
		for _, m := range matcher.FindAllStringSubmatch(sel[2], -1) {
			name, op, value := m[1], m[2], m[3]
			if name == "instance" || name == "job" || name == "le" {
				continue
			}
			if !labels[family][name] {
				t.Errorf("%s: %s has no label %q (%s)", file, family, name, sel[0])
				continue
			}
			fixed := allowedLabels[name]
			if fixed == nil {
				continue
			}
			values := []string{value}
			if op == "=~" || op == "!~" {
				values = strings.Split(value, "|")
			}
			for _, v := range values {
				if !slices.Contains(fixed, v) {
					t.Errorf("%s: %s{%s} is never exported (%s takes %q)", file, family, name+op+strconv.Quote(v), name, fixed)
				}
			}
		}
	}
}
