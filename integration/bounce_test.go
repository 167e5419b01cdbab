package integration

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxedge/mxedge/internal/smtptest"
)

// Operator's story: the backend refuses a recipient after the relay
// accepted the message (recipient verification is off in relayConfig).
// The sender gets an RFC 3464 bounce from <>, delivered through the same
// queue; the delivered recipient of the same message is not reported.
func TestBackendRefusalIsBouncedToSender(t *testing.T) {
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	senderMX, err := smtptest.Start("127.0.0.4:0")
	if err != nil {
		t.Fatal(err)
	}
	defer senderMX.Close()
	mx := freeAddr(t, "127.0.0.2")
	cfg := strings.Replace(relayConfig(filepath.Join(dir, "data"), mx, be.Addr()),
		"[routes]\n", fmt.Sprintf("[routes]\n\"src.test\" = %q\n", senderMX.Addr()), 1)
	startRelay(t, dir, "-config", writeConfig(t, dir, cfg))

	out, code := swaks(t, mx, "--from", "sender@src.test", "--to", "alice@relay.test,nobody@relay.test",
		"--header", "Subject: to a friend and a stranger")
	if code != 0 {
		t.Fatalf("swaks: %d\n%s", code, out)
	}
	bounces, err := senderMX.WaitMessages(1, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b := bounces[0]
	body := string(b.Body())
	if !strings.HasPrefix(b.From, "<>") || len(b.Rcpts) != 1 || b.Rcpts[0] != "<sender@src.test>" {
		t.Errorf("bounce envelope: MAIL FROM:%s RCPT %v", b.From, b.Rcpts)
	}
	for _, want := range []string{
		"Content-Type: multipart/report; report-type=delivery-status",
		"Reporting-MTA: dns; mx1.relay.test",
		"Final-Recipient: rfc822; nobody@relay.test",
		"Action: failed", "Status: 5.1.1",
		"Subject: to a friend and a stranger",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("bounce lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "Final-Recipient: rfc822; alice@relay.test") {
		t.Error("the delivered recipient is reported")
	}
	if msgs := be.Messages(); len(msgs) != 1 || len(msgs[0].Rcpts) != 1 {
		t.Errorf("backend got %d messages", len(msgs))
	}
}
