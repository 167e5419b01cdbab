package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxedge/mxedge/internal/fileowner"
)

// "mxedge dkim keygen" run by root (as deploy.md's admin does) leaves a
// key the relay's user can read: the new <data_dir>/dkim and the key take
// the data directory's owner.
func TestDKIMKeygenOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (files of another user)")
	}
	data := t.TempDir()
	if err := os.Chown(data, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "mxedge.toml")
	os.WriteFile(cfg, []byte("hostname = \"mx1.example.org\"\ndata_dir = \""+data+"\"\nrelay_domains = []\n"), 0o600)
	out, errOut, code := runCmd(t, "dkim", "keygen", "-domain", "example.org", "-selector", "ed1", "-type", "ed25519", "-config", cfg)
	key := filepath.Join(data, "dkim", "example.org.ed1.key")
	if code != 0 || !strings.Contains(out, "key written to "+key) {
		t.Fatalf("keygen: exit %d\n%s%s", code, out, errOut)
	}
	for _, p := range []string{filepath.Dir(key), key} {
		if uid, gid, err := fileowner.Owner(p); err != nil || uid != 65534 || gid != 65534 {
			t.Errorf("%s owned by %d:%d (%v), want the data directory's 65534:65534", p, uid, gid, err)
		}
	}
}
