package metrics

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mxedge/mxedge/delivery"
)

// TestExamplesUseOurNames: examples/grafana-dashboard.json,
// examples/alerts.yml and the metric list of docs/deploy.md name only
// families this package registers, and the dashboard shows and the list
// names every one of them.
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
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "mxedge_") {
			ours[f.GetName()] = true
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
		if !strings.HasSuffix(file, ".yml") {
			for n := range ours {
				if !used[n] {
					t.Errorf("%s: does not show %s", file, n)
				}
			}
		}
	}
}
