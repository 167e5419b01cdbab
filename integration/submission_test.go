package integration

import (
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxedge/mxedge/internal/smtptest"
)

// subRelay is a relay with an MX listener and both submission listeners,
// a users file, DKIM keys for example.org (rsa and ed25519, made with
// "mxedge dkim keygen"), and a backend for relay.test that also takes the
// submitted mail for remote.test (a route, so no MX lookup).
type subRelay struct {
	*relay
	dir, cfg, ca, users string
	be                  *smtptest.Server
	mx, sub, subs       string
	dkim                map[string]string // TXT name -> record
}

type subOpts struct {
	auth  string // [auth] lines
	users string // users file
	mx    string // extra [[listener]] lines of the MX
	extra string // more configuration at the end
}

// alicePW's hash: argon2id with small parameters (the race-built binary
// would spend seconds per check on the default 64 MiB).
const alicePW = "alice-secret-1"

var aliceLine = "alice@example.org:{ARGON2ID}$argon2id$v=19$m=1024,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$" +
	cheapArgon(alicePW) + "::::::senders=alice@example.org,*@lists.example.org"

func startSubmissionRelay(t *testing.T, o subOpts) *subRelay {
	t.Helper()
	dir := t.TempDir()
	s := &subRelay{dir: dir, be: startBackend(t, "127.0.0.3:0"), dkim: map[string]string{}}
	s.be.CatchAll()
	s.mx, s.sub, s.subs = freeAddr(t, "127.0.0.2"), freeAddr(t, "127.0.0.2"), freeAddr(t, "127.0.0.2")
	var cert tls.Certificate
	s.ca, cert = newCA(t, "smtp.relay.test")
	certFile, keyFile := writeCertFiles(t, dir, "smtp", cert)
	s.users = filepath.Join(dir, "users")
	if o.users == "" {
		o.users = aliceLine + "\n"
	}
	os.WriteFile(s.users, []byte(o.users), 0o600)
	if o.auth == "" {
		o.auth = fmt.Sprintf("users_file = %q\nfailure_delay = \"1s\"", s.users)
	}
	rsaKey, edKey, bounceKey := filepath.Join(dir, "rsa.key"), filepath.Join(dir, "ed.key"), filepath.Join(dir, "bounce.key")
	cfg := fmt.Sprintf(`hostname = "mx1.relay.test"
data_dir = %q
relay_domains = ["relay.test"]

[[listener]]
name = "mx"
address = %q
# These scenarios are about submission, not the MX's edge defenses
# (edge_test.go): one client address floods port 25 here, and no DNS
# answers.
pregreet_wait = "0s"
client_sessions = 0
client_connection_rate = 0
client_no_ptr = "off"
client_ptr_mismatch = "off"
helo_invalid = "off"
helo_unknown = "off"
sender_unknown_domain = "off"
%s

[[listener]]
name = "submission"
kind = "submission"
address = %q
tls_cert = [%q]
tls_key = [%q]

[[listener]]
name = "submissions"
kind = "submissions"
address = %q
tls_cert = [%q]
tls_key = [%q]

[routes]
"relay.test" = %q
"remote.test" = %q
"example.org" = %q

[queue]
min_backoff = "1s"
max_backoff = "2s"

[timeouts]
shutdown = "5s"

[dns]
servers = ["127.0.0.1:9"]
timeout = "1s"

[verify]
mode = "off"

[auth]
%s

[[dkim_sign]]
domain = "example.org"
selector = "rsa1"
key_file = %q

[[dkim_sign]]
domain = "example.org"
selector = "ed1"
key_file = %q

# The relay's own reports (From MAILER-DAEMON@mx1.relay.test).
[[dkim_sign]]
domain = "relay.test"
selector = "bounce"
key_file = %q
%s
`, filepath.Join(dir, "data"), s.mx, o.mx, s.sub, certFile, keyFile, s.subs, certFile, keyFile,
		s.be.Addr(), s.be.Addr(), s.be.Addr(), o.auth, rsaKey, edKey, bounceKey, o.extra)
	s.cfg = writeConfig(t, dir, cfg)
	for _, k := range []struct{ domain, sel, kind, file string }{
		{"example.org", "rsa1", "rsa", rsaKey}, {"example.org", "ed1", "ed25519", edKey}, {"relay.test", "bounce", "rsa", bounceKey},
	} {
		sel, file := k.sel, k.file
		out := mustMxedge(t, "dkim", "keygen", "-domain", k.domain, "-selector", sel, "-type", k.kind, "-out", file, "-config", s.cfg)
		if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("key file %s: %v %v", file, fi, err)
		}
		name, rec := zoneRecord(t, out)
		if name != sel+"._domainkey."+k.domain {
			t.Fatalf("keygen record name %q:\n%s", name, out)
		}
		s.dkim[name] = rec
	}
	show := mustMxedge(t, "dkim", "show", "-config", s.cfg)
	for name, rec := range s.dkim {
		if n, r := zoneRecord(t, show[strings.Index(show, name):]); n != name || r != rec {
			t.Errorf("dkim show differs from keygen for %s:\n%s", name, show)
		}
	}
	s.relay = startRelay(t, dir, "-config", s.cfg)
	if _, err := s.out.wait("listener on", 3, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	return s
}

// zoneRecord parses the first zone line "name. IN TXT ( "a" "b" )" in out.
func zoneRecord(t *testing.T, out string) (name, record string) {
	t.Helper()
	m := regexp.MustCompile(`(\S+)\. IN TXT \( (.*) \)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no TXT record in:\n%s", out)
	}
	parts := regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(m[2], -1)
	for _, p := range parts {
		record += p[1]
	}
	return m[1], record
}

// tlsArgs are swaks' options to trust the test CA.
func (s *subRelay) tlsArgs() []string {
	return []string{"--tls-verify", "--tls-ca-path", s.ca, "--tls-sni", "smtp.relay.test"}
}

// pyDKIM verifies every DKIM-Signature of msg with python3-dkim (the
// library behind dkimverify), its DNS answered from records; it returns
// one "d=... s=... a=... ok|fail" line per signature.
func pyDKIM(t *testing.T, msg []byte, records map[string]string) string {
	t.Helper()
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Fatal("python3 not installed (.ci/run installs it)")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "msg"), msg, 0o600)
	var recs []string
	for name, rec := range records {
		recs = append(recs, fmt.Sprintf("%q: %q", name+".", rec))
	}
	script := `
import sys, dkim, re
msg = open(sys.argv[1], 'rb').read()
records = {` + strings.Join(recs, ", ") + `}
def dnsfunc(name, timeout=5):
    return records.get(name.decode(), '').encode() or None
d = dkim.DKIM(msg)
n = len([h for h in d.headers if h[0].lower() == b'dkim-signature'])
for i in range(n):
    ok = dkim.DKIM(msg).verify(idx=i, dnsfunc=dnsfunc)
    sig = [h for h in dkim.DKIM(msg).headers if h[0].lower() == b'dkim-signature'][i][1].decode()
    tags = dict(re.findall(r'(\w+)=([^;]*)', re.sub(r'\s', '', sig)))
    print('d=%s s=%s a=%s %s' % (tags.get('d'), tags.get('s'), tags.get('a'), 'ok' if ok else 'fail'))
`
	os.WriteFile(filepath.Join(dir, "verify.py"), []byte(script), 0o600)
	out, err := exec.Command(py, filepath.Join(dir, "verify.py"), filepath.Join(dir, "msg")).CombinedOutput()
	if err != nil {
		t.Fatalf("python3-dkim: %v\n%s", err, out)
	}
	return string(out)
}

// opendkimVerify runs opendkim's test mode on msg with the RSA key's
// record given through TestPublicKeys, and returns its report.
func opendkimVerify(t *testing.T, msg []byte, name, record string) string {
	t.Helper()
	bin := "/usr/sbin/opendkim"
	if _, err := os.Stat(bin); err != nil {
		t.Fatal("opendkim not installed (.ci/run installs it)")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "keys"), []byte(name+" "+record+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "opendkim.conf"), []byte("Mode v\nSyslog no\nTestPublicKeys "+filepath.Join(dir, "keys")+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "msg"), msg, 0o600)
	out, _ := exec.Command(bin, "-x", filepath.Join(dir, "opendkim.conf"), "-t", filepath.Join(dir, "msg")).CombinedOutput()
	return string(out)
}

// checkSigned asserts that both signatures of a message the backend
// received verify with python3-dkim, and the RSA one with opendkim.
func (s *subRelay) checkSigned(t *testing.T, msg []byte) {
	t.Helper()
	py := pyDKIM(t, msg, s.dkim)
	if !strings.Contains(py, "d=example.org s=rsa1 a=rsa-sha256 ok") || !strings.Contains(py, "d=example.org s=ed1 a=ed25519-sha256 ok") {
		t.Errorf("python3-dkim:\n%s\nmessage:\n%s", py, msg)
	}
	od := opendkimVerify(t, msg, "rsa1._domainkey.example.org", s.dkim["rsa1._domainkey.example.org"])
	if !strings.Contains(od, "verification (s=rsa1, d=example.org, 2048-bit key) succeeded") {
		t.Errorf("opendkim -t:\n%s", od)
	}
}

// Desktop clients as users run them: swaks with PLAIN and LOGIN over
// STARTTLS on 587, swaks --tlsc on 465, msmtp with a user's ~/.msmtprc on
// 587, Python's smtplib SMTP_SSL on 465. Every message reaches the
// backend for a domain the relay does not serve, with a Received header
// "with ESMTPSA", and both DKIM signatures verify with python3-dkim and
// opendkim.
func TestSubmissionDesktopClients(t *testing.T) {
	s := startSubmissionRelay(t, subOpts{})
	send := []struct {
		name string
		run  func() (string, error)
	}{
		{"swaks PLAIN 587", func() (string, error) {
			out, code := swaks(t, s.sub, append(s.tlsArgs(), "--tls", "--auth", "PLAIN", "--auth-user", "alice@example.org",
				"--auth-password", alicePW, "--from", "alice@example.org", "--to", "bob@remote.test",
				"--header", "From: Alice <alice@example.org>", "--header", "Subject: swaks plain")...)
			return out, exitErr(code)
		}},
		{"swaks LOGIN 587", func() (string, error) {
			out, code := swaks(t, s.sub, append(s.tlsArgs(), "--tls", "--auth", "LOGIN", "--auth-user", "alice@example.org",
				"--auth-password", alicePW, "--from", "alice@example.org", "--to", "bob@remote.test",
				"--header", "From: alice@example.org", "--header", "Subject: swaks login")...)
			return out, exitErr(code)
		}},
		{"swaks --tlsc 465", func() (string, error) {
			out, code := swaks(t, s.subs, append(s.tlsArgs(), "--tlsc", "--auth", "PLAIN", "--auth-user", "alice@example.org",
				"--auth-password", alicePW, "--from", "alice@example.org", "--to", "bob@remote.test",
				"--header", "From: alice@example.org", "--header", "Subject: swaks tlsc")...)
			return out, exitErr(code)
		}},
		{"msmtp 587", func() (string, error) { return s.msmtp(t, "msmtp") }},
		{"python smtplib SMTP_SSL 465", func() (string, error) { return s.smtplib(t, "smtplib") }},
	}
	for i, c := range send {
		out, err := c.run()
		if err != nil {
			t.Fatalf("%s: %v\n%s", c.name, err, out)
		}
		msgs, err := s.be.WaitMessages(i+1, 30*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		m := msgs[i]
		body := m.Body()
		if !strings.HasPrefix(m.From, "<alice@example.org>") || len(m.Rcpts) != 1 || !strings.HasPrefix(m.Rcpts[0], "<bob@remote.test>") {
			t.Errorf("%s: envelope %s -> %v", c.name, m.From, m.Rcpts)
		}
		if !strings.Contains(string(body), "by mx1.relay.test (mxedge) with ESMTPSA id ") {
			t.Errorf("%s: Received:\n%s", c.name, body[:min(len(body), 600)])
		}
		s.checkSigned(t, body)
	}
	if _, err := s.logs.wait(`msg="auth ok"|user=alice@example.org`, len(send), 5*time.Second); err != nil {
		t.Error(err)
	}
}

// submit sends one message as alice with swaks (PLAIN over STARTTLS on
// 587) to victim@remote.test and returns swaks' output; a refusal fails
// the test.
func (s *subRelay) submit(t *testing.T, subject, body string) string {
	t.Helper()
	out, code := swaks(t, s.sub, append(s.tlsArgs(), "--tls", "--auth", "PLAIN", "--auth-user", "alice@example.org",
		"--auth-password", alicePW, "--from", "alice@example.org", "--to", "victim@remote.test",
		"--header", "From: alice@example.org", "--header", "Subject: "+subject, "--body", body)...)
	if code != 0 {
		t.Fatalf("swaks: %d\n%s", code, out)
	}
	return out
}

func exitErr(code int) error {
	if code != 0 {
		return fmt.Errorf("exit %d", code)
	}
	return nil
}

// msmtp as configured in a desktop user's ~/.msmtprc: STARTTLS on 587,
// the CA, the login.
func (s *subRelay) msmtp(t *testing.T, subject string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("msmtp")
	if err != nil {
		t.Fatal("msmtp is not installed (.ci/run installs it)")
	}
	host, port := splitAddr(s.sub)
	rc := filepath.Join(t.TempDir(), "msmtprc")
	os.WriteFile(rc, []byte(fmt.Sprintf(`defaults
auth on
tls on
tls_starttls on
tls_trust_file %s
logfile -

account relay
host %s
port %s
tls_host_override smtp.relay.test
from alice@example.org
user alice@example.org
password %s

account default : relay
`, s.ca, host, port, alicePW)), 0o600)
	cmd := exec.Command(bin, "-C", rc, "bob@remote.test")
	cmd.Stdin = strings.NewReader("From: Alice <alice@example.org>\nTo: bob@remote.test\nSubject: " + subject + "\n\nsent with msmtp\n")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// smtplib: Python's SMTP_SSL with login(), as a script of a user would.
func (s *subRelay) smtplib(t *testing.T, subject string) (string, error) {
	t.Helper()
	host, port := splitAddr(s.subs)
	script := fmt.Sprintf(`
import smtplib, ssl
from email.message import EmailMessage
ctx = ssl.create_default_context(cafile=%q)
# The certificate is for smtp.relay.test, the test connects to an IP
# address (no DNS here): the chain is verified, the name is not.
ctx.check_hostname = False
m = EmailMessage()
m['From'] = 'alice@example.org'
m['To'] = 'bob@remote.test'
m['Subject'] = %q
m.set_content('sent with smtplib')
with smtplib.SMTP_SSL(%q, %s, context=ctx) as c:
    c.login('alice@example.org', %q)
    c.send_message(m)
print('sent')
`, s.ca, subject, host, port, alicePW)
	out, err := exec.Command("/usr/bin/python3", "-c", script).CombinedOutput()
	return string(out), err
}

func splitAddr(a string) (string, string) {
	i := strings.LastIndexByte(a, ':')
	return a[:i], a[i+1:]
}

// The relay's password file, managed with mxedge user: a user added with
// its password on stdin can send at once (the running relay re-reads the
// file), a new password replaces the old one, the senders are enforced
// (553 5.7.1), and mxedge user show lists senders and counters.
func TestSubmissionPasswordFile(t *testing.T) {
	s := startSubmissionRelay(t, subOpts{})
	in := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(binary, args...)
		cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("mxedge %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	in("first-password\n", "user", "add", "dave@example.org", "-senders", "dave@example.org,d.smith@example.org", "-config", s.cfg)
	users, _ := os.ReadFile(s.users)
	if !strings.Contains(string(users), "dave@example.org:{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$") {
		t.Fatalf("users file:\n%s", users)
	}
	auth := func(pw, from string) (string, int) {
		return swaks(t, s.sub, append(s.tlsArgs(), "--tls", "--auth", "PLAIN", "--auth-user", "dave@example.org",
			"--auth-password", pw, "--from", from, "--to", "x@remote.test", "--header", "From: "+from)...)
	}
	if out, code := auth("first-password", "d.smith@example.org"); code != 0 {
		t.Fatalf("new user: %d\n%s", code, out)
	}
	if out, _ := auth("first-password", "alice@example.org"); !strings.Contains(out, "* 553 5.7.1 Sender address not owned by user") {
		t.Errorf("foreign sender:\n%s", out)
	}
	in("second-password\n", "user", "passwd", "dave@example.org", "-config", s.cfg)
	if out, _ := auth("first-password", "dave@example.org"); !strings.Contains(out, "* 535 5.7.8 Authentication failed") {
		t.Errorf("old password still works:\n%s", out)
	}
	if out, code := auth("second-password", "dave@example.org"); code != 0 {
		t.Errorf("new password: %d\n%s", code, out)
	}
	list := mustMxedge(t, "user", "list", "-config", s.cfg)
	if !strings.Contains(list, "dave@example.org\tsenders=dave@example.org,d.smith@example.org") || !strings.Contains(list, "alice@example.org\t") {
		t.Errorf("user list:\n%s", list)
	}
	show := mustMxedge(t, "user", "show", "dave@example.org", "-config", s.cfg)
	if !strings.Contains(show, "counters (from the running relay)") || !regexp.MustCompile(`this hour .*: 2/100 messages, 2/500 recipients`).MatchString(show) {
		t.Errorf("user show:\n%s", show)
	}
	if _, err := s.logs.wait(`msg="auth failed"|client_ip=127.0.0.1|user=dave@example.org|failures=1`, 1, 5*time.Second); err != nil {
		t.Error(err)
	}
	in("", "user", "del", "dave@example.org", "-config", s.cfg)
	if out, _ := auth("second-password", "dave@example.org"); !strings.Contains(out, "* 535 5.7.8") {
		t.Errorf("deleted user still works:\n%s", out)
	}
}

// A real Dovecot does the SASL check (its auth socket, a passwd-file with
// a SHA512-CRYPT hash), the login map gives the senders.
func TestSubmissionDovecot(t *testing.T) {
	socket := startDovecot(t, "carol@example.org", "carol-dove-pw")
	logins := filepath.Join(t.TempDir(), "logins")
	os.WriteFile(logins, []byte("carol@example.org: carol@example.org, c.jones@example.org\n"), 0o600)
	s := startSubmissionRelay(t, subOpts{auth: fmt.Sprintf("backend = \"dovecot\"\ndovecot_socket = %q\nlogin_map = %q", socket, logins)})
	send := func(pw, from string) (string, int) {
		return swaks(t, s.sub, append(s.tlsArgs(), "--tls", "--auth", "LOGIN", "--auth-user", "carol@example.org",
			"--auth-password", pw, "--from", from, "--to", "y@remote.test", "--header", "From: "+from)...)
	}
	if out, code := send("carol-dove-pw", "c.jones@example.org"); code != 0 {
		t.Fatalf("dovecot login: %d\n%s", code, out)
	}
	msgs, err := s.be.WaitMessages(1, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(msgs[0].From, "<c.jones@example.org>") {
		t.Errorf("from %s", msgs[0].From)
	}
	s.checkSigned(t, msgs[0].Body())
	if out, _ := send("wrong", "carol@example.org"); !strings.Contains(out, "* 535 5.7.8 Authentication failed") {
		t.Errorf("wrong password:\n%s", out)
	}
	if out, _ := send("carol-dove-pw", "boss@example.org"); !strings.Contains(out, "* 553 5.7.1 Sender address not owned by user") {
		t.Errorf("sender not in the login map:\n%s", out)
	}
}

// A retry after a 4xx sends byte-identical signed content: the backend
// takes the message for one recipient and defers the other; the second
// attempt delivers exactly the same bytes.
func TestSubmissionSignedRetryIdentical(t *testing.T) {
	s := startSubmissionRelay(t, subOpts{})
	var deferred atomic.Bool
	s.be.On(smtptest.Rcpt, func(_ *smtptest.Session, line string) string {
		if strings.Contains(line, "later@remote.test") && deferred.CompareAndSwap(false, true) {
			return "451 4.3.0 try again later"
		}
		return ""
	})
	out, code := swaks(t, s.sub, append(s.tlsArgs(), "--tls", "--auth", "PLAIN", "--auth-user", "alice@example.org",
		"--auth-password", alicePW, "--from", "alice@example.org", "--to", "now@remote.test,later@remote.test",
		"--header", "From: alice@example.org", "--header", "Subject: retry")...)
	if code != 0 {
		t.Fatalf("swaks: %d\n%s", code, out)
	}
	msgs, err := s.be.WaitMessages(2, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(msgs[0].Rcpts) != "[<now@remote.test>]" || fmt.Sprint(msgs[1].Rcpts) != "[<later@remote.test>]" {
		t.Fatalf("deliveries: %v then %v", msgs[0].Rcpts, msgs[1].Rcpts)
	}
	if string(msgs[0].Body()) != string(msgs[1].Body()) {
		t.Errorf("the retry sent other bytes:\n%s\n----\n%s", msgs[0].Body(), msgs[1].Body())
	}
	s.checkSigned(t, msgs[1].Body())
}
