package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxedge/mxedge/queue"
)

// writeQueueConfig writes a configuration whose data directory is dir.
func writeQueueConfig(t *testing.T, dir string) string {
	t.Helper()
	// A port held by the test: serve must fail before binding it anyway.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := filepath.Join(t.TempDir(), "mxedge.toml")
	cfg := `hostname = "relay.example.test"
data_dir = "` + dir + `"
relay_domains = ["example.test"]
[routes]
"example.test" = "127.0.0.1:1"
[[listener]]
name = "mx"
kind = "mx"
address = "` + ln.Addr().String() + `"
`
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A damaged index: serve prints one line naming the command and exits 1
// (no stack, no crash loop without a message); queue check reports it and
// exits 1; check -repair rebuilds it and the spooled message is queued.
func TestServeDamagedIndexOneLine(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	q, err := queue.Open(filepath.Join(dir, "queue"), queue.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), InlineMax: 16})
	if err != nil {
		t.Fatal(err)
	}
	in, _ := q.NewMessage(queue.Envelope{From: "s@src.test", Rcpts: []queue.Rcpt{{Addr: "a@example.test"}}})
	io.WriteString(in, "Subject: spooled\r\n\r\n"+strings.Repeat("x", 100)+"\r\n")
	if err := in.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	id := in.ID()
	q.Close()
	db := filepath.Join(dir, "queue", "queue.db")
	f, _ := os.OpenFile(db, os.O_RDWR, 0)
	f.WriteAt(bytes.Repeat([]byte{0xa5}, 8192), 0) // both meta pages
	f.Close()
	cfg := writeQueueConfig(t, dir)

	var out, errb bytes.Buffer
	rc := run([]string{"serve", "-config", cfg}, &out, &errb)
	lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
	last := lines[len(lines)-1]
	if rc != 1 || !strings.HasPrefix(last, "mxedge: queue index damaged: run `mxedge queue check`") || strings.Contains(errb.String(), "goroutine") {
		t.Fatalf("serve: rc %d, stderr:\n%s", rc, errb.String())
	}
	out.Reset()
	if rc := run([]string{"queue", "check", "-config", cfg}, &out, &errb); rc != 1 || !strings.Contains(out.String(), "index") {
		t.Fatalf("check: rc %d\n%s", rc, out.String())
	}
	out.Reset()
	if rc := run([]string{"queue", "check", "-repair", "-config", cfg}, &out, &errb); rc != 0 || !strings.Contains(out.String(), "index rebuilt") {
		t.Fatalf("check -repair: rc %d\n%s", rc, out.String())
	}
	q, err = queue.Open(filepath.Join(dir, "queue"), queue.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if _, err := q.Get(id); err != nil {
		t.Fatalf("spooled message after repair: %v", err)
	}
}
