package auth

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startDovecot runs a real Dovecot (Debian dovecot-core) with only its
// authentication service: a passwd-file with carol@example.org's
// SHA512-CRYPT hash of "dove-pw", the auth-client socket in a temporary
// directory. It needs root (Dovecot drops privileges to its users).
func startDovecot(t *testing.T) (socket string) {
	t.Helper()
	bin, err := exec.LookPath("dovecot")
	if err != nil {
		bin = "/usr/sbin/dovecot"
		if _, err := os.Stat(bin); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("dovecot is not installed (.ci/run installs dovecot-core)")
			}
			t.Skip("dovecot is not installed (apt-get install dovecot-core)")
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("Dovecot needs root to start")
	}
	dir, err := os.MkdirTemp("", "mxedge-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755) // Dovecot's unprivileged processes reach base_dir
	hash := "$6$abcdefgh$" + strings.TrimPrefix(sha512Crypt([]byte("dove-pw"), []byte("abcdefgh"), 5000, false), "$6$abcdefgh$")
	os.WriteFile(filepath.Join(dir, "passwd"), []byte("carol@example.org:{SHA512-CRYPT}"+hash+"\n"), 0o644)
	socket = filepath.Join(dir, "auth-client")
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols =
listen = 127.0.0.1
ssl = no
auth_mechanisms = plain login
auth_failure_delay = 0
disable_plaintext_auth = yes
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
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(socket); err == nil {
			return socket
		}
	}
	t.Fatal("dovecot's auth socket did not appear")
	return ""
}

// The Dovecot backend against a real Dovecot: the right password, a wrong
// one, an unknown user, and Dovecot gone (temporary).
func TestDovecot(t *testing.T) {
	d := &Dovecot{Socket: startDovecot(t)}
	ctx := context.Background()
	for _, tc := range []struct {
		user, pw string
		ok       bool
	}{
		{"carol@example.org", "dove-pw", true},
		{"carol@example.org", "wrong", false},
		{"nobody@example.org", "dove-pw", false},
	} {
		login, ok, err := d.Authenticate(ctx, Credentials{User: tc.user, Password: tc.pw})
		if err != nil || ok != tc.ok || (ok && login != "carol@example.org") {
			t.Errorf("%s/%s: %q %v %v", tc.user, tc.pw, login, ok, err)
		}
	}
	if s, _ := d.Senders("carol@example.org"); !s.Owns("carol@example.org") || s.Owns("x@example.org") {
		t.Error("default sender rule of a Dovecot login")
	}
	gone := &Dovecot{Socket: filepath.Join(t.TempDir(), "nothing")}
	if _, _, err := gone.Authenticate(ctx, Credentials{User: "carol@example.org", Password: "dove-pw"}); !IsTemporary(err) {
		t.Errorf("Dovecot down: %v", err)
	}
}

func TestLoginMap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logins")
	os.WriteFile(path, []byte("# logins\ncarol@example.org: carol@example.org, c.smith@example.org\nshop: *@shop.example\n"), 0o600)
	lm, err := OpenLoginMap(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := lm.Senders("Carol@example.org"); !s.Owns("c.smith@example.org") || s.Owns("x@example.org") {
		t.Error("carol")
	}
	if s, _ := lm.Senders("shop"); !s.Owns("orders@shop.example") {
		t.Error("shop")
	}
	if s, _ := lm.Senders("dave@example.org"); !s.Owns("dave@example.org") {
		t.Error("unlisted login owns itself")
	}
	if _, err := parseLoginMap("logins", []byte("ok: a@b.example\nbroken line\nx: a@@b\n")); err == nil ||
		!strings.Contains(err.Error(), "logins:2:") || !strings.Contains(err.Error(), "logins:3:") {
		t.Errorf("errors: %v", err)
	}
}
