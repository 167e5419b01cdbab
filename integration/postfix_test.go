package integration

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// postfixMaster is a minimal master.cf for a private instance: smtpd on
// the test's address, the queue manager and the delivery agents, nothing
// chrooted.
const postfixMaster = `%s inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`

// postfix is a private Postfix instance (its own config_directory,
// queue_directory and log file) that delivers relay.test to one maildir.
type postfix struct {
	dir, addr string
}

// startPostfix runs a private Postfix on addr ("127.0.0.x:port") with the
// extra main.cf lines; it is stopped when the test ends. Postfix must be
// installed (.ci/run); the test must run as root (Postfix's master).
func startPostfix(t *testing.T, addr, extra string) *postfix {
	t.Helper()
	bin := needProgram(t, "/usr/sbin/postfix", "postfix")
	if os.Geteuid() != 0 {
		t.Skip("a private Postfix instance needs root")
	}
	dir, err := os.MkdirTemp("", "mxedge-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	for _, d := range []string{"etc", "spool", "data", "mail"} {
		os.Mkdir(filepath.Join(dir, d), 0o755)
	}
	for _, c := range [][]string{{"postfix", filepath.Join(dir, "data")}, {"nobody:nogroup", filepath.Join(dir, "mail")}} {
		if out, err := exec.Command("chown", c...).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v %s", err, out)
		}
	}
	main := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/spool
data_directory = %[1]s/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = backend.relay.test
mydestination =
relay_domains =
virtual_mailbox_domains = relay.test
virtual_mailbox_base = %[1]s/mail
virtual_mailbox_maps = static:all/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
maillog_file_prefixes = %[1]s
maillog_file = %[1]s/maillog
# No DNS in tests: reports to remote senders stay in the queue.
disable_dns_lookups = yes
default_transport = retry:no delivery in tests
%[2]s
`, dir, extra)
	os.WriteFile(filepath.Join(dir, "etc", "main.cf"), []byte(main), 0o644)
	os.WriteFile(filepath.Join(dir, "etc", "master.cf"), []byte(fmt.Sprintf(postfixMaster, addr)), 0o644)
	pf := &postfix{dir: dir, addr: addr}
	if out, err := exec.Command(bin, "-c", filepath.Join(dir, "etc"), "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
		t.Fatalf("postfix start: %v %s\n%s", err, out, log)
	}
	t.Cleanup(func() {
		exec.Command(bin, "-c", filepath.Join(dir, "etc"), "stop").Run()
		if t.Failed() {
			t.Logf("postfix log:\n%s", pf.log())
		}
		os.RemoveAll(dir)
	})
	waitListening(t, "tcp", addr)
	return pf
}

func (pf *postfix) log() string {
	b, _ := os.ReadFile(filepath.Join(pf.dir, "maillog"))
	return string(b)
}

// waitLog waits until the Postfix log matches re n times and returns the
// matches.
func (pf *postfix) waitLog(t *testing.T, re string, n int) [][]string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := rx.FindAllStringSubmatch(pf.log(), -1)
		if len(m) >= n {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d Postfix log lines matching %s", len(m), n, re)
		}
		time.Sleep(20 * time.Millisecond) // polling the condition, bounded
	}
}

// delivered returns the Delivered-To of every copy in the maildir.
func (pf *postfix) delivered(t *testing.T) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(pf.dir, "mail", "all", "new", "*"))
	var out []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "Delivered-To: "); ok {
				out = append(out, v)
				break
			}
		}
		fh.Close()
	}
	sort.Strings(out)
	return out
}

// Operator's story (issue 16, section 2): the backend is Postfix with
// smtpd_recipient_limit = 20. A list message for 50 recipients is
// delivered in one attempt as three transactions (20, 20, 10) on one
// connection, every copy once; no backoff in between.
func TestInteropPostfixBackendRecipientLimit(t *testing.T) {
	dir := t.TempDir()
	pf := startPostfix(t, freeAddr(t, "127.0.0.10"), "smtpd_recipient_limit = 20")
	mx := freeAddr(t, "127.0.0.2")
	r := startRelay(t, dir, "-config", writeConfig(t, dir, relayConfig(filepath.Join(dir, "data"), mx, pf.addr)))

	var rcpts []string
	for i := 1; i <= 50; i++ {
		rcpts = append(rcpts, fmt.Sprintf("u%02d@relay.test", i))
	}
	out, code := swaks(t, mx, "--helo", "lists.src.test", "--from", "list@src.test", "--to", strings.Join(rcpts, ","))
	if code != 0 {
		t.Fatalf("swaks (%d):\n%s", code, out)
	}
	pf.waitLog(t, `postfix/virtual\[\d+\]: \w+: to=<u\d\d@relay\.test>.*status=sent`, 50)
	if got := pf.delivered(t); strings.Join(got, ",") != strings.Join(rcpts, ",") {
		t.Errorf("copies delivered to %v, want each of the 50 once", got)
	}
	// Three transactions at Postfix, over one connection (the one with
	// EHLO: waitListening's connection says nothing).
	if m := pf.waitLog(t, `postfix/smtpd\[\d+\]: (\w+): client=`, 3); len(m) != 3 {
		t.Errorf("%d transactions at Postfix, want 3", len(m))
	}
	if m := pf.waitLog(t, `postfix/smtpd\[\d+\]: disconnect from .* ehlo=`, 1); len(m) != 1 {
		t.Errorf("%d connections to Postfix, want 1", len(m))
	}
	lines, err := r.logs.wait("msg=delivery|status=sent", 50, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		if !strings.Contains(l, " attempt=1 ") {
			t.Errorf("not the first attempt: %s", l)
		}
	}
	if _, err := r.logs.wait(`next hop limits recipients per transaction|accepted=20|again=30`, 1, time.Second); err != nil {
		t.Error(err)
	}
}

// Issue 16, section 3: RET, ENVID, NOTIFY and ORCPT given to the relay
// reach Postfix, which announces DSN: Postfix itself reports the
// delivery (NOTIFY=SUCCESS), with the envelope ID and the original
// recipient; the relay sends no "relayed" report of its own.
func TestInteropPostfixBackendDSN(t *testing.T) {
	dir := t.TempDir()
	pf := startPostfix(t, freeAddr(t, "127.0.0.10"), "")
	mx := freeAddr(t, "127.0.0.2")
	r := startRelay(t, dir, "-config", writeConfig(t, dir, relayConfig(filepath.Join(dir, "data"), mx, pf.addr)))

	conn, err := net.Dial("tcp", mx)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("lists.src.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("list@src.test", &smtp.MailOptions{Return: smtp.DSNReturnHeaders, EnvelopeID: "env-16"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("alice@relay.test", &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyFailure},
		OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: "alice@old.test"}); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, "Subject: dsn\r\n\r\nbody\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()

	// Postfix's success notice for alice: its own DSN, queued for the
	// sender (which it cannot reach here).
	m := pf.waitLog(t, `postfix/bounce\[\d+\]: \w+: sender delivery status notification: (\w+)`, 1)
	notice, err := exec.Command("/usr/sbin/postcat", "-c", filepath.Join(pf.dir, "etc"), "-bh", "-q", m[0][1]).CombinedOutput()
	if err != nil {
		t.Fatalf("postcat: %v %s", err, notice)
	}
	for _, want := range []string{"Original-Envelope-Id: env-16", "Original-Recipient: rfc822;alice@old.test",
		"Final-Recipient: rfc822; alice@relay.test", "Action: delivered"} {
		if !strings.Contains(strings.ToLower(string(notice)), strings.ToLower(want)) {
			t.Errorf("Postfix's DSN lacks %q:\n%s", want, notice)
		}
	}
	if _, err := r.logs.wait("msg=delivery|to=<alice@relay.test>|status=sent", 1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// The relay logs a report before it removes the message.
	if _, err := r.logs.wait("msg=removed", 1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(r.logs.String(), "msg=report") {
		t.Errorf("the relay sent a report of its own:\n%s", r.logs.String())
	}
}
