package fileowner

import (
	"os"
	"path/filepath"
	"testing"
)

// Run as root, a new file takes the owner of its model (here the
// directory the daemon's user owns); run as another user, nothing
// changes.
func TestMatch(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "key")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	owner := func() (uint32, uint32) {
		uid, gid, err := Owner(file)
		if err != nil {
			t.Fatal(err)
		}
		return uid, gid
	}
	if os.Geteuid() != 0 {
		uid, _ := owner()
		if err := Match(file, dir); err != nil {
			t.Fatal(err)
		}
		if got, _ := owner(); got != uid {
			t.Errorf("owner changed to %d without root", got)
		}
		return
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := Match(file, dir); err != nil {
		t.Fatal(err)
	}
	if uid, gid := owner(); uid != 65534 || gid != 65534 {
		t.Errorf("owner %d:%d, want the directory's 65534:65534", uid, gid)
	}
	if err := Match(file, filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing model is no error")
	}
}
