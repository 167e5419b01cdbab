package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// mxedgeStdin is mxedge with stdin.
func mxedgeStdin(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	cmd.Stdin = strings.NewReader(stdin)
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

// Operator's story, as with postsuper: the backend is down, three
// messages wait. The postmaster holds ALL of them, releases two whose IDs
// come on stdin (one mistyped: that one fails, the others are done), and
// deletes two given on the command line.
func TestQueueActionsTakeSeveralIDs(t *testing.T) {
	dir := t.TempDir()
	backend := freeAddr(t, "127.0.0.3") // nothing listens: every attempt is deferred
	mx := freeAddr(t, "127.0.0.2")
	cfg := writeConfig(t, dir, relayConfig(filepath.Join(dir, "data"), mx, backend))
	r := startRelay(t, dir, "-config", cfg)
	for i := range 3 {
		if err := sendFrom(mx, "sender@src.test", "alice@relay.test", fmt.Sprint("m", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.logs.wait("msg=delivery|status=deferred", 3, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range listJSON(t, "-config", cfg) {
		ids = append(ids, m.ID)
	}
	if len(ids) != 3 {
		t.Fatalf("queued: %v", ids)
	}

	out := mustMxedge(t, "queue", "hold", "ALL", "-config", cfg)
	var want []string
	for _, id := range ids {
		want = append(want, id+": held")
	}
	if got := strings.Split(strings.TrimSpace(out), "\n"); !slices.Equal(got, want) {
		t.Errorf("queue hold ALL:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
	if held := listJSON(t, "-config", cfg, "-state", "hold"); len(held) != 3 {
		t.Errorf("held after hold ALL: %d of 3", len(held))
	}

	out, errOut, code := mxedgeStdin(t, ids[0]+"\n"+"0NOSUCHID0000000\n"+ids[1]+"\n", "queue", "release", "-", "-config", cfg)
	if code != 1 || out != ids[0]+": released\n"+ids[1]+": released\n" || !strings.Contains(errOut, "0NOSUCHID0000000: ") {
		t.Errorf("queue release - : exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if held := listJSON(t, "-config", cfg, "-state", "hold"); len(held) != 1 || held[0].ID != ids[2] {
		t.Errorf("held after releasing two: %+v, want only %s", held, ids[2])
	}

	// postcat: the message as it will be delivered.
	body := mustMxedge(t, "queue", "show", "-body", ids[1], "-config", cfg)
	if !strings.HasPrefix(body, "Received: from client.src.test") || !strings.Contains(body, "Subject: m1\r\n\r\nadmin test body\r\n") {
		t.Errorf("queue show -body:\n%q", body)
	}

	out = mustMxedge(t, "queue", "delete", ids[0], ids[2], "-config", cfg)
	if out != ids[0]+": deleted\n"+ids[2]+": deleted\n" {
		t.Errorf("queue delete two IDs: %q", out)
	}
	if left := listJSON(t, "-config", cfg); len(left) != 1 || left[0].ID != ids[1] {
		t.Errorf("left after deleting two: %+v, want only %s", left, ids[1])
	}
}
