// Package integration holds mxedge's end-to-end scenario tests. Each test
// runs the real mxedge binary (built once in TestMain) with a config file,
// talks to it as a client would (swaks, or a raw SMTP client where swaks
// cannot say it), and fakes only the far end of the network: SMTP servers
// on 127.0.0.x addresses (internal/smtptest).
package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mxedge-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "mxedge")
	build := exec.Command("go", "build", "-race", "-o", binary, "../cmd/mxedge")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building mxedge:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr returns "ip:port" with a port that was free a moment ago.
func freeAddr(t *testing.T, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// relayConfig is a minimal config: MX listener on mx, relay.test routed to
// backend, fast retries, recipient verification off: these scenarios tell
// the queue's story (mail accepted while the backend is down, a refusal
// after acceptance), which verification, on by default, would answer in
// the session. verify_test.go has the verification scenarios.
func relayConfig(dataDir, mx, backend string) string {
	return verifyConfig(dataDir, mx, backend, `mode = "off"`)
}

// withDNS points the [dns] of a relayConfig/verifyConfig at addr.
func withDNS(cfg, addr string) string {
	return strings.Replace(cfg, `servers = ["127.0.0.1:9"]`, fmt.Sprintf("servers = [%q]", addr), 1)
}

// relay is one running mxedge process.
type relay struct {
	t    *testing.T
	cmd  *exec.Cmd
	logs *lineLog
	out  *lineLog
	done chan struct{}
}

// startRelay runs "mxedge serve" with args in dir and waits until every
// listener is up (its "listener on" line), so no sleep is needed.
func startRelay(t *testing.T, dir string, args ...string) *relay {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"serve"}, args...)...)
	cmd.Dir = dir
	return startRelayCmd(t, cmd)
}

// startRelayCmd is startRelay for a command of the test's own (the
// binary run through a shell that sets limits first).
func startRelayCmd(t *testing.T, cmd *exec.Cmd) *relay {
	t.Helper()
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	r := &relay{t: t, cmd: cmd, logs: newLineLog(), out: newLineLog(), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pipes sync.WaitGroup
	pipes.Add(2)
	go func() { defer pipes.Done(); r.out.consume(stdout) }()
	go func() { defer pipes.Done(); r.logs.consume(stderr) }()
	go func() { pipes.Wait(); cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		<-r.done
		if t.Failed() {
			t.Logf("relay log:\n%s", r.logs.String())
		}
	})
	if _, err := r.out.wait("listener on", 1, 30*time.Second); err != nil {
		t.Fatalf("relay did not start: %v\nstdout:\n%s\nstderr:\n%s", err, r.out.String(), r.logs.String())
	}
	return r
}

// kill sends SIGKILL and waits for the process to be gone.
func (r *relay) kill() {
	r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
}

// stop sends SIGTERM and returns the exit code once the process is gone.
func (r *relay) stop(timeout time.Duration) (int, error) {
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
		return r.cmd.ProcessState.ExitCode(), nil
	case <-time.After(timeout):
		return -1, fmt.Errorf("relay still running %v after SIGTERM", timeout)
	}
}

// lineLog collects a process's output lines and lets tests await lines.
type lineLog struct {
	mu    sync.Mutex
	lines []string
	more  chan struct{} // closed and replaced on every new line
}

func newLineLog() *lineLog { return &lineLog{more: make(chan struct{})} }

func (l *lineLog) consume(rd io.Reader) {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l.mu.Lock()
		l.lines = append(l.lines, sc.Text())
		close(l.more)
		l.more = make(chan struct{})
		l.mu.Unlock()
	}
}

// wait returns once n lines containing every one of the substrings have
// been seen (substrings are separated by "|").
func (l *lineLog) wait(match string, n int, timeout time.Duration) ([]string, error) {
	deadline := time.After(timeout)
	parts := strings.Split(match, "|")
	for {
		l.mu.Lock()
		var hits []string
		for _, line := range l.lines {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(line, p)
			}
			if ok {
				hits = append(hits, line)
			}
		}
		more := l.more
		l.mu.Unlock()
		if len(hits) >= n {
			return hits, nil
		}
		select {
		case <-more:
		case <-deadline:
			return hits, fmt.Errorf("%d of %d lines matching %q within %v", len(hits), n, match, timeout)
		}
	}
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// queuedID is the queue ID of swaks's "250 2.0.0 Ok: queued as <ID>".
func queuedID(t *testing.T, swaksOut string) string {
	t.Helper()
	m := regexp.MustCompile(`<-\s+250 2\.0\.0 Ok: queued as ([0-9A-Z]{16})`).FindStringSubmatch(swaksOut)
	if m == nil {
		t.Fatalf("no queue ID in the 250 reply:\n%s", swaksOut)
	}
	return m[1]
}

// swaks runs swaks against addr and returns its combined output and exit
// code. swaks must be installed (.ci/run installs it).
func swaks(t *testing.T, addr string, args ...string) (string, int) {
	t.Helper()
	path, err := exec.LookPath("swaks")
	if err != nil {
		t.Fatal("swaks is not installed (apt-get install swaks); .ci/run installs it")
	}
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(path, append([]string{"--server", host, "--port", port, "--timeout", "30"}, args...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}
