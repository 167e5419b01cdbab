package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mxedge/mxedge/control"
	"github.com/mxedge/mxedge/resolver/dnstest"
)

// metricsText is the body of http://addr/metrics.
func metricsText(t *testing.T, addr string) []byte {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s %v", resp.Status, err)
	}
	return body
}

// scrape reads http://addr/metrics into "name{labels}" -> value.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(metricsText(t, addr)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func healthz(t *testing.T, addr string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// An operator scrapes /metrics while mail flows: the counters move by
// exactly the messages sent, accepted and refused, and no label value
// carries what a client sent (address, domain, IP, HELO).
func TestMetricsScenario(t *testing.T) {
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	admin := freeAddr(t, "127.0.0.1")
	cfg := relayConfig(filepath.Join(dir, "data"), mx, be.Addr()) + fmt.Sprintf("\n[admin]\nhttp = %q\n", admin)
	r := startRelay(t, dir, "-config", writeConfig(t, dir, cfg))
	if _, err := r.logs.wait("mxedge started", 1, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if code, body := healthz(t, admin); code != 200 || body != "ok" {
		t.Fatalf("/healthz = %d %q, want 200 ok", code, body)
	}

	before := scrape(t, admin)
	const accepted, refused = 3, 2
	for i := range accepted {
		out, code := swaks(t, mx, "--helo", "client.test", "--from", "sender@src.test",
			"--to", "alice@relay.test", "--header", fmt.Sprintf("Subject: metrics %d", i))
		if code != 0 {
			t.Fatalf("swaks failed (%d):\n%s", code, out)
		}
	}
	for range refused {
		out, _ := swaks(t, mx, "--helo", "client.test", "--from", "sender@src.test", "--to", "someone@elsewhere.test")
		if !strings.Contains(out, "<** 554") && !strings.Contains(out, "<** 550") {
			t.Fatalf("relay attempt not refused:\n%s", out)
		}
	}
	if _, err := be.WaitMessages(accepted, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// The delivery result is counted when its log line is written.
	if _, err := r.logs.wait("msg=delivery|status=sent", accepted, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// Each message's record is gone once its removal is logged: the
	// queue families are back at zero (not mxedge_queue_active_messages:
	// the in-flight mark is cleared just after that line).
	if _, err := r.logs.wait("msg=removed", accepted, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	after := scrape(t, admin)
	for _, k := range []string{`mxedge_queue_messages{state="incoming"}`, `mxedge_queue_messages{state="deferred"}`,
		`mxedge_queue_messages{state="hold"}`, `mxedge_queue_oldest_message_age_seconds`} {
		if v, ok := after[k]; !ok || v != 0 {
			t.Errorf("%s = %v (exported: %v) after every message was delivered, want 0", k, v, ok)
		}
	}
	delta := func(k string) float64 { return after[k] - before[k] }
	// Outbound sessions (cached connections may carry several messages)
	// to the plaintext backend: version none.
	var out, outPlain float64
	for k := range after {
		if strings.HasPrefix(k, "mxedge_tls_out_sessions_total{") {
			out += delta(k)
			if strings.Contains(k, `version="none"`) {
				outPlain += delta(k)
			}
		}
	}
	if out < 1 || out > accepted || outPlain != out {
		t.Errorf("mxedge_tls_out_sessions_total moved by %v (plaintext %v) for %d messages to a plaintext backend", out, outPlain, accepted)
	}
	for k, want := range map[string]float64{
		`mxedge_sessions_total{listener="mx"}`:               accepted + refused,
		`mxedge_messages_accepted_total{listener="mx"}`:      accepted,
		`mxedge_refusals_total{check="relay",listener="mx"}`: refused,
		`mxedge_deliveries_total{status="sent"}`:             accepted,
		`mxedge_deliveries_total{status="bounced"}`:          0,
		`mxedge_delivery_latency_seconds_count`:              accepted,
	} {
		if got := delta(k); got != want {
			t.Errorf("%s moved by %v, want %v", k, got, want)
		}
	}
	if b := delta(`mxedge_bytes_accepted_total{listener="mx"}`); b < accepted*100 {
		t.Errorf("bytes accepted moved by %v for %d messages", b, accepted)
	}
	if open := after[`mxedge_sessions_open{listener="mx"}`]; open != 0 {
		t.Errorf("sessions open after the clients left: %v", open)
	}
	for k := range after {
		for _, client := range []string{"127.0.0.", "src.test", "elsewhere", "alice", "relay.test", "client.test"} {
			if strings.Contains(k, client) {
				t.Errorf("label value from client input %q: %s", client, k)
			}
		}
	}

	// The control socket gone (removed by a cleanup script): admin
	// commands cannot reach the relay, and /healthz says so.
	if err := os.Remove(control.SocketPath(filepath.Join(dir, "data"))); err != nil {
		t.Fatal(err)
	}
	if code, body := healthz(t, admin); code != 503 || !strings.HasPrefix(body, "control socket: ") {
		t.Errorf("/healthz without the control socket = %d %q, want 503 control socket: ...", code, body)
	}
	code, err := r.stop(30 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("stop: %d %v", code, err)
	}
}

// An operator tells mail to the backend (a [routes] next hop) from the
// relay's own mail out by MX (a bounce to the sender's domain): each
// delivery moves its destination class and status by exactly 1, and the
// queue's commits (a record in, a record out per message) show in the
// commit histograms.
func TestMetricsDestinationClassAndCommits(t *testing.T) {
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	senderMX := startBackend(t, "127.0.0.4:0") // src.test's MX host: knows alice
	_, port, _ := net.SplitHostPort(senderMX.Addr())
	ns := dnstest.StartTB(t, "src.test. 300 IN MX 10 mx.src.test.", "mx.src.test. 300 IN A 127.0.0.4")
	mx := freeAddr(t, "127.0.0.2")
	admin := freeAddr(t, "127.0.0.1")
	cfg := withDNS(relayConfig(filepath.Join(dir, "data"), mx, be.Addr()), ns.Addr()) +
		fmt.Sprintf("\n[delivery]\nmx_port = %s\n\n[admin]\nhttp = %q\n", port, admin)
	r := startRelay(t, dir, "-config", writeConfig(t, dir, cfg))
	if _, err := r.logs.wait("mxedge started", 1, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	before := scrape(t, admin)
	for _, to := range []string{"alice@relay.test", "nobody@relay.test"} { // nobody: refused by the backend
		if out, code := swaks(t, mx, "--helo", "client.test", "--from", "alice@src.test", "--to", to); code != 0 {
			t.Fatalf("swaks to %s failed (%d):\n%s", to, code, out)
		}
	}
	if _, err := be.WaitMessages(1, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := senderMX.WaitMessages(1, 30*time.Second); err != nil {
		t.Fatalf("no bounce by MX: %v", err)
	}
	// Two messages and the bounce, each removed once delivered or
	// returned: the last commits are done.
	if _, err := r.logs.wait("msg=removed", 3, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	after := scrape(t, admin)
	delta := func(k string) float64 { return after[k] - before[k] }
	want := map[string]float64{
		`mxedge_deliveries_by_class_total{class="route",status="sent"}`:    1,
		`mxedge_deliveries_by_class_total{class="route",status="bounced"}`: 1,
		`mxedge_deliveries_by_class_total{class="mx",status="sent"}`:       1,
		`mxedge_deliveries_total{status="sent"}`:                           2,
		`mxedge_queue_commit_batch_size_sum`:                               6, // 3 inserts, 3 removals
	}
	for k := range after {
		if _, ok := want[k]; !ok && strings.HasPrefix(k, "mxedge_deliveries_by_class_total{") {
			want[k] = 0
		}
	}
	for k, w := range want {
		if _, ok := after[k]; !ok {
			t.Errorf("%s not exported", k)
		} else if got := delta(k); got != w {
			t.Errorf("%s moved by %v, want %v", k, got, w)
		}
	}
	commits := delta(`mxedge_queue_commit_batch_size_count`)
	if commits < 1 || commits > 6 || delta(`mxedge_queue_commit_duration_seconds_count`) != commits {
		t.Errorf("commits counted: batch size %v, duration %v; want the same, 1 to 6",
			commits, delta(`mxedge_queue_commit_duration_seconds_count`))
	}
}
