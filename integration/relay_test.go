package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mxedge/mxedge/internal/smtptest"
)

// startBackend runs a fake mailbox backend on 127.0.0.3 that knows alice
// and bob.
func startBackend(t *testing.T, addr string) *smtptest.Server {
	t.Helper()
	be, err := smtptest.Start(addr)
	if err != nil {
		t.Fatal(err)
	}
	be.SetUsers("alice", "bob")
	t.Cleanup(be.Close)
	return be
}

func writeConfig(t *testing.T, dir, text string) string {
	t.Helper()
	path := filepath.Join(dir, "mxedge.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// plainRelay is the scenarios' usual set-up: a relay on 127.0.0.2 with
// relayConfig in front of a backend (startBackend) on 127.0.0.3.
type plainRelay struct {
	*relay
	dir, mx string
	be      *smtptest.Server
	text    string // the configuration, relayConfig's
	cfg     string // its file in dir
}

// startPlainRelay starts a plainRelay; args follow "-config FILE".
func startPlainRelay(t *testing.T, args ...string) *plainRelay {
	t.Helper()
	p := &plainRelay{dir: t.TempDir(), be: startBackend(t, "127.0.0.3:0"), mx: freeAddr(t, "127.0.0.2")}
	p.text = relayConfig(filepath.Join(p.dir, "data"), p.mx, p.be.Addr())
	p.cfg = writeConfig(t, p.dir, p.text)
	p.relay = startRelay(t, p.dir, append([]string{"-config", p.cfg}, args...)...)
	return p
}

// A sender's message, sent with swaks to the MX port, reaches the backend
// byte for byte: a Received header added on top, the body intact, and
// dot-stuffing right on both hops.
func TestMessageReachesBackendByteExact(t *testing.T) {
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	r := startRelay(t, dir, "-config", writeConfig(t, dir, relayConfig(filepath.Join(dir, "data"), mx, be.Addr())))

	body := "From: Sender <sender@src.test>\n" +
		"To: alice@relay.test\n" +
		"Subject: skeleton test\n" +
		"Message-ID: <skel-1@src.test>\n" +
		"\n" +
		"first line\n" +
		".leading dot\n" +
		"..two dots\n" +
		".\n" +
		"last line\n"
	dataFile := filepath.Join(dir, "body.eml")
	os.WriteFile(dataFile, []byte(body), 0o600)
	out, code := swaks(t, mx, "--helo", "client.test", "--from", "sender@src.test",
		"--to", "alice@relay.test", "--data", dataFile)
	if code != 0 {
		t.Fatalf("swaks failed (%d):\n%s", code, out)
	}
	id := queuedID(t, out)

	msgs, err := be.WaitMessages(1, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := string(msgs[0].Raw)
	received := regexp.MustCompile(`^Received: from client\.test \(unknown \[127\.0\.0\.\d+\]\)\r\n` +
		`\tby mx1\.relay\.test \(mxedge\) with ESMTP id ` + id + `\r\n` +
		`\tfor <alice@relay\.test>; \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4} \(\w+\)\r\n`)
	loc := received.FindStringIndex(got)
	if loc == nil {
		t.Fatalf("backend did not get our Received header first:\n%q", got)
	}
	// Our Authentication-Results below Received (SPF, DKIM and DMARC are
	// off in this scenario: nothing to report), then the data as sent.
	wantRest := "Authentication-Results: mx1.relay.test; none\r\n" +
		"From: Sender <sender@src.test>\r\n" +
		"To: alice@relay.test\r\n" +
		"Subject: skeleton test\r\n" +
		"Message-ID: <skel-1@src.test>\r\n" +
		"\r\n" +
		"first line\r\n" +
		"..leading dot\r\n" +
		"...two dots\r\n" +
		"..\r\n" +
		"last line\r\n" +
		"\r\n" + // swaks ends the data with an empty line of its own
		".\r\n"
	if rest := got[loc[1]:]; rest != wantRest {
		t.Errorf("bytes after Received at the backend:\n got %q\nwant %q", rest, wantRest)
	}
	if f := msgs[0].From; !strings.HasPrefix(f, "<sender@src.test> ") || !strings.Contains(f, " SIZE=") {
		t.Errorf("MAIL FROM at backend: %q", f)
	}
	if len(msgs[0].Rcpts) != 1 || msgs[0].Rcpts[0] != "<alice@relay.test>" {
		t.Errorf("RCPT at backend: %q", msgs[0].Rcpts)
	}
	// The log tells the story by queue ID.
	for _, ev := range []string{"msg=accepted|queue_id=" + id, "msg=delivery|queue_id=" + id + "|status=sent",
		"msg=removed|queue_id=" + id} {
		if _, err := r.logs.wait(ev, 1, 10*time.Second); err != nil {
			t.Error(err)
		}
	}
}

// Relay tricks sent by a real client are refused in the session.
func TestRelayTricksRefused(t *testing.T) {
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	startRelay(t, dir, "-config", writeConfig(t, dir, relayConfig(filepath.Join(dir, "data"), mx, be.Addr())))
	for _, tc := range []struct{ to, want string }{
		{"victim@elsewhere.example", "554 5.7.1"},
		{"victim%elsewhere.example@relay.test", "554 5.7.1"},
		{"elsewhere.example!victim@relay.test", "554 5.7.1"},
		{`"victim@elsewhere.example"@relay.test`, "554 5.7.1"},
		{"@relay.test:victim@elsewhere.example", "554 5.7.1"},
		{"victim@[127.0.0.3]", "554 5.7.1"},
		{"victim@relay.test.", "501 5.1.3"},
	} {
		out, code := swaks(t, mx, "--from", "spammer@src.test", "--to", tc.to, "--quit-after", "RCPT")
		if code == 0 || !strings.Contains(out, "<** "+tc.want) {
			t.Errorf("RCPT TO:<%s>: swaks exit %d, want a %s refusal:\n%s", tc.to, code, tc.want, out)
		}
	}
	if n := be.Conns(); n != 0 {
		t.Errorf("backend was contacted %d times for refused recipients", n)
	}
}
