package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Prometheus's own checker accepts what an operator loads into it: the
// alert rules of examples/alerts.yml (their PromQL parses) and the
// relay's /metrics (names, types, help texts: "promtool check metrics").
func TestPromtoolChecks(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is not installed (Debian package prometheus)")
		}
		t.Skip("promtool is not installed (Debian package prometheus)")
	}
	if out, err := exec.Command(promtool, "check", "rules", "../examples/alerts.yml").CombinedOutput(); err != nil {
		t.Errorf("promtool check rules examples/alerts.yml: %v\n%s", err, out)
	}

	dir := t.TempDir()
	admin := freeAddr(t, "127.0.0.1")
	cfg := relayConfig(filepath.Join(dir, "data"), freeAddr(t, "127.0.0.2"), "127.0.0.3:9") + fmt.Sprintf("\n[admin]\nhttp = %q\n", admin)
	r := startRelay(t, dir, "-config", writeConfig(t, dir, cfg))
	if _, err := r.logs.wait("mxedge started", 1, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	body := metricsText(t, admin)
	if !bytes.Contains(body, []byte("mxedge_sessions_total")) {
		t.Fatalf("/metrics without the relay's families:\n%s", body)
	}
	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = bytes.NewReader(body)
	if out, err := check.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
