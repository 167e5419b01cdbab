package integration

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// eximBinary is where .ci/run unpacks Debian's exim4-daemon-light
// (apt-get download, dpkg -x: the package conflicts with postfix).
const eximBinary = "/opt/mxedge-exim/usr/sbin/exim4"

// Operator's story: Exim 4.96 is the sending MTA, with PIPELINING and
// CHUNKING: a 5 MiB message goes to the relay with BDAT and reaches the
// backend byte-exact (body compared by hash).
func TestInteropEximClientChunking(t *testing.T) {
	exim := needProgram(t, eximBinary, "exim4-daemon-light (unpacked by .ci/run)")
	if os.Geteuid() != 0 {
		t.Skip("Exim's spool needs root")
	}
	if _, err := user.Lookup("Debian-exim"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("user Debian-exim missing (.ci/run creates it)")
		}
		t.Skip("user Debian-exim missing (useradd --system Debian-exim)")
	}
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	startRelay(t, dir, "-config", writeConfig(t, dir, relayConfig(filepath.Join(dir, "data"), mx, be.Addr())))

	edir, err := os.MkdirTemp("", "mxedge-exim-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(edir) })
	os.Chmod(edir, 0o755)
	for _, d := range []string{"spool", "log"} {
		os.Mkdir(filepath.Join(edir, d), 0o750)
		if out, err := exec.Command("chown", "Debian-exim", filepath.Join(edir, d)).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v %s", err, out)
		}
	}
	host, port, _ := strings.Cut(mx, ":")
	conf := fmt.Sprintf(`exim_path = %[1]s
primary_hostname = exim.src.test
spool_directory = %[2]s/spool
log_file_path = %[2]s/log/%%slog
never_users =
begin routers
to_mxedge:
  driver = manualroute
  route_list = * %[3]s byname
  transport = remote
  self = send
begin transports
remote:
  driver = smtp
  port = %[4]s
  hosts_try_chunking = *
  hosts_try_fastopen =
begin retry
* * F,1m,1m
`, exim, edir, host, port)
	cfg := filepath.Join(edir, "exim.conf")
	os.WriteFile(cfg, []byte(conf), 0o644)

	var body strings.Builder
	body.WriteString("From: <list@src.test>\nTo: <alice@relay.test>\nSubject: five MiB by BDAT\n\n")
	for i := 0; body.Len() < 5<<20; i++ {
		fmt.Fprintf(&body, "line %07d of the big message, with a dot below now and then\n", i)
		if i%1000 == 0 {
			body.WriteString(".\n")
		}
	}
	cmd := exec.Command(exim, "-C", cfg, "-odf", "-oi", "-f", "list@src.test", "alice@relay.test")
	cmd.Stdin = strings.NewReader(body.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("exim: %v\n%s", err, out)
	}
	msgs, err := be.WaitMessages(1, 60*time.Second)
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(edir, "log", "mainlog"))
		t.Fatalf("%v\nexim log:\n%s", err, log)
	}
	if bodyHash(msgs[0].Body()) != bodyHash([]byte(body.String())) {
		t.Errorf("body hash at the backend differs (%d bytes arrived)", len(msgs[0].Body()))
	}
	// Exim's delivery line: K = CHUNKING (BDAT) was used.
	log, _ := os.ReadFile(filepath.Join(edir, "log", "mainlog"))
	if !strings.Contains(string(log), "=> alice@relay.test R=to_mxedge T=remote H="+host) ||
		!strings.Contains(string(log), " K C=\"250 2.0.0 Ok: queued as ") {
		t.Errorf("Exim did not deliver with CHUNKING:\n%s", log)
	}
}

// startEximBackend runs Exim as a mailbox backend on addr that knows the
// local parts users of relay.test (others: 550 at RCPT), with Exim's
// default smtp_accept_max_nonmail (10, RSET and EHLO count), and returns
// its log directory.
func startEximBackend(t *testing.T, addr string, users ...string) string {
	t.Helper()
	exim := needProgram(t, eximBinary, "exim4-daemon-light (unpacked by .ci/run)")
	if os.Geteuid() != 0 {
		t.Skip("Exim's spool needs root")
	}
	if _, err := user.Lookup("Debian-exim"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("user Debian-exim missing (.ci/run creates it)")
		}
		t.Skip("user Debian-exim missing (useradd --system Debian-exim)")
	}
	edir, err := os.MkdirTemp("", "mxedge-exim-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(edir) })
	os.Chmod(edir, 0o755)
	for _, d := range []string{"spool", "log"} {
		os.Mkdir(filepath.Join(edir, d), 0o750)
		if out, err := exec.Command("chown", "Debian-exim", filepath.Join(edir, d)).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v %s", err, out)
		}
	}
	var list strings.Builder
	for _, u := range users {
		list.WriteString(u + ": x\n")
	}
	os.WriteFile(filepath.Join(edir, "users"), []byte(list.String()), 0o644)
	host, port, _ := strings.Cut(addr, ":")
	conf := fmt.Sprintf(`exim_path = %[1]s
primary_hostname = exim-backend.relay.test
spool_directory = %[2]s/spool
log_file_path = %[2]s/log/%%slog
local_interfaces = <; %[3]s.%[4]s
never_users =
tls_advertise_hosts =
log_selector = +smtp_connection
domainlist local_domains = relay.test
acl_smtp_rcpt = acl_rcpt
begin acl
acl_rcpt:
  accept domains = +local_domains
         local_parts = lsearch;%[2]s/users
  deny message = User unknown
begin routers
users:
  driver = accept
  domains = +local_domains
  transport = null
begin transports
null:
  driver = appendfile
  file = /dev/null
  user = nobody
`, exim, edir, host, port)
	cfg := filepath.Join(edir, "exim.conf")
	os.WriteFile(cfg, []byte(conf), 0o644)
	cmd := exec.Command(exim, "-C", cfg, "-bdf", "-oX", port)
	out, _ := os.Create(filepath.Join(edir, "out"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(edir, "log", "mainlog"))
			t.Logf("exim log:\n%s", log)
		}
	})
	waitListening(t, "tcp", addr)
	return filepath.Join(edir, "log")
}

// Issue 16, section 6: Exim as the backend drops a connection after 10
// non-mail commands (RSET and EHLO count: 554 Too many nonmail commands).
// The relay's verification probes reuse connections, RSET without a new
// EHLO, at most 5 probes each: 12 recipients and the domain's catch-all
// test are verified in one session without a single drop, over as few
// connections as that cap allows.
func TestInteropEximBackendProbes(t *testing.T) {
	var users, rcpts []string
	for i := 1; i <= 12; i++ {
		users = append(users, fmt.Sprintf("u%02d", i))
		rcpts = append(rcpts, fmt.Sprintf("u%02d@relay.test", i))
	}
	beAddr := freeAddr(t, "127.0.0.12")
	logs := startEximBackend(t, beAddr, users...)
	dir := t.TempDir()
	mx := freeAddr(t, "127.0.0.2")
	// The catch-all test on, as by default (verifyConfig turns it off).
	cfg := verifyConfig(filepath.Join(dir, "data"), mx, beAddr, "mode = \"probe\"\ncatchall_interval = \"1d\"")
	r := startRelay(t, dir, "-config", writeConfig(t, dir, cfg))
	out, code := swaks(t, mx, "--from", "sender@src.test", "--to", strings.Join(rcpts, ","), "--quit-after", "RCPT")
	if code != 0 || strings.Count(out, "<-  250 2.1.5") != 12 {
		t.Errorf("swaks (%d): want 12 recipients accepted:\n%s", code, out)
	}
	// Every probe is logged before its RCPT is answered, the catch-all
	// test (run after the first probe, on its connection) before the
	// first RCPT is: 13 lines, of which the ones with reused=false opened
	// a connection.
	probes, err := r.logs.wait(`msg="verify probe"`, 13, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	fresh := 0
	for _, l := range probes {
		if strings.Contains(l, "reused=false") {
			fresh++
		}
	}
	log, _ := os.ReadFile(filepath.Join(logs, "mainlog"))
	if strings.Contains(string(log), "nonmail") {
		t.Errorf("Exim dropped a probe connection:\n%s", log)
	}
	if !strings.Contains(string(log), "rejected RCPT <mxedge-nx-") {
		t.Errorf("the catch-all test did not reach Exim:\n%s", log)
	}
	// 13 probes in lockstep (swaks waits for each RCPT's answer; the
	// catch-all test runs before the first answer), at most 5 per
	// connection: 5 + 5 + 3 on 3 connections, each taken from the cache
	// by the next probe well within its idle time (2 s). Exim logs one
	// more, the readiness check of startEximBackend: 4 connections. Exim
	// also logs an end line with the same "SMTP connection from" prefix
	// ("lost D=0s" for the check, "closed by QUIT" for each connection
	// that reached the cap; the third is still idle in the relay's cache
	// here): counting those made 7 of these 4 connections. A connection
	// begins with "(TCP/IP connection count = N)".
	n := strings.Count(string(log), "(TCP/IP connection count = ")
	if n != 4 || fresh != 3 {
		t.Errorf("Exim saw %d connections, %d probes opened one; want 4 (the readiness check and 3 for 13 probes, at most 5 each) and 3:\n%s\nrelay probes:\n%s",
			n, fresh, log, strings.Join(probes, "\n"))
	}
}
