package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A newcomer runs "mxedge serve" with no configuration and sends a message
// to a demo user with swaks: it lands in the demo Maildir. A message to an
// unknown user is refused in the session: recipient verification asked the
// demo backend, which does not know the user. The demo serves /healthz and
// /metrics, which count the two.
func TestBuiltinDefaultDeliversToDemoMailbox(t *testing.T) {
	dir := t.TempDir()
	// The demo's own addresses (127.0.0.1:2525, :2526 and :9325) may be in
	// use by a demo running on this machine: move them.
	mx, backend, admin := freeAddr(t, "127.0.0.2"), freeAddr(t, "127.0.0.3"), freeAddr(t, "127.0.0.2")
	t.Setenv("MXEDGE_DEMO_MX", mx)
	t.Setenv("MXEDGE_DEMO_BACKEND", backend)
	t.Setenv("MXEDGE_DEMO_ADMIN", admin)
	t.Setenv("MXEDGE_CONFIG", "")
	r := startRelay(t, dir)
	if _, err := r.out.wait(mx, 1, time.Second); err != nil {
		t.Fatalf("does not say where it listens: %v\n%s", err, r.out.String())
	}
	if _, err := r.out.wait("mxedge-data/mailboxes", 1, time.Second); err != nil {
		t.Fatalf("does not say where mail ends up: %v\n%s", err, r.out.String())
	}
	if _, err := r.out.wait("metrics on http://"+admin+"/metrics", 1, time.Second); err != nil {
		t.Fatalf("does not say where its metrics are: %v\n%s", err, r.out.String())
	}
	if code, body := healthz(t, admin); code != 200 || body != "ok" {
		t.Fatalf("/healthz = %d %q, want 200 ok", code, body)
	}
	out, code := swaks(t, mx, "--from", "someone@src.test", "--to", "alice@example.test",
		"--header", "Subject: hello from the quick start")
	if code != 0 {
		t.Fatalf("swaks: %d\n%s", code, out)
	}
	if _, err := r.logs.wait("msg=\"localbackend: stored\"|user=alice", 1, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "mxedge-data", "mailboxes", "alice", "new", "*"))
	if len(files) != 1 {
		t.Fatalf("alice's Maildir has %d messages, want 1", len(files))
	}
	msg, _ := os.ReadFile(files[0])
	if !strings.HasPrefix(string(msg), "Received: from ") || !strings.Contains(string(msg), "Subject: hello from the quick start") {
		t.Errorf("stored message:\n%s", msg)
	}

	out, code = swaks(t, mx, "--from", "someone@src.test", "--to", "nobody@example.test")
	if code == 0 || !strings.Contains(out, "<** 550 5.1.1 <nobody@example.test>: Recipient address rejected: undeliverable address: 550 5.1.1 <nobody@example.test>: no such user here") {
		t.Fatalf("unknown user not refused in the session: swaks exit %d\n%s", code, out)
	}
	if _, err := r.logs.wait(`msg="verify probe"|to=<nobody@example.test>|result=unknown`, 1, time.Second); err != nil {
		t.Fatal(err)
	}
	m := scrape(t, admin)
	for k, want := range map[string]float64{
		`mxedge_messages_accepted_total{listener="mx"}`:       1,
		`mxedge_refusals_total{check="verify",listener="mx"}`: 1,
		`mxedge_deliveries_total{status="sent"}`:              1,
	} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
}

// "mxedge config check" validates a file, prints the effective config, and
// points at file and line for a typo.
func TestConfigCheck(t *testing.T) {
	out, err := exec.Command(binary, "config", "check", "-config", "../examples/mxedge.toml").CombinedOutput()
	if err != nil {
		t.Fatalf("example config rejected: %v\n%s", err, out)
	}
	for _, want := range []string{"hostname", "message_size", "min_backoff"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("effective config lacks %q:\n%s", want, out)
		}
	}

	dir := t.TempDir()
	bad := filepath.Join(dir, "typo.toml")
	os.WriteFile(bad, []byte("hostname = \"mx.example.net\"\ndata_dir = \"/tmp/x\"\nrelay_domian = [\"example.org\"]\n"), 0o600)
	out, err = exec.Command(binary, "config", "check", "-config", bad).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("typo: exit %v, want 1\n%s", err, out)
	}
	if !strings.Contains(string(out), "typo.toml:3") || !strings.Contains(string(out), "relay_domian") {
		t.Errorf("typo error does not name file:line and key:\n%s", out)
	}
}
