package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxedge/mxedge/internal/smtptest"
)

// Recipient verification scenarios: the real binary probes a fake backend
// and answers RCPT from verify.db.

// verifyConfig is a relay like relayConfig's (MX listener on mx,
// relay.test routed to backend, fast retries) with a [verify] table: the
// given keys, and no catch-all test unless asked for (it would add a probe
// to the backend's transcript).
func verifyConfig(dataDir, mx, backend, keys string) string {
	if !strings.Contains(keys, "catchall_interval") {
		keys += "\ncatchall_interval = \"0s\""
	}
	return fmt.Sprintf(`hostname = "mx1.relay.test"
data_dir = %q
relay_domains = ["relay.test"]

[[listener]]
address = %q
# These scenarios are not about the edge defenses (edge_test.go is): no
# DNS answers here, so the checks that ask it are off, and so are the
# pregreet test and the HELO syntax check (swaks says the host's name).
client_no_ptr = "off"
client_ptr_mismatch = "off"
helo_invalid = "off"
helo_unknown = "off"
sender_unknown_domain = "off"
pregreet_wait = "0s"

[routes]
"relay.test" = %q

[queue]
min_backoff = "1s"
max_backoff = "2s"

[timeouts]
shutdown = "5s"

# Never the system resolver in tests: nothing answers here, so a lookup
# (an MX walk for a bounce to a remote sender) fails temporarily at once.
[dns]
servers = ["127.0.0.1:9"]
timeout = "1s"

[verify]
%s

# Nor about message authentication (msgauth_test.go is): without DNS
# answers SPF, DKIM and DMARC have nothing to say, and DMARC would refuse
# the scenarios' messages that have no From: field.
[spf]
enabled = false
[dkim_verify]
enabled = false
[dmarc]
enabled = false
`, dataDir, mx, backend, keys)
}

// rcptOnly sends MAIL and one RCPT with swaks and returns its output.
func rcptOnly(t *testing.T, mx, to string) string {
	t.Helper()
	out, _ := swaks(t, mx, "--from", "sender@src.test", "--to", to, "--quit-after", "RCPT")
	return out
}

// Operator's story: a backend knows alice and bob. The relay accepts
// alice, refuses a stranger in the session with the backend's own reason
// (no bounce later), and answers the next RCPTs from its cache. The
// backend sees short probes from the configured sender over the route
// delivery uses, never DATA; real mail then flows as before.
func TestVerifyKnownAcceptedUnknownRefusedThenCached(t *testing.T) {
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	r := startRelay(t, dir, "-config", writeConfig(t, dir, verifyConfig(filepath.Join(dir, "data"), mx, be.Addr(),
		`probe_sender = "probe@relay-check.test"`)))

	if out := rcptOnly(t, mx, "alice@relay.test"); !strings.Contains(out, "<-  250") || strings.Contains(out, "<**") {
		t.Fatalf("alice refused:\n%s", out)
	}
	want := "<** 550 5.1.1 <nobody@relay.test>: Recipient address rejected: undeliverable address: " +
		"550 5.1.1 <nobody@relay.test>: Recipient address rejected: User unknown"
	if out := rcptOnly(t, mx, "nobody@relay.test"); !strings.Contains(out, want) {
		t.Fatalf("stranger not refused with the backend's reason:\n%s", out)
	}
	probes := be.Commands()
	if n := be.Count("RCPT TO:"); n != 2 {
		t.Fatalf("%d probes:\n%s", n, strings.Join(probes, "\n"))
	}

	// The cache answers now: the backend sees nothing new.
	if out := rcptOnly(t, mx, "alice@relay.test"); strings.Contains(out, "<**") {
		t.Errorf("alice refused from the cache:\n%s", out)
	}
	if out := rcptOnly(t, mx, "nobody@relay.test"); !strings.Contains(out, want) {
		t.Errorf("stranger not refused from the cache:\n%s", out)
	}
	// (The probes' connection goes back to delivery's connection cache,
	// which closes it with QUIT once it has been idle for 2 s: not a
	// probe.)
	if now := be.Commands(); len(now) != len(probes) && !(len(now) == len(probes)+1 && now[len(now)-1] == "QUIT") {
		t.Errorf("cache hits reached the backend: %q", now[len(probes):])
	}

	// The probe dialogue at the backend.
	joined := strings.Join(probes, "\n")
	if !regexp.MustCompile(`^EHLO mx1\.relay\.test\nMAIL FROM:<probe@relay-check\.test>.*\nRCPT TO:<alice@relay\.test>\nRSET\n`).MatchString(joined) {
		t.Errorf("probe dialogue:\n%s", joined)
	}
	for _, bad := range []string{"DATA", "sender@src.test"} {
		if strings.Contains(joined, bad) {
			t.Errorf("probes contain %q (never DATA, never the sender):\n%s", bad, joined)
		}
	}
	// One log line per probe, naming the route delivery takes.
	if _, err := r.logs.wait(`msg="verify probe"|to=<alice@relay.test>|route=`+be.Addr()+`|result=exists|reply="250 2.1.5 Ok"|latency=`, 1, time.Second); err != nil {
		t.Error(err)
	}
	if _, err := r.logs.wait(`msg="recipient rejected"|to=<nobody@relay.test>|action=reject`, 2, time.Second); err != nil {
		t.Error(err)
	}

	// Real mail to the verified user goes through, on the same route.
	if err := sendFrom(mx, "sender@src.test", "alice@relay.test", "verified"); err != nil {
		t.Fatal(err)
	}
	if _, err := be.WaitMessages(1, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

// Operator's story: the backend is down. Mail for a user the relay knows
// is accepted and queued; an address it has never seen gets 450 (the
// sender retries), not 250-then-bounce and not 550. When the backend is
// back, the queued mail is delivered.
func TestVerifyBackendDownKnownQueuedUnknownDeferred(t *testing.T) {
	dir := t.TempDir()
	beAddr := freeAddr(t, "127.0.0.3")
	be, err := smtptest.Start(beAddr) // closed by the test, not at cleanup
	if err != nil {
		t.Fatal(err)
	}
	be.SetUsers("alice", "bob")
	mx := freeAddr(t, "127.0.0.2")
	cfg := writeConfig(t, dir, verifyConfig(filepath.Join(dir, "data"), mx, beAddr, ""))
	r := startRelay(t, dir, "-config", cfg)
	if out := rcptOnly(t, mx, "alice@relay.test"); strings.Contains(out, "<**") {
		t.Fatalf("alice refused:\n%s", out)
	}

	be.Close() // the backend goes down
	if err := sendFrom(mx, "sender@src.test", "alice@relay.test", "while the backend is down"); err != nil {
		t.Fatalf("mail to a known user refused during the outage: %v", err)
	}
	want := "<** 450 4.1.1 <carol@relay.test>: Recipient address rejected: unverified address: try again later"
	if out := rcptOnly(t, mx, "carol@relay.test"); !strings.Contains(out, want) {
		t.Errorf("unknown address during the outage:\n%s", out)
	}
	if _, err := r.logs.wait("msg=delivery|status=deferred", 1, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	show := mustMxedge(t, "verify", "show", "alice@relay.test", "-config", cfg)
	if !strings.Contains(show, "RCPT:        accept") || !strings.Contains(show, "State:       exists") {
		t.Errorf("verify show during the outage:\n%s", show)
	}

	be2, err := smtptest.Start(beAddr) // back
	if err != nil {
		t.Fatal(err)
	}
	defer be2.Close()
	be2.SetUsers("alice", "bob")
	msgs, err := be2.WaitMessages(1, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(msgs[0].Body()), "Subject: while the backend is down") {
		t.Errorf("delivered %q", msgs[0].Raw)
	}
}

// slowProxy relays TCP to backend, holding each chunk from the backend
// for delay: a slow backend, so that concurrent RCPTs overlap a probe.
func slowProxy(t *testing.T, backend string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.5:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, err := net.Dial("tcp", backend)
				if err != nil {
					return
				}
				defer b.Close()
				go io.Copy(b, c)
				buf := make([]byte, 4096)
				for {
					n, err := b.Read(buf)
					if n > 0 {
						time.Sleep(delay)
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// 50 senders ask for the same new address at the same moment: the backend
// sees exactly one probe, and all 50 get the answer.
func TestVerifyConcurrentRcptsShareOneProbe(t *testing.T) {
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	be.SetUsers("alice", "bob", "carol")
	route := slowProxy(t, be.Addr(), 150*time.Millisecond)
	mx := freeAddr(t, "127.0.0.2")
	cfg := writeConfig(t, dir, verifyConfig(filepath.Join(dir, "data"), mx, route, ""))
	startRelay(t, dir, "-config", cfg)

	const n = 50
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	ready.Add(n)
	done.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			defer done.Done()
			c, err := smtp.Dial(mx)
			if err == nil {
				defer c.Close()
				if err = c.Hello("sender.src.test"); err == nil {
					err = c.Mail("sender@src.test", nil)
				}
			}
			ready.Done()
			if err != nil {
				errs <- err
				return
			}
			<-start
			if err := c.Rcpt("carol@relay.test", nil); err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
			}
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := be.Count("RCPT TO:<carol@relay.test>"); got != 1 {
		t.Errorf("backend saw %d probes of carol, want exactly 1", got)
	}
	var st struct {
		Coalesced uint64 `json:"coalesced"`
		Probes    uint64 `json:"probes"`
	}
	if err := json.Unmarshal([]byte(mustMxedge(t, "verify", "stats", "-json", "-config", cfg)), &st); err != nil {
		t.Fatal(err)
	}
	if st.Probes != 1 || st.Coalesced == 0 {
		t.Errorf("stats: %+v", st)
	}
}

// Operator's story: a spammer tries 500 random names in one session. The
// relay probes the first 20, answers the next ones without probing (450,
// slowed down); from the 50th on the rest of the transaction is deferred
// (450 4.7.1) and the session ends with 421 at the next MAIL; the backend
// never sees more than 20 probes.
func TestVerifyDictionaryAttackCutOff(t *testing.T) {
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	// The session's own error limit (hard_error_limit, 20 by default)
	// would end this session before the guard does: raised here, the
	// guard's story is across sessions.
	conf := strings.Replace(verifyConfig(filepath.Join(dir, "data"), mx, be.Addr(),
		"dictionary_limit = 20\ndictionary_disconnect = 50\ndictionary_delay = \"20ms\""),
		"[[listener]]\n", "[[listener]]\nsoft_error_limit = 1000\nhard_error_limit = 1000\n", 1)
	cfg := writeConfig(t, dir, conf)
	r := startRelay(t, dir, "-config", cfg)

	nc, err := net.Dial("tcp", mx)
	if err != nil {
		t.Fatal(err)
	}
	c := textproto.NewConn(nc)
	defer c.Close()
	cmd := func(line string) (int, string) {
		nc.SetDeadline(time.Now().Add(30 * time.Second))
		if line != "" {
			if err := c.PrintfLine("%s", line); err != nil {
				return 0, err.Error()
			}
		}
		code, msg, err := c.ReadResponse(0)
		if code == 0 && err != nil {
			return 0, err.Error()
		}
		return code, msg
	}
	cmd("")
	cmd("EHLO spammer.example")
	if code, msg := cmd("MAIL FROM:<spammer@src.test>"); code != 250 {
		t.Fatalf("MAIL: %d %s", code, msg)
	}
	codes := map[int]int{}
	last, firstLimit := "", -1
	for i := 0; i < 60; i++ {
		code, msg := cmd(fmt.Sprintf("RCPT TO:<r%x%03d@relay.test>", time.Now().UnixNano()&0xffff, i))
		codes[code]++
		last = fmt.Sprintf("%d %s", code, msg)
		if firstLimit < 0 && strings.HasPrefix(last, "450 4.7.1 ") {
			firstLimit = i
		}
	}
	if last != "450 4.7.1 Too many unknown recipients, try the rest later" || codes[550] != 20 || codes[450] != 40 {
		t.Errorf("after 60 RCPTs: last %q, codes %v; want 20x550, 40x450", last, codes)
	}
	// The rest of the transaction is deferred from the 50th unknown
	// recipient on (dictionary_disconnect; the 450s before it are 4.1.1).
	if firstLimit != 49 {
		t.Errorf("first 450 4.7.1 at RCPT %d (from 0), want the 50th (49)", firstLimit)
	}
	cmd("RSET")
	if code, msg := cmd("MAIL FROM:<spammer@src.test>"); code != 421 {
		t.Errorf("MAIL after the transaction: %d %s, want 421", code, msg)
	}
	if code, msg := cmd("NOOP"); code != 0 {
		t.Errorf("connection still open after 421: %d %s", code, msg)
	}
	if n := be.Count("RCPT TO:"); n != 20 {
		t.Errorf("backend saw %d probes, want 20", n)
	}
	if _, err := r.logs.wait("verify: too many unknown recipients, session ends after the transaction|client_ip=127.0.0.1|unknown=50", 1, time.Second); err != nil {
		t.Error(err)
	}
	stats := mustMxedge(t, "verify", "stats", "-config", cfg)
	if !strings.Contains(stats, "dictionary:     30 answered without a probe, 1 disconnects; clients over the limit now 1 (1 cut off)") {
		t.Errorf("verify stats:\n%s", stats)
	}
}

// A backend that accepts any recipient makes verification useless: the
// relay finds out by itself, warns, and "verify stats" says so.
func TestVerifyCatchAllBackendReported(t *testing.T) {
	dir := t.TempDir()
	be, err := smtptest.Start("127.0.0.3:0") // no Users: accepts everyone
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	mx := freeAddr(t, "127.0.0.2")
	cfg := writeConfig(t, dir, verifyConfig(filepath.Join(dir, "data"), mx, be.Addr(), `catchall_interval = "1d"`))
	r := startRelay(t, dir, "-config", cfg)
	if out := rcptOnly(t, mx, "anyone@relay.test"); strings.Contains(out, "<**") { // the domain's first probe
		t.Fatalf("refused:\n%s", out)
	}
	if _, err := r.logs.wait(`level=WARN|msg="verify: catch-all next hop|domain=relay.test`, 1, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	stats := mustMxedge(t, "verify", "stats", "-config", cfg)
	for _, want := range []string{"catch-all:      relay.test (the next hop accepts any address", "relay.test", "CATCH-ALL: accepted mxedge-nx-"} {
		if !strings.Contains(stats, want) {
			t.Errorf("verify stats lacks %q:\n%s", want, stats)
		}
	}
	var st struct {
		CatchAll []string `json:"catch_all"`
	}
	json.Unmarshal([]byte(mustMxedge(t, "verify", "stats", "-json", "-config", cfg)), &st)
	if len(st.CatchAll) != 1 || st.CatchAll[0] != "relay.test" {
		t.Errorf("verify stats -json catch_all = %q", st.CatchAll)
	}
}

// The admin commands against the running relay: show, probe (with the
// dialogue), forget, stats; bad input and a stopped relay.
func TestVerifyAdminCommands(t *testing.T) {
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	cfg := writeConfig(t, dir, verifyConfig(filepath.Join(dir, "data"), mx, be.Addr(), ""))
	r := startRelay(t, dir, "-config", cfg)

	if out := mustMxedge(t, "verify", "show", "Alice@RELAY.TEST", "-config", cfg); !strings.Contains(out, "Address:     Alice@relay.test\n") ||
		!strings.Contains(out, "RCPT:        probe (nothing valid cached") {
		t.Errorf("show before any probe:\n%s", out)
	}
	out := mustMxedge(t, "verify", "probe", "alice@relay.test", "-config", cfg)
	for _, re := range []string{
		`(?m)^S: 220 `, `(?m)^C: EHLO mx1\.relay\.test$`, `(?m)^C: MAIL FROM:<double-bounce@mx1\.relay\.test>`,
		`(?m)^C: RCPT TO:<alice@relay\.test>$`, `(?m)^S: 250 2\.1\.5 Ok$`, `(?m)^C: QUIT$`,
		`(?m)^result: exists via ` + regexp.QuoteMeta(be.Addr()) + ` in .*: 250 2\.1\.5 Ok$`,
		`(?m)^cache: exists until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("verify probe does not match %s:\n%s", re, out)
		}
	}
	if strings.Contains(out, "DATA") {
		t.Errorf("verify probe sent DATA:\n%s", out)
	}
	var rep struct {
		Result     string   `json:"result"`
		Reply      string   `json:"reply"`
		Transcript []string `json:"transcript"`
	}
	json.Unmarshal([]byte(mustMxedge(t, "verify", "probe", "nobody@relay.test", "-json", "-config", cfg)), &rep)
	if rep.Result != "unknown" || !strings.HasPrefix(rep.Reply, "550 5.1.1") || len(rep.Transcript) < 5 {
		t.Errorf("verify probe -json: %+v", rep)
	}
	show := mustMxedge(t, "verify", "show", "alice@relay.test", "-config", cfg)
	for _, want := range []string{"Mode:        probe", "RCPT:        accept", "State:       exists", "Reply:       250 2.1.5 Ok",
		"Route:       " + be.Addr(), "(in 30d)"} {
		if !strings.Contains(show, want) {
			t.Errorf("verify show lacks %q:\n%s", want, show)
		}
	}
	if out := mustMxedge(t, "verify", "forget", "<alice@Relay.Test>", "-config", cfg); out != "alice@relay.test: forgotten\n" {
		t.Errorf("verify forget: %q", out)
	}
	if _, err := r.logs.wait("msg=admin|action=verify-forget|to=<alice@relay.test>", 1, time.Second); err != nil {
		t.Error(err)
	}
	if _, errOut, code := mxedge(t, "verify", "forget", "alice@relay.test", "-config", cfg); code != 1 ||
		errOut != "mxedge verify forget: no cache entry for alice@relay.test\n" {
		t.Errorf("forget twice: exit %d, %q", code, errOut)
	}
	if _, errOut, code := mxedge(t, "verify", "probe", "x@elsewhere.test", "-config", cfg); code != 1 || !strings.Contains(errOut, "domain not verified by probes: elsewhere.test (not a relay domain)") {
		t.Errorf("probe of a foreign domain: exit %d, %q", code, errOut)
	}
	if _, errOut, code := mxedge(t, "verify", "show", "no-at-sign", "-config", cfg); code != 1 || !strings.Contains(errOut, `invalid address "no-at-sign"`) {
		t.Errorf("show of a malformed address: exit %d, %q", code, errOut)
	}
	if _, _, code := mxedge(t, "verify", "show", "-config", cfg); code != 2 {
		t.Errorf("show without an address: exit %d, want 2", code)
	}
	if _, _, code := mxedge(t, "verify", "frobnicate"); code != 2 {
		t.Errorf("unknown subcommand: exit %d, want 2", code)
	}
	stats := mustMxedge(t, "verify", "stats", "-config", cfg)
	for _, re := range []string{
		`(?m)^entries: +0 exists, 1 unknown, 0 tempfail, 0 expired$`,
		`(?m)^probes: +2 sent \(1 exists, 1 unknown, 0 tempfail\)`,
		`(?m)^probe latency: +avg \S+, p50 \S+, p95 \S+, max \S+$`,
		`(?m)^catch-all: +none found$`,
		`(?m)^    relay\.test +probe$`,
	} {
		if !regexp.MustCompile(re).MatchString(stats) {
			t.Errorf("verify stats does not match %s:\n%s", re, stats)
		}
	}

	if code, err := r.stop(15 * time.Second); err != nil || code != 0 {
		t.Fatalf("SIGTERM: exit %d, %v", code, err)
	}
	if _, errOut, code := mxedge(t, "verify", "stats", "-config", cfg); code != 1 || !strings.Contains(errOut, "mxedge is not running") {
		t.Errorf("stats with the relay stopped: exit %d, %q", code, errOut)
	}
}

// A domain whose backend cannot be probed uses a recipient list: listed
// users are accepted, others refused in the session, and nobody is
// probed. A broken list stops the relay from starting, naming file and
// line.
func TestVerifyStaticRecipientList(t *testing.T) {
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	list := filepath.Join(dir, "relay.test.users")
	os.WriteFile(list, []byte("# users of relay.test\nalice\nBob@Relay.Test\n"), 0o600)
	cfg := writeConfig(t, dir, verifyConfig(filepath.Join(dir, "data"), mx, be.Addr(), "")+
		fmt.Sprintf("\n[verify_domains]\n\"relay.test\" = { mode = \"list\", list = %q }\n", list))
	r := startRelay(t, dir, "-config", cfg)
	for to, want := range map[string]string{
		"alice@relay.test": "<-  250",
		"bob@relay.test":   "<-  250",
		"carol@relay.test": "<** 550 5.1.1 <carol@relay.test>: Recipient address rejected: User unknown in relay recipient table",
	} {
		if out := rcptOnly(t, mx, to); !strings.Contains(out, want) {
			t.Errorf("%s: want %q:\n%s", to, want, out)
		}
	}
	if n := be.Conns(); n != 0 {
		t.Errorf("backend contacted %d times", n)
	}
	if code, err := r.stop(15 * time.Second); err != nil || code != 0 {
		t.Fatalf("SIGTERM: exit %d, %v", code, err)
	}

	os.WriteFile(list, []byte("alice\nbob smith\n"), 0o600)
	out, err := exec.Command(binary, "serve", "-config", cfg).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), list+`:2: "bob smith": one address or local part per line`) {
		t.Errorf("broken list: %v\n%s", err, out)
	}
}

// "mxedge config check" knows the verification keys: every problem named
// with its key, the per-domain table in either TOML form.
func TestVerifyConfigCheck(t *testing.T) {
	dir := t.TempDir()
	base := `hostname = "mx1.example.net"
relay_domains = ["example.org", "b.example"]
[routes]
"example.org" = "10.0.0.1:25"
"b.example" = "10.0.0.2:25"
`
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte(base+`[verify]
mode = "list"
probe_sender = "not an address"
dictionary_limit = 30
dictionary_disconnect = 10
[verify_domains]
"Example.ORG" = { mode = "list" }
"other.example" = { mode = "off" }
"b.example" = { mode = "probe", list = "/x" }
`), 0o600)
	out, err := exec.Command(binary, "config", "check", "-config", bad).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit %v\n%s", err, out)
	}
	for _, want := range []string{
		bad + `:7:1: verify.mode "list": must be "probe" or "off"`,
		bad + `:8:1: verify.probe_sender "not an address": must be an address`,
		bad + `:10:1: verify.dictionary_disconnect 10: must be at least verify.dictionary_limit (30)`,
		bad + `:14:33: verify_domains."b.example".list "/x": only for mode = "list"`,
		bad + `:12:1: verify_domains."example.org".list: mode "list" needs a recipient list file`,
		bad + `:13:1: verify_domains."other.example": not in relay_domains`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("config check lacks %q:\n%s", want, out)
		}
	}

	good := filepath.Join(dir, "good.toml")
	os.WriteFile(good, []byte(base+`[verify_domains]
"example.org" = { mode = "list", list = "/etc/mxedge/example.org.users" }
[verify_domains."b.example"]
mode = "off"
`), 0o600)
	out, err = exec.Command(binary, "config", "check", "-config", good).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"[verify]", "positive_ttl = '30d'", "negative_ttl = '3h0m0s'", "dictionary_limit = 20",
		"[verify_domains.'b.example']", "list = '/etc/mxedge/example.org.users'"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("effective config lacks %q:\n%s", want, out)
		}
	}
}
