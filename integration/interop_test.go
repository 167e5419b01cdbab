package integration

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Interoperability with real MTAs (issue 16): the relay runs for real
// between Postfix's programs and mailbox stores; the bytes that arrive
// are compared with those sent by hash.

// needProgram returns the path of a program the interop tests run, or
// skips (outside CI) / fails (in CI, where .ci/run installs it).
func needProgram(t *testing.T, path, pkg string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("%s not installed (apt-get install %s; .ci/run installs it)", path, pkg)
		}
		t.Fatalf("%s not installed (package %s), and CI is set", path, pkg)
	}
	return path
}

// waitListening waits until something accepts connections on network
// addr (a program started by the test binds it on its own time).
func waitListening(t *testing.T, network, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s %s: %v", network, addr, err)
		}
		time.Sleep(20 * time.Millisecond) // polling the condition, bounded
	}
}

// startSmtpSink runs Postfix's smtp-sink on addr (LMTP with lmtp) and
// returns the directory where it dumps every transaction.
func startSmtpSink(t *testing.T, addr string, lmtp bool) string {
	t.Helper()
	sink := needProgram(t, "/usr/sbin/smtp-sink", "postfix")
	// smtp-sink writes as nobody: a directory outside the test's own
	// (which only root may enter).
	top, err := os.MkdirTemp("", "mxedge-sink-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	dump := filepath.Join(top, "dump")
	if err := os.MkdirAll(dump, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(top, 0o755)
	os.Chmod(dump, 0o777)
	args := []string{"-u", "nobody", "-d", dump + "/m."}
	if lmtp {
		args = append([]string{"-L"}, args...)
	}
	cmd := exec.Command(sink, append(args, addr, "10")...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("smtp-sink: %s", stderr.String())
		}
	})
	waitListening(t, "tcp", addr)
	return dump
}

// sinkDumps waits for n dumped transactions in dir, each complete (it
// contains last: smtp-sink writes a dump while the data arrives), and
// returns them.
func sinkDumps(t *testing.T, dir string, n int, last string) [][]byte {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(dir, "m.*"))
		var out [][]byte
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte(last)) {
				out = append(out, b)
			}
		}
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d transactions arrived at smtp-sink", len(files), n)
		}
		time.Sleep(20 * time.Millisecond) // polling the condition, bounded
	}
}

// bodyHash is the SHA-256 of a message's body (after the first empty
// line), line endings as LF, without trailing empty lines (swaks adds
// one after the data, smtp-sink's dump one more).
func bodyHash(msg []byte) string {
	msg = bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))
	_, body, _ := bytes.Cut(msg, []byte("\n\n"))
	body = bytes.TrimRight(body, "\n")
	return fmt.Sprintf("%x", sha256.Sum256(body))
}

// Operator's story (issue 16, section 5): the mailbox store takes mail
// over LMTP only. With routes."relay.test" = "lmtp:host:port" the relay
// delivers with LHLO and gets a reply per recipient; here Postfix's
// smtp-sink in LMTP mode is the store. Every recipient's copy arrives
// once, the body byte-exact.
func TestInteropLMTPToSmtpSink(t *testing.T) {
	dir := t.TempDir()
	sinkAddr := freeAddr(t, "127.0.0.8")
	dump := startSmtpSink(t, sinkAddr, true)
	mx := freeAddr(t, "127.0.0.2")
	cfg := relayConfig(filepath.Join(dir, "data"), mx, "lmtp:"+sinkAddr)
	r := startRelay(t, dir, "-config", writeConfig(t, dir, cfg))

	body := "From: Sender <sender@src.test>\nTo: alice@relay.test\nSubject: lmtp interop\n\n" +
		"first line\n.leading dot\n..two dots\nlast line\n"
	dataFile := filepath.Join(dir, "body.eml")
	os.WriteFile(dataFile, []byte(body), 0o600)
	out, code := swaks(t, mx, "--helo", "client.test", "--from", "sender@src.test",
		"--to", "alice@relay.test,bob@relay.test", "--data", dataFile)
	if code != 0 {
		t.Fatalf("swaks failed (%d):\n%s", code, out)
	}
	for _, rcpt := range []string{"alice", "bob"} {
		if _, err := r.logs.wait("msg=delivery|to=<"+rcpt+"@relay.test>|relay=\"lmtp:"+sinkAddr+"|status=sent", 1, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	dumps := sinkDumps(t, dump, 1, "last line\n")
	if len(dumps) != 1 {
		t.Errorf("%d transactions at smtp-sink, want one for both recipients", len(dumps))
	}
	got := string(dumps[0])
	if !strings.Contains(got, "X-Client-Proto: LMTP\n") || !strings.Contains(got, "X-Rcpt-Args: <alice@relay.test>\n") ||
		!strings.Contains(got, "X-Rcpt-Args: <bob@relay.test>\n") || !strings.Contains(got, "X-Mail-Args: <sender@src.test> BODY=7BIT") {
		t.Errorf("transaction at smtp-sink:\n%s", got)
	}
	// Received without BODY=8BITMIME: passed on as BODY=7BIT (RFC 6152).
	if want := bodyHash([]byte(body)); bodyHash(dumps[0]) != want {
		t.Errorf("body hash %s, want %s; dump:\n%s", bodyHash(dumps[0]), want, got)
	}
}

// Operator's story: Postfix is the sending MTA (its smtp-source, with
// PIPELINING): 5 messages of 3 recipients each over 2 sessions reach the
// backend, each recipient's copy once.
func TestInteropPostfixSmtpSourceClient(t *testing.T) {
	src := needProgram(t, "/usr/sbin/smtp-source", "postfix")
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	be.SetUsers("user", "2user", "3user") // smtp-source's recipients: user, 2user, 3user
	mx := freeAddr(t, "127.0.0.2")
	startRelay(t, dir, "-config", writeConfig(t, dir, relayConfig(filepath.Join(dir, "data"), mx, be.Addr())))
	cmd := exec.Command(src, "-s", "2", "-m", "5", "-r", "3", "-l", "4096", "-M", "client.src.test",
		"-f", "sender@src.test", "-t", "user@relay.test", mx)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}
	msgs, err := be.WaitMessages(5, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	copies := map[string]int{}
	for _, m := range msgs {
		for _, r := range m.Rcpts {
			copies[r]++
		}
		if !strings.Contains(string(m.Body()), "From: <sender@src.test>") {
			t.Errorf("message at the backend:\n%s", m.Body())
		}
	}
	if len(copies) != 3 {
		t.Errorf("recipients at the backend: %v", copies)
	}
	for r, n := range copies {
		if n != 5 {
			t.Errorf("%s got %d copies, want 5", r, n)
		}
	}
}

// Python's smtplib with SMTPUTF8 (RFC 6531): a UTF-8 sender, recipient
// and subject reach a backend with SMTPUTF8 byte-exact, with SMTPUTF8 on
// MAIL, and Received says "with UTF8SMTP".
func TestInteropSmtplibSMTPUTF8(t *testing.T) {
	py := needProgram(t, "/usr/bin/python3", "python3")
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0") // announces SMTPUTF8
	be.SetUsers("grüße")
	mx := freeAddr(t, "127.0.0.2")
	startRelay(t, dir, "-config", writeConfig(t, dir, relayConfig(filepath.Join(dir, "data"), mx, be.Addr())))
	host, port, _ := net.SplitHostPort(mx)
	script := `import smtplib, sys
msg = "From: Jörg <jörg@src.test>\r\nTo: <grüße@relay.test>\r\nSubject: Grüße aus Köln\r\n\r\nschöne Grüße\r\n".encode()
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), local_hostname="client.src.test")
s.ehlo()
s.sendmail("jörg@src.test", ["grüße@relay.test"], msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
s.quit()
`
	if out, err := exec.Command(py, "-c", script, host, port).CombinedOutput(); err != nil {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	msgs, err := be.WaitMessages(1, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m := msgs[0]
	if !strings.HasPrefix(m.From, "<jörg@src.test>") || !strings.Contains(m.From, "SMTPUTF8") ||
		!strings.Contains(m.From, "BODY=8BITMIME") || len(m.Rcpts) != 1 || m.Rcpts[0] != "<grüße@relay.test>" {
		t.Errorf("envelope at the backend: %q %q", m.From, m.Rcpts)
	}
	sent := "From: Jörg <jörg@src.test>\r\nTo: <grüße@relay.test>\r\nSubject: Grüße aus Köln\r\n\r\nschöne Grüße\r\n"
	if bodyHash(m.Body()) != bodyHash([]byte(sent)) || !strings.HasSuffix(string(m.Body()), sent) {
		t.Errorf("message at the backend:\n%s", m.Body())
	}
	if !strings.Contains(string(m.Body()), "with UTF8SMTP id ") {
		t.Errorf("Received header:\n%s", m.Body())
	}
}
