package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// mxedge runs "mxedge args..." (an admin command next to the running
// relay) and returns its stdout, stderr and exit code.
func mxedge(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	// The binary is built with -race, whose runtime waits a second at
	// exit by default.
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// mustMxedge is mxedge for a command that has to succeed.
func mustMxedge(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := mxedge(t, args...)
	if code != 0 {
		t.Fatalf("mxedge %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// listed is the part of a "queue list -json" line the tests look at.
type listed struct {
	ID    string `json:"id"`
	From  string `json:"from"`
	State string `json:"state"`
	Held  bool   `json:"held"`
	Rcpts []struct {
		Addr      string `json:"addr"`
		Status    string `json:"status"`
		LastReply string `json:"last_reply"`
	} `json:"rcpts"`
}

func listJSON(t *testing.T, args ...string) []listed {
	t.Helper()
	out := mustMxedge(t, append([]string{"queue", "list", "-json"}, args...)...)
	var msgs []listed
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m listed
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("queue list -json: line %q: %v", sc.Text(), err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// sendFrom submits one message from from to to with subject.
func sendFrom(addr, from, to, subject string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	c.CommandTimeout, c.SubmissionTimeout = 10*time.Second, 10*time.Second
	if err := c.Hello("client.src.test"); err != nil {
		return err
	}
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Subject: %s\r\n\r\nadmin test body\r\n", subject)
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// Operator's story: the backend is down and mail piles up in the queue.
// The postmaster lists it (as a table and as JSON, all of it and by
// sender), looks at one message, holds it, deletes another and reads the
// counters, all against the running relay. Once the relay is stopped the
// commands say so.
func TestAdminQueueCommands(t *testing.T) {
	dir := t.TempDir()
	backend := freeAddr(t, "127.0.0.3") // nothing listens: every attempt is deferred
	mx := freeAddr(t, "127.0.0.2")
	data := filepath.Join(dir, "data")
	cfg := writeConfig(t, dir, relayConfig(data, mx, backend))
	sock := filepath.Join(data, "control.sock")
	r := startRelay(t, dir, "-config", cfg)
	if _, err := r.out.wait("control socket at "+sock, 1, time.Second); err != nil {
		t.Fatalf("does not say where its control socket is: %v\n%s", err, r.out.String())
	}

	if err := sendFrom(mx, "sender@src.test", "alice@relay.test", "first"); err != nil {
		t.Fatal(err)
	}
	if err := sendFrom(mx, "other@src.test", "bob@relay.test", "second"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.logs.wait("msg=delivery|status=deferred", 2, 20*time.Second); err != nil {
		t.Fatal(err)
	}

	msgs := listJSON(t, "-config", cfg)
	if len(msgs) != 2 || msgs[0].From != "sender@src.test" || msgs[1].From != "other@src.test" {
		t.Fatalf("queue list -json: %+v; want the two messages, oldest first", msgs)
	}
	first, second := msgs[0].ID, msgs[1].ID
	for _, m := range msgs {
		if len(m.Rcpts) != 1 || m.Rcpts[0].Status != "pending" || !strings.Contains(m.Rcpts[0].LastReply, backend) {
			t.Errorf("message %s: recipients %+v; want one pending with the error of the failed attempt", m.ID, m.Rcpts)
		}
	}

	table := mustMxedge(t, "queue", "list", "-config", cfg)
	for _, re := range []string{
		`(?m)^QUEUE ID +STATE +SIZE +ARRIVAL +SENDER$`,
		`(?m)^` + first + `  (deferred|active) +\d+  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d  sender@src\.test$`,
		`(?m)^    alice@relay\.test  pending +\(4\.\d\.\d .*` + regexp.QuoteMeta(backend) + `.*\)$`,
		`(?m)^` + second + `  (deferred|active) +\d+  .*  other@src\.test$`,
		`(?m)^    bob@relay\.test  pending +\(4\.\d\.\d .*` + regexp.QuoteMeta(backend) + `.*\)$`,
		`(?m)^    (next attempt|delivery attempt in progress)`,
		`(?m)^-- 2 messages, \d+ KiB$`,
	} {
		if !regexp.MustCompile(re).MatchString(table) {
			t.Errorf("queue list does not match %s:\n%s", re, table)
		}
	}
	if got := listJSON(t, "-config", cfg, "-sender", "other@src.test"); len(got) != 1 || got[0].ID != second {
		t.Errorf("queue list -sender other@src.test: %+v", got)
	}

	// Hold the first message: it stays, is not retried, cannot be flushed.
	if out := mustMxedge(t, "queue", "hold", first, "-config", cfg); out != first+": held\n" {
		t.Errorf("queue hold: %q", out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for { // an attempt that was in flight when we held it ends first
		got := listJSON(t, "-config", cfg, "-state", "hold")
		if len(got) == 1 && got[0].ID == first && got[0].Held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue list -state hold: %+v; want %s", got, first)
		}
		time.Sleep(100 * time.Millisecond)
	}
	show := mustMxedge(t, "queue", "show", "-config", cfg, first)
	for _, want := range []string{"Queue ID:    " + first, "State:       hold", "Sender:      sender@src.test",
		"alice@relay.test  pending", "Received: from ", "Subject: first",
		"Listener:    mx (mx)\n", "Client:      unknown [127.0.0.", "HELO:        client.src.test\n", "TLS:         none (plaintext)\n"} {
		if !strings.Contains(show, want) {
			t.Errorf("queue show lacks %q:\n%s", want, show)
		}
	}
	if _, errOut, code := mxedge(t, "queue", "flush", first, "-config", cfg); code != 1 || !strings.Contains(errOut, "on hold") {
		t.Errorf("queue flush of a held message: exit %d, %q", code, errOut)
	}

	// Delete the second.
	if out := mustMxedge(t, "queue", "delete", second, "-config", cfg); out != second+": deleted\n" {
		t.Errorf("queue delete: %q", out)
	}
	if _, errOut, code := mxedge(t, "queue", "show", second, "-config", cfg); code != 1 || !strings.Contains(errOut, "no such message") {
		t.Errorf("queue show of a deleted message: exit %d, %q", code, errOut)
	}
	if _, err := r.logs.wait("msg=admin|action=delete|queue_id="+second, 1, time.Second); err != nil {
		t.Error(err)
	}

	var st struct {
		Messages int            `json:"messages"`
		Pending  int            `json:"pending_rcpts"`
		ByState  map[string]int `json:"by_state"`
	}
	out := mustMxedge(t, "queue", "stats", "-json", "-config", cfg)
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("queue stats -json: %v\n%s", err, out)
	}
	if st.Messages != 1 || st.Pending != 1 || st.ByState["hold"] != 1 {
		t.Errorf("queue stats: %+v; want 1 message, 1 pending recipient, 1 on hold", st)
	}

	if _, _, code := mxedge(t, "queue", "hold", "-config", cfg); code != 2 {
		t.Errorf("queue hold without an ID: exit %d, want 2 (usage)", code)
	}

	if code, err := r.stop(15 * time.Second); err != nil || code != 0 {
		t.Fatalf("SIGTERM: exit %d, %v", code, err)
	}
	out, errOut, code := mxedge(t, "queue", "list", "-config", cfg)
	want := "mxedge is not running (no control socket at " + sock + ")"
	if code != 1 || out != "" || !strings.Contains(errOut, want) {
		t.Errorf("queue list with the relay stopped: exit %d, stdout %q, stderr %q; want 1 and %q", code, out, errOut, want)
	}
}

// Operator's story: queue.db grew during an outage. Compacting refuses
// while the relay runs, works once it is stopped, and the queue is intact
// afterwards. A relay killed with SIGKILL leaves its socket behind: the
// commands say the socket is stale, and the next start replaces it.
func TestAdminCompactAndStaleSocket(t *testing.T) {
	dir := t.TempDir()
	backend := freeAddr(t, "127.0.0.3")
	mx := freeAddr(t, "127.0.0.2")
	data := filepath.Join(dir, "data")
	cfg := writeConfig(t, dir, relayConfig(data, mx, backend))
	sock := filepath.Join(data, "control.sock")

	r := startRelay(t, dir, "-config", cfg)
	if err := sendFrom(mx, "sender@src.test", "alice@relay.test", "kept"); err != nil {
		t.Fatal(err)
	}
	msgs := listJSON(t, "-config", cfg)
	if len(msgs) != 1 {
		t.Fatalf("queue: %+v", msgs)
	}
	id := msgs[0].ID
	mustMxedge(t, "queue", "hold", id, "-config", cfg)
	if _, errOut, code := mxedge(t, "queue", "compact", "-config", cfg); code != 1 || !strings.Contains(errOut, "stop mxedge first") {
		t.Errorf("queue compact while running: exit %d, %q", code, errOut)
	}

	if code, err := r.stop(15 * time.Second); err != nil || code != 0 {
		t.Fatalf("SIGTERM: exit %d, %v", code, err)
	}
	out := mustMxedge(t, "queue", "compact", "-config", cfg)
	if !regexp.MustCompile(`^compacted .*queue\.db: .* -> .* \(\d+ -> \d+ bytes\)\n$`).MatchString(out) {
		t.Errorf("queue compact: %q", out)
	}

	r = startRelay(t, dir, "-config", cfg)
	if msgs := listJSON(t, "-config", cfg); len(msgs) != 1 || msgs[0].ID != id || !msgs[0].Held {
		t.Fatalf("queue after compaction and restart: %+v; want %s, held", msgs, id)
	}
	r.kill()
	_, errOut, code := mxedge(t, "queue", "list", "-config", cfg)
	if want := "mxedge is not running (stale control socket at " + sock + ")"; code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("queue list after SIGKILL: exit %d, %q; want 1 and %q", code, errOut, want)
	}

	startRelay(t, dir, "-config", cfg)
	if msgs := listJSON(t, "-config", cfg); len(msgs) != 1 || msgs[0].ID != id {
		t.Errorf("queue after restart over a stale socket: %+v", msgs)
	}
}
