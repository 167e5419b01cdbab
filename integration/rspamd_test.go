package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-milter"

	"github.com/mxedge/mxedge/internal/milterclient"
)

// gtube is the spam test pattern every filter refuses.
const gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

// startRspamd runs a real rspamd (Debian's) with a config directory of
// its own: only the proxy worker, in milter mode scanning itself
// (self_scan: no normal worker), on
// addr; no redis; DNS pointed at a closed port (offline); the extended
// spam headers on, for local clients too (X-Spamd-Result, X-Rspamd-Server, X-Rspamd-Queue-Id).
// It returns once the worker answers a milter negotiation (rspamd takes
// tens of seconds to load its rules offline) and a stop function.
func startRspamd(t *testing.T, addr string) (stop func()) {
	t.Helper()
	bin, err := exec.LookPath("rspamd")
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("rspamd is not installed (apt-get install rspamd; .ci/run installs it)")
		}
		t.Fatal("rspamd is not installed; .ci/run installs it")
	}
	dir := t.TempDir()
	local := filepath.Join(dir, "local.d")
	os.MkdirAll(local, 0o755)
	os.WriteFile(filepath.Join(local, "milter_headers.conf"), []byte("extended_spam_headers = true;\nskip_local = false;\nskip_authenticated = false;\n"), 0o644)
	conf := fmt.Sprintf(`.include "/etc/rspamd/common.conf"
options {
    pidfile = "%[1]s/rspamd.pid";
    .include "/etc/rspamd/options.inc"
    dns { nameserver = ["127.0.0.1:9"]; timeout = 1s; retransmits = 1; }
}
logging { type = "file"; filename = "%[1]s/rspamd.log"; level = "notice"; }
worker "rspamd_proxy" {
    bind_socket = "%[2]s";
    milter = yes;
    timeout = 120s;
    upstream "local" { default = yes; self_scan = yes; }
    count = 1;
    reject_message = "Spam message rejected";
}
`, dir, addr)
	cf := filepath.Join(dir, "rspamd.conf")
	os.WriteFile(cf, []byte(conf), 0o644)
	cmd := exec.Command(bin, "-f", "-i", "-u", "root", "-g", "root", "-c", cf, "--var=DBDIR="+dir,
		"--var=RUNDIR="+dir, "--var=LOGDIR="+dir, "--var=LOCAL_CONFDIR="+dir)
	// Its workers are children of its own process group, killed with it;
	// its output goes to a file (a pipe would be held open by them).
	outFile, err := os.Create(filepath.Join(dir, "rspamd.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer outFile.Close()
	cmd.Stdout, cmd.Stderr = outFile, outFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		})
	}
	t.Cleanup(stop)
	output := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "rspamd.out"))
		l, _ := os.ReadFile(filepath.Join(dir, "rspamd.log"))
		return string(b) + "\n" + string(l)
	}
	// Ready when the proxy worker negotiates; until its socket is bound
	// the connection is refused, then the negotiation waits for the
	// worker. Bounded by the deadline, not slept on.
	deadline := time.Now().Add(120 * time.Second)
	for {
		s, _, err := milterclient.Open(context.Background(), milterclient.Config{Name: "probe", Network: "tcp",
			Address: addr, CommandTimeout: 90 * time.Second, ConnectTimeout: time.Second}, milter.OptAddHeader,
			milterclient.Envelope{ClientIP: "127.0.0.1", From: "probe@src.test", Rcpts: []string{"probe@relay.test"}})
		if err == nil {
			s.Close()
			return stop
		}
		select {
		case <-done:
			t.Fatalf("rspamd exited:\n%s", output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("rspamd not ready after 120s: %v\n%s", err, output())
		}
		// Connection refused until the socket is bound: wait for the
		// next attempt on the clock of a blocking call, not a sleep.
		select {
		case <-done:
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// The operator's story of rspamd in front of the backend, in the session:
// the GTUBE message is refused with rspamd's 5xx and nothing is queued; a
// clean message reaches the backend with rspamd's headers; with rspamd
// stopped the sender gets 451 4.7.1 and nothing is queued (tempfail,
// the default action).
func TestRspamdMilterBeforeQueue(t *testing.T) {
	rsp := freeAddr(t, "127.0.0.8")
	stop := startRspamd(t, rsp)
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	cfg := relayConfig(filepath.Join(dir, "data"), mx, be.Addr()) + fmt.Sprintf(`
[[milter]]
name = "rspamd"
address = "inet:%s"
kinds = ["mx"]
`, rsp)
	cfgPath := writeConfig(t, dir, cfg)
	r := startRelay(t, dir, "-config", cfgPath)
	queued := func() string {
		return strings.TrimSpace(mustMxedge(t, "queue", "list", "-json", "-config", cfgPath))
	}

	out, _ := swaks(t, mx, "--helo", "client.test", "--from", "spammer@src.test", "--to", "alice@relay.test",
		"--header", "Subject: test", "--body", "This is spam.\n"+gtube+"\n")
	if !regexp.MustCompile(`<\*\* +5\d\d 5\.7\.1 `).MatchString(out) {
		t.Errorf("GTUBE not refused with a 5xx after DATA:\n%s", out)
	}
	if q := queued(); q != "" {
		t.Errorf("GTUBE queued:\n%s", q)
	}
	if _, err := r.logs.wait(`msg="message rejected" listener=mx stage=milter`, 1, 10*time.Second); err != nil {
		t.Errorf("no refusal log line: %v", err)
	}

	out, code := swaks(t, mx, "--helo", "client.test", "--from", "friend@src.test", "--to", "alice@relay.test",
		"--header", "Subject: lunch", "--body", "See you at noon?\n")
	if code != 0 || !strings.Contains(out, "250 2.0.0 Ok: queued as") {
		t.Fatalf("clean message not accepted (%d):\n%s", code, out)
	}
	msgs, err := be.WaitMessages(1, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	raw := string(msgs[0].Raw)
	for _, h := range []string{"\r\nX-Spamd-Result: ", "\r\nX-Rspamd-Server: ", "\r\nX-Rspamd-Queue-Id: "} {
		if !strings.Contains(raw, h) {
			t.Errorf("backend's message lacks %q:\n%s", strings.TrimSpace(h), raw)
		}
	}
	if !strings.HasPrefix(raw, "Received: from client.test") || !strings.Contains(raw, "See you at noon?") {
		t.Errorf("backend's message:\n%s", raw)
	}

	stop()
	out, _ = swaks(t, mx, "--helo", "client.test", "--from", "friend@src.test", "--to", "alice@relay.test",
		"--header", "Subject: again", "--body", "rspamd is down\n")
	if !strings.Contains(out, "<** 451 4.7.1 ") {
		t.Errorf("rspamd stopped: not 451 4.7.1:\n%s", out)
	}
	if q := queued(); q != "" {
		t.Errorf("queued while rspamd is down:\n%s", q)
	}
}
