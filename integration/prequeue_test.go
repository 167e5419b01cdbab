package integration

import (
	"fmt"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-milter"
)

// verdictMilter answers by the message's Subject: "quarantine",
// "discard", "rewrite" (changes the Subject, replaces the body, adds a
// recipient), anything else accept.
type verdictMilter struct {
	milter.NoOpMilter
	subject string
}

func (v *verdictMilter) Headers(h textproto.MIMEHeader, _ *milter.Modifier) (milter.Response, error) {
	v.subject = h.Get("Subject")
	return milter.RespContinue, nil
}

func (v *verdictMilter) Body(m *milter.Modifier) (milter.Response, error) {
	switch v.subject {
	case "quarantine":
		m.Quarantine("suspicious attachment")
		return milter.RespAccept, nil
	case "discard":
		return milter.RespDiscard, nil
	case "rewrite":
		m.ChangeHeader(1, "Subject", "[rewritten] rewrite")
		m.ReplaceBody([]byte("the filter's body\r\n"))
		m.AddRecipient("bob@relay.test")
		return milter.RespAccept, nil
	}
	return milter.RespAccept, nil
}

// A pre-queue filter's quarantine, discard and changes, as the client,
// the queue and the backend see them.
func TestMilterBeforeQueueActions(t *testing.T) {
	ln := startMilter(t, func() milter.Milter { return &verdictMilter{} },
		milter.OptAddHeader|milter.OptChangeHeader|milter.OptChangeBody|milter.OptAddRcpt|milter.OptQuarantine)
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	cfg := writeConfig(t, dir, relayConfig(filepath.Join(dir, "data"), mx, be.Addr())+fmt.Sprintf(`
[[milter]]
name = "scripted"
address = "inet:%s"
kinds = ["mx"]
`, ln.Addr()))
	r := startRelay(t, dir, "-config", cfg)
	send := func(subject string) string {
		out, code := swaks(t, mx, "--helo", "client.test", "--from", "sender@src.test", "--to", "alice@relay.test",
			"--header", "Subject: "+subject, "--body", "original body\n")
		if code != 0 || !strings.Contains(out, "<-  250 2.0.0 Ok: queued as") {
			t.Fatalf("%s: not accepted (%d):\n%s", subject, code, out)
		}
		return out
	}

	send("quarantine")
	held := listJSON(t, "-config", cfg, "-state", "hold")
	if len(held) != 1 {
		t.Fatalf("queue list -state hold: %+v", held)
	}
	if show := mustMxedge(t, "queue", "show", held[0].ID, "-config", cfg); !strings.Contains(show, "suspicious attachment") {
		t.Errorf("queue show lacks the reason:\n%s", show)
	}

	send("discard")
	if _, err := r.logs.wait(`msg="message discarded"|stage=milter`, 1, 10*time.Second); err != nil {
		t.Errorf("no discard log line: %v", err)
	}
	if all := listJSON(t, "-config", cfg); len(all) != 1 {
		t.Errorf("discarded message queued: %+v", all)
	}

	send("rewrite")
	msgs, err := be.WaitMessages(1, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if strings.Join(m.Rcpts, ",") != "<alice@relay.test>,<bob@relay.test>" {
			t.Errorf("backend's recipients: %v", m.Rcpts)
		}
		raw := string(m.Body())
		if !strings.Contains(raw, "\r\nSubject: [rewritten] rewrite\r\n") || !strings.HasSuffix(raw, "\r\n\r\nthe filter's body\r\n") ||
			strings.Contains(raw, "original body") {
			t.Errorf("backend's message (to %v):\n%s", m.Rcpts, raw)
		}
	}
}

// With [greylist] on, a new sender's first attempt is answered 450 4.7.1
// at RCPT and nothing is queued; the state is in the data directory.
func TestGreylistFirstAttempt(t *testing.T) {
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	data := filepath.Join(dir, "data")
	cfg := writeConfig(t, dir, relayConfig(data, mx, be.Addr())+"\n[greylist]\nenabled = true\n")
	startRelay(t, dir, "-config", cfg)
	out, _ := swaks(t, mx, "--helo", "client.test", "--from", "new@src.test", "--to", "alice@relay.test")
	if !strings.Contains(out, "<** 450 4.7.1 Greylisted, please try again later") {
		t.Errorf("first attempt not greylisted:\n%s", out)
	}
	if all := listJSON(t, "-config", cfg); len(all) != 0 {
		t.Errorf("queued: %+v", all)
	}
	out, _ = swaks(t, mx, "--helo", "client.test", "--from", "new@src.test", "--to", "alice@relay.test")
	if !strings.Contains(out, "<** 450 4.7.1 Greylisted") {
		t.Errorf("retry at once not greylisted:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(data, "greylist.db")); err != nil {
		t.Error(err)
	}
}
