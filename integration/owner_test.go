package integration

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mxedge/mxedge/internal/fileowner"
)

// The postmaster stops the relay (User=mxedge) and, as root, compacts,
// repairs and recovers its queue: every file under the queue directory
// still belongs to the relay's user afterwards, so that the relay starts
// again (a root-owned queue.db is "permission denied" at its next start).
func TestOfflineQueueCommandsAsRootKeepTheOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (files of another user)")
	}
	const nobody = 65534
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	mx := freeAddr(t, "127.0.0.2")
	cfg := writeConfig(t, dir, relayConfig(data, mx, "127.0.0.3:9"))
	r := startRelay(t, dir, "-config", cfg)
	out, code := swaks(t, mx, "--helo", "client.test", "--from", "sender@src.test", "--to", "alice@relay.test")
	if code != 0 {
		t.Fatalf("swaks failed (%d):\n%s", code, out)
	}
	if _, err := r.logs.wait("msg=delivery|status=deferred", 1, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if code, err := r.stop(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("stop: %d %v", code, err)
	}
	// As deployed: the data directory and everything in it the relay's
	// user's; the directories above it open to that user.
	if err := filepath.WalkDir(data, func(p string, _ fs.DirEntry, err error) error {
		if err == nil {
			err = os.Lchown(p, nobody, nobody)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for p := dir; p != filepath.Dir(p) && p != os.TempDir(); p = filepath.Dir(p) {
		os.Chmod(p, 0o755)
	}
	for _, args := range [][]string{{"queue", "compact"}, {"queue", "check", "-repair"}, {"queue", "recover"}} {
		mustMxedge(t, append(args, "-config", cfg)...)
	}
	n := 0
	if err := filepath.WalkDir(filepath.Join(data, "queue"), func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n++
		if uid, gid, err := fileowner.Owner(p); err != nil || uid != nobody || gid != nobody {
			t.Errorf("%s owned by %d:%d (%v), want the data directory's %d:%d", p, uid, gid, err, nobody, nobody)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n < 3 {
		t.Errorf("%d files under the queue directory, want queue.db, spool/ and the message", n)
	}
}
