package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startDovecotLMTP runs a real Dovecot LMTP server (Debian
// dovecot-lmtpd) on a unix socket, delivering to maildirs of the users
// (others are refused at RCPT, 550 5.1.1), and returns the socket and the
// mail directory.
func startDovecotLMTP(t *testing.T, users ...string) (socket, mail string) {
	t.Helper()
	bin := needProgram(t, "/usr/sbin/dovecot", "dovecot-core")
	needProgram(t, "/usr/lib/dovecot/lmtp", "dovecot-lmtpd")
	if os.Geteuid() != 0 {
		t.Skip("Dovecot needs root to start")
	}
	dir, err := os.MkdirTemp("", "mxedge-lmtp-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	mail = filepath.Join(dir, "mail")
	os.Mkdir(mail, 0o777)
	os.Chmod(mail, 0o777) // the deliveries run as nobody
	var passwd strings.Builder
	for _, u := range users {
		fmt.Fprintf(&passwd, "%s::65534:65534::%s/%s\n", u, mail, u)
	}
	os.WriteFile(filepath.Join(dir, "users"), []byte(passwd.String()), 0o644)
	socket = filepath.Join(dir, "lmtp")
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
mail_location = maildir:~/Maildir
auth_username_format = %%Ln
passdb {
  driver = passwd-file
  args = %[1]s/users
}
userdb {
  driver = passwd-file
  args = %[1]s/users
}
service lmtp {
  unix_listener %[2]s {
    mode = 0666
  }
}
protocol lmtp {
  postmaster_address = postmaster@relay.test
}
`, dir, socket)
	runDovecot(t, bin, dir, conf)
	waitListening(t, "unix", socket)
	return socket, mail
}

// maildirCopies waits until user's maildir holds n messages and returns
// them.
func maildirCopies(t *testing.T, mail, user string, n int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(mail, user, "Maildir", "new", "*"))
		if len(files) >= n {
			var out [][]byte
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, b)
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d of %d messages", user, len(files), n)
		}
		time.Sleep(20 * time.Millisecond) // polling the condition, bounded
	}
}

// Operator's story (issue 16, section 5): the mailbox store is Dovecot,
// reached over LMTP on its unix socket (routes."relay.test" =
// "lmtp:unix:/path"). Recipient verification probes it over LMTP (LHLO,
// MAIL, RCPT, RSET): a user it does not know is refused in the session;
// alice's and bob's copies land in their maildirs, body byte-exact.
func TestInteropDovecotLMTP(t *testing.T) {
	dir := t.TempDir()
	socket, mail := startDovecotLMTP(t, "alice", "bob")
	mx := freeAddr(t, "127.0.0.2")
	cfg := verifyConfig(filepath.Join(dir, "data"), mx, "lmtp:unix:"+socket, `mode = "probe"`)
	startRelay(t, dir, "-config", writeConfig(t, dir, cfg))

	if out := rcptOnly(t, mx, "nobody@relay.test"); !strings.Contains(out, "<** 550 5.1.1 <nobody@relay.test>") {
		t.Errorf("unknown user not refused in the session:\n%s", out)
	}
	body := "From: Sender <sender@src.test>\nTo: alice@relay.test\nSubject: dovecot lmtp\n\nfirst line\n.leading dot\nlast line\n"
	dataFile := filepath.Join(dir, "body.eml")
	os.WriteFile(dataFile, []byte(body), 0o600)
	out, code := swaks(t, mx, "--helo", "client.test", "--from", "sender@src.test",
		"--to", "alice@relay.test,bob@relay.test", "--data", dataFile)
	if code != 0 {
		t.Fatalf("swaks (%d):\n%s", code, out)
	}
	for _, u := range []string{"alice", "bob"} {
		copies := maildirCopies(t, mail, u, 1)
		if len(copies) != 1 || bodyHash(copies[0]) != bodyHash([]byte(body)) {
			t.Errorf("%s's maildir: %d copies, body hash %s, want %s:\n%s", u, len(copies), bodyHash(copies[0]), bodyHash([]byte(body)), copies[0])
		}
	}
}
