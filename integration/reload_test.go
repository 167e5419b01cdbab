package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Operator's story: a second domain moves onto the relay and the
// backend moves to a new host. The postmaster edits the file and runs
// "mxedge reload": the next message takes the new route, the new domain
// is accepted, a session opened before the reload is not closed. A broken
// edit is refused with file:line and the old configuration stays; a
// listener address change is reported as needing a restart.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	oldBE := startBackend(t, "127.0.0.3:0")
	newBE := startBackend(t, "127.0.0.4:0")
	mx := freeAddr(t, "127.0.0.2")
	data := filepath.Join(dir, "data")
	base := relayConfig(data, mx, oldBE.Addr())
	cfg := writeConfig(t, dir, base)
	r := startRelay(t, dir, "-config", cfg)

	if err := sendFrom(mx, "sender@src.test", "alice@relay.test", "before"); err != nil {
		t.Fatal(err)
	}
	if _, err := oldBE.WaitMessages(1, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := sendFrom(mx, "sender@src.test", "alice@other.test", "not yet"); err == nil || !strings.Contains(err.Error(), "554") {
		t.Fatalf("other.test before the reload: %v, want 554", err)
	}
	open := startTransaction(t, mx) // in DATA across the reload

	moved := strings.Replace(base, `relay_domains = ["relay.test"]`, `relay_domains = ["relay.test", "other.test"]`, 1)
	moved = strings.Replace(moved, fmt.Sprintf("%q = %q", "relay.test", oldBE.Addr()),
		fmt.Sprintf("%q = %q\n%q = %q", "relay.test", newBE.Addr(), "other.test", newBE.Addr()), 1)
	writeConfig(t, dir, moved)
	out := mustMxedge(t, "reload", "-config", cfg)
	if !strings.Contains(out, "applied: routes") || !strings.Contains(out, `applied: listener "mx": policy chain`) ||
		strings.Contains(out, "needs a restart") {
		t.Errorf("mxedge reload:\n%s", out)
	}
	open.finishData() // the session from before the reload was not closed
	if err := sendFrom(mx, "sender@src.test", "alice@relay.test", "after"); err != nil {
		t.Fatal(err)
	}
	if err := sendFrom(mx, "sender@src.test", "bob@other.test", "new domain"); err != nil {
		t.Fatalf("other.test after the reload: %v", err)
	}
	msgs, err := newBE.WaitMessages(3, 30*time.Second) // the open one, "after", "new domain"
	if err != nil {
		t.Fatal(err)
	}
	if n := len(oldBE.Messages()); n != 1 {
		t.Errorf("old backend got %d messages, want only the one from before the reload", n)
	}
	_ = msgs

	// A broken edit: refused with file:line, the old (moved) config stays.
	writeConfig(t, dir, moved+"\n[limits]\nrecipients = \"many\"\n")
	_, errOut, code := mxedge(t, "reload", "-config", cfg)
	if code != 1 || !strings.Contains(errOut, "mxedge.toml:") || !strings.Contains(errOut, "limits.recipients") {
		t.Errorf("reload of a broken file: exit %d, stderr %q; want 1 and file:line", code, errOut)
	}
	if err := sendFrom(mx, "sender@src.test", "alice@other.test", "still"); err != nil {
		t.Errorf("after a refused reload: %v (the old configuration should stay)", err)
	}
	// SIGHUP with the broken file: logged, the relay goes on.
	r.cmd.Process.Signal(syscall.SIGHUP)
	if _, err := r.logs.wait("configuration not reloaded|limits.recipients", 1, 10*time.Second); err != nil {
		t.Error(err)
	}

	// A listener address change needs a restart.
	writeConfig(t, dir, strings.Replace(moved, fmt.Sprintf("address = %q", mx), fmt.Sprintf("address = %q", freeAddr(t, "127.0.0.2")), 1))
	out = mustMxedge(t, "reload", "-config", cfg)
	if !strings.Contains(out, `needs a restart: listener "mx" on `+mx) {
		t.Errorf("reload with a new listener address:\n%s", out)
	}
}

// Reload under load: 20 sessions keep sending while the configuration is
// reloaded again and again, alternating between two files that differ in
// what a reload applies (client limits, verification settings, the TLS
// policy of the backend's domain); every message is accepted and
// delivered.
func TestReloadUnderLoad(t *testing.T) {
	r := startPlainRelay(t)
	dir, mx, be, base, cfg := r.dir, r.mx, r.be, r.text, r.cfg
	other := strings.Replace(base, `pregreet_wait = "0s"`, "pregreet_wait = \"0s\"\nclient_message_rate = 1000", 1)
	other = strings.Replace(other, "[verify]\nmode = \"off\"", "[verify]\nmode = \"off\"\nnegative_ttl = \"1h\"", 1)
	variants := []string{base, other + "\n[tls_policy]\n\"relay.test\" = \"none\"\n"}
	if !strings.Contains(other, "client_message_rate = 1000") || !strings.Contains(other, "negative_ttl") {
		t.Fatal("the second configuration does not differ as meant")
	}

	const senders, each = 20, 5
	var wg sync.WaitGroup
	errs := make(chan error, senders*each)
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				if err := sendFrom(mx, "sender@src.test", "alice@relay.test", fmt.Sprintf("load %d-%d", i, j)); err != nil {
					errs <- err
				}
			}
		}()
	}
	reloads := 0
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
loop:
	for {
		select {
		case <-done:
			break loop
		default:
		}
		writeConfig(t, dir, variants[(reloads/2)%2])
		if reloads%2 == 0 {
			if out := mustMxedge(t, "reload", "-config", cfg); strings.Contains(out, "needs a restart") {
				t.Errorf("mxedge reload:\n%s", out)
			}
		} else {
			r.cmd.Process.Signal(syscall.SIGHUP)
			if _, err := r.logs.wait("configuration reloaded", reloads+1, 10*time.Second); err != nil {
				t.Fatal(err)
			}
		}
		reloads++
	}
	close(errs)
	for err := range errs {
		t.Errorf("refused during reloads: %v", err)
	}
	if _, err := be.WaitMessages(senders*each, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := len(be.Messages()); n != senders*each {
		t.Errorf("backend got %d messages, want %d", n, senders*each)
	}
	if reloads < 2 {
		t.Errorf("only %d reloads during the load", reloads)
	}
	t.Logf("%d messages, %d reloads", senders*each, reloads)
}

// reloadWith writes text as the configuration and runs "mxedge reload";
// its output must report nothing needing a restart.
func reloadWith(t *testing.T, dir, text string) string {
	t.Helper()
	cfg := writeConfig(t, dir, text)
	out := mustMxedge(t, "reload", "-config", cfg)
	if strings.Contains(out, "needs a restart") || !strings.HasSuffix(out, "no restart needed\n") {
		t.Errorf("mxedge reload:\n%s", out)
	}
	return out
}

// Operator's story: the backend is verified from now on. Before the
// reload a stranger is accepted at RCPT; after it the stranger is refused
// in the session and alice accepted by a probe. A second reload with a
// new probe sender keeps the cache: alice is not probed again, and the
// next probe comes from the new sender.
func TestReloadVerify(t *testing.T) {
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	data := filepath.Join(dir, "data")
	startRelay(t, dir, "-config", writeConfig(t, dir, verifyConfig(data, mx, be.Addr(), `mode = "off"`)))
	if out := rcptOnly(t, mx, "stranger@relay.test"); !strings.Contains(out, "<-  250") {
		t.Fatalf("verify off: stranger not accepted at RCPT:\n%s", out)
	}

	out := reloadWith(t, dir, verifyConfig(data, mx, be.Addr(), "mode = \"probe\"\nprobe_sender = \"first@relay-check.test\""))
	if !strings.Contains(out, "applied: verify (1 domains)") {
		t.Errorf("mxedge reload:\n%s", out)
	}
	if out := rcptOnly(t, mx, "stranger@relay.test"); !strings.Contains(out, "<** 550 5.1.1") {
		t.Errorf("after the reload: stranger not refused:\n%s", out)
	}
	if out := rcptOnly(t, mx, "alice@relay.test"); !strings.Contains(out, "<-  250") {
		t.Errorf("after the reload: alice not accepted:\n%s", out)
	}
	if !strings.Contains(strings.Join(be.Commands(), "\n"), "MAIL FROM:<first@relay-check.test>") {
		t.Errorf("no probe from the configured sender:\n%q", be.Commands())
	}

	reloadWith(t, dir, verifyConfig(data, mx, be.Addr(), "mode = \"probe\"\nprobe_sender = \"second@relay-check.test\""))
	probes := be.Count("RCPT TO:")
	if out := rcptOnly(t, mx, "alice@relay.test"); !strings.Contains(out, "<-  250") {
		t.Errorf("after the second reload: alice not accepted:\n%s", out)
	}
	if n := be.Count("RCPT TO:"); n != probes {
		t.Errorf("alice probed again after the reload (%d probes, was %d): the cache was lost", n, probes)
	}
	rcptOnly(t, mx, "bob@relay.test")
	if !strings.Contains(strings.Join(be.Commands(), "\n"), "MAIL FROM:<second@relay-check.test>") {
		t.Errorf("the probe after the reload is not from the new sender:\n%q", be.Commands())
	}
}

// Operator's story: the partner behind relay.test must now get mail
// over TLS only, and its host offers none. Before the reload a message
// is delivered in plaintext; after it the next one is deferred (4.7.4)
// and stays queued; after the edit is undone and the relay reloaded, a
// flush delivers it.
func TestReloadTLSPolicy(t *testing.T) {
	r := startPlainRelay(t) // the backend offers no STARTTLS
	dir, mx, be, base, cfg := r.dir, r.mx, r.be, r.text, r.cfg
	if err := sendFrom(mx, "sender@src.test", "alice@relay.test", "plaintext ok"); err != nil {
		t.Fatal(err)
	}
	if _, err := be.WaitMessages(1, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	out := reloadWith(t, dir, base+"\n[tls_policy]\n\"relay.test\" = \"encrypt\"\n")
	if !strings.Contains(out, "applied: tls_policy (default may, 1 domains") {
		t.Errorf("mxedge reload:\n%s", out)
	}
	if err := sendFrom(mx, "sender@src.test", "alice@relay.test", "needs tls"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.logs.wait(`msg=delivery|dsn=4.7.4 status=deferred`, 1, 30*time.Second); err != nil {
		t.Fatalf("the next delivery was not deferred for want of TLS: %v", err)
	}
	if n := len(be.Messages()); n != 1 {
		t.Errorf("backend got %d messages, want only the one from before the reload", n)
	}

	reloadWith(t, dir, base)
	mustMxedge(t, "queue", "flush", "-config", cfg)
	if _, err := be.WaitMessages(2, 30*time.Second); err != nil {
		t.Fatalf("after the policy was undone: %v", err)
	}
}

// Operator's story: a client at its message rate reconnects during a
// reload and is still refused (the counters are kept); raising the rate
// with a reload admits it at once.
func TestReloadKeepsClientLimits(t *testing.T) {
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	data := filepath.Join(dir, "data")
	limited := func(rate int) string {
		return strings.Replace(relayConfig(data, mx, be.Addr()), `pregreet_wait = "0s"`,
			fmt.Sprintf("pregreet_wait = \"0s\"\nclient_message_rate = %d", rate), 1)
	}
	startRelay(t, dir, "-config", writeConfig(t, dir, limited(2)))
	for i := range 2 {
		if err := sendFrom(mx, "sender@src.test", "alice@relay.test", fmt.Sprintf("within the rate %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sendFrom(mx, "sender@src.test", "alice@relay.test", "over"); err == nil || !strings.Contains(err.Error(), "421") {
		t.Fatalf("third message of a rate of 2: %v, want 421", err)
	}
	reloadWith(t, dir, limited(2))
	if err := sendFrom(mx, "sender@src.test", "alice@relay.test", "still over"); err == nil || !strings.Contains(err.Error(), "421") {
		t.Errorf("after a reload: %v, want 421 (the client's count was lost)", err)
	}
	reloadWith(t, dir, limited(10))
	if err := sendFrom(mx, "sender@src.test", "alice@relay.test", "new rate"); err != nil {
		t.Errorf("after raising the rate to 10: %v", err)
	}
}

// Greylisting turned on by a reload answers the next new triplet 450
// 4.7.1; turned off again, the same triplet is accepted.
func TestReloadGreylist(t *testing.T) {
	r := startPlainRelay(t)
	dir, mx, base := r.dir, r.mx, r.text
	greet := func() string {
		out, _ := swaks(t, mx, "--helo", "client.test", "--from", "new@src.test", "--to", "alice@relay.test", "--quit-after", "RCPT")
		return out
	}
	if out := greet(); !strings.Contains(out, "<-  250") {
		t.Fatalf("greylist off:\n%s", out)
	}
	if out := reloadWith(t, dir, base+"\n[greylist]\nenabled = true\n"); !strings.Contains(out, "applied: greylist (on)") {
		t.Errorf("mxedge reload:\n%s", out)
	}
	if out := greet(); !strings.Contains(out, "<** 450 4.7.1 Greylisted") {
		t.Errorf("after turning greylisting on:\n%s", out)
	}
	reloadWith(t, dir, base)
	if out := greet(); !strings.Contains(out, "<-  250") {
		t.Errorf("after turning greylisting off:\n%s", out)
	}
}

// Operator's story: the DKIM key of a stream is rotated and a content
// filter added for submitted mail. After the reload the next message is
// signed with the new selector (verified by python3-dkim) and filtered; a
// reload naming a key file that does not exist is refused with its path
// and the new key goes on signing.
func TestReloadDKIMKeysAndSubmissionMilter(t *testing.T) {
	ln := startBodyMilter(t)
	s := startSubmissionRelay(t, subOpts{})
	s.submit(t, "before", "signed with ed1")
	msgs, err := s.be.WaitMessages(1, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if py := pyDKIM(t, msgs[0].Body(), s.dkim); !strings.Contains(py, "s=ed1 a=ed25519-sha256 ok") {
		t.Fatalf("before the reload:\n%s", py)
	}

	edKey, newKey := filepath.Join(s.dir, "ed.key"), filepath.Join(s.dir, "ed2.key")
	keygen := mustMxedge(t, "dkim", "keygen", "-domain", "example.org", "-selector", "ed2", "-type", "ed25519", "-out", newKey, "-config", s.cfg)
	name, rec := zoneRecord(t, keygen)
	s.dkim[name] = rec
	old, err := os.ReadFile(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	rotated := strings.Replace(strings.Replace(string(old), `selector = "ed1"`, `selector = "ed2"`, 1), edKey, newKey, 1) +
		fmt.Sprintf("\n[[milter]]\nname = \"spamfilter\"\naddress = \"inet:%s\"\n", ln.Addr())
	out := reloadWith(t, s.dir, rotated)
	if !strings.Contains(out, "applied: dkim_sign (3 keys)") || !strings.Contains(out, "applied: milter after the queue (1)") {
		t.Errorf("mxedge reload:\n%s", out)
	}
	s.submit(t, "after", "signed with ed2")
	if msgs, err = s.be.WaitMessages(2, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	body := msgs[1].Body()
	py := pyDKIM(t, body, s.dkim)
	if !strings.Contains(py, "d=example.org s=ed2 a=ed25519-sha256 ok") || !strings.Contains(py, "d=example.org s=rsa1 a=rsa-sha256 ok") ||
		strings.Contains(py, "s=ed1") {
		t.Errorf("after the reload, want rsa1 and ed2 signatures:\n%s", py)
	}
	if !strings.Contains(string(body), "X-Spam-Checked: clean\r\n") {
		t.Errorf("the milter added after the reload did not see the message:\n%s", body)
	}

	missing := filepath.Join(s.dir, "missing.key")
	writeConfig(t, s.dir, strings.Replace(rotated, newKey, missing, 1))
	_, errOut, code := mxedge(t, "reload", "-config", s.cfg)
	if code != 1 || !strings.Contains(errOut, missing) {
		t.Errorf("reload with a missing key file: exit %d, stderr %q; want 1 and the file's path", code, errOut)
	}
	s.submit(t, "refused reload", "still ed2")
	if msgs, err = s.be.WaitMessages(3, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if py := pyDKIM(t, msgs[2].Body(), s.dkim); !strings.Contains(py, "s=ed2 a=ed25519-sha256 ok") {
		t.Errorf("after a refused reload the old signer should stay:\n%s", py)
	}
}
