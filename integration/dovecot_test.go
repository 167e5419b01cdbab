package integration

import (
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
)

// cheapArgon is the key of an argon2id hash with 1 MiB, one pass, salt
// "0123456789abcdef".
func cheapArgon(pw string) string {
	return base64.RawStdEncoding.EncodeToString(argon2.IDKey([]byte(pw), []byte("0123456789abcdef"), 1, 1024, 1, 32))
}

// startDovecot runs a real Dovecot (Debian dovecot-core), its
// authentication service only, with a passwd-file holding user's
// SHA512-CRYPT hash of pw (made by openssl passwd -6), and returns its
// auth-client socket. Dovecot is started as root and drops to its own
// users (default_login_user, default_internal_user).
func startDovecot(t *testing.T, user, pw string) string {
	t.Helper()
	bin := "/usr/sbin/dovecot"
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("dovecot is not installed (.ci/run installs dovecot-core)")
		}
		t.Skip("dovecot is not installed (apt-get install dovecot-core)")
	}
	if os.Geteuid() != 0 {
		t.Skip("Dovecot needs root to start")
	}
	hash, err := exec.Command("openssl", "passwd", "-6", pw).Output()
	if err != nil {
		t.Fatal("openssl passwd -6:", err)
	}
	dir, err := os.MkdirTemp("", "mxedge-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755) // Dovecot's unprivileged processes reach base_dir
	os.WriteFile(filepath.Join(dir, "passwd"), []byte(user+":{SHA512-CRYPT}"+strings.TrimSpace(string(hash))+"\n"), 0o644)
	socket := filepath.Join(dir, "auth-client")
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols =
listen = 127.0.0.1
ssl = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_login_user = dovenull
default_internal_user = dovecot
passdb {
  driver = passwd-file
  args = %[1]s/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}
service auth {
  unix_listener %[2]s {
    mode = 0666
  }
}
`, dir, socket)
	runDovecot(t, bin, dir, conf)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(socket); err == nil {
			return socket
		}
	}
	t.Fatal("dovecot's auth socket did not appear")
	return ""
}

// runDovecot runs the dovecot binary bin in the foreground with conf
// written to dir/dovecot.conf; the test's cleanup stops it, logs its
// output when the test failed, and removes dir.
func runDovecot(t *testing.T, bin, dir, conf string) {
	t.Helper()
	os.WriteFile(filepath.Join(dir, "dovecot.conf"), []byte(conf), 0o644)
	cmd := exec.Command(bin, "-F", "-c", filepath.Join(dir, "dovecot.conf"))
	out, _ := os.Create(filepath.Join(dir, "out"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			o, _ := os.ReadFile(filepath.Join(dir, "out"))
			t.Logf("dovecot:\n%s%s", o, b)
		}
		os.RemoveAll(dir)
	})
}
