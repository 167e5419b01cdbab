package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-milter"

	"github.com/mxedge/mxedge/internal/miltertest"
)

// bodyMilter rejects a message whose body says "BUY NOW" and tags the
// others, like a spam filter.
type bodyMilter struct {
	milter.NoOpMilter
	body bytes.Buffer
}

func (b *bodyMilter) Headers(textproto.MIMEHeader, *milter.Modifier) (milter.Response, error) {
	return milter.RespContinue, nil
}

func (b *bodyMilter) BodyChunk(c []byte, _ *milter.Modifier) (milter.Response, error) {
	b.body.Write(c)
	return milter.RespContinue, nil
}

func (b *bodyMilter) Body(m *milter.Modifier) (milter.Response, error) {
	if bytes.Contains(b.body.Bytes(), []byte("BUY NOW")) {
		return milter.NewResponseStr('y', "550 5.7.1 Spam message rejected (score 15.2)"), nil
	}
	m.AddHeader("X-Spam-Checked", "clean")
	return milter.RespAccept, nil
}

// The operator's story of a compromised account: its spam is accepted on
// 587 (the client sees 250), the post-queue milter refuses it, the message
// is held for review (queue list -state hold, with the reason) and the
// user gets a failure report saying why, DKIM-signed by the relay's own
// domain; clean mail goes out with the filter's header under the signature.
func TestSubmissionMilterHoldsAndReports(t *testing.T) {
	ln := startBodyMilter(t)
	s := startSubmissionRelay(t, subOpts{extra: fmt.Sprintf("\n[[milter]]\nname = \"spamfilter\"\naddress = \"inet:%s\"\n", ln.Addr())})
	s.submit(t, "offer", "BUY NOW cheap pills")
	if _, err := s.logs.wait(`msg="held by content filter"`, 1, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	list := mustMxedge(t, "queue", "list", "-state", "hold", "-json", "-config", s.cfg)
	var held struct {
		ID         string `json:"id"`
		HoldReason string `json:"hold_reason"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(strings.TrimSpace(list), "\n", 2)[0]), &held); err != nil || held.ID == "" {
		t.Fatalf("queue list -state hold: %v\n%s", err, list)
	}
	show := mustMxedge(t, "queue", "show", held.ID, "-config", s.cfg)
	if !strings.Contains(show, "550 5.7.1 Spam message rejected (score 15.2)") {
		t.Errorf("queue show lacks the reason:\n%s", show)
	}
	// The report reaches alice (example.org is routed to the backend).
	msgs, err := s.be.WaitMessages(1, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	report := msgs[0]
	if !strings.HasPrefix(report.From, "<> ") || !strings.HasPrefix(report.Rcpts[0], "<alice@example.org>") {
		t.Errorf("report envelope %s -> %v", report.From, report.Rcpts)
	}
	body := report.Body()
	if unfolded := bytes.ReplaceAll(body, []byte("\r\n "), []byte(" ")); !bytes.Contains(unfolded, []byte("Diagnostic-Code: smtp; 550 5.7.1 Spam message rejected (score 15.2) (held for review)")) {
		t.Errorf("report:\n%s", body)
	}
	if py := pyDKIM(t, body, s.dkim); !strings.Contains(py, "d=relay.test s=bounce a=rsa-sha256 ok") {
		t.Errorf("the report is not signed by the relay's domain:\n%s", py)
	}
	for _, m := range s.be.Messages() {
		if strings.Contains(string(m.Body()), "BUY NOW cheap pills") && !strings.HasPrefix(m.From, "<>") {
			t.Fatal("the held message was delivered")
		}
	}

	s.submit(t, "hello", "see you tomorrow")
	msgs, err = s.be.WaitMessages(2, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	clean := msgs[1].Body()
	if !bytes.Contains(clean, []byte("X-Spam-Checked: clean\r\n")) {
		t.Errorf("the filter's header is missing:\n%s", clean)
	}
	s.checkSigned(t, clean)
}

// startBodyMilter runs a bodyMilter server (startMilter).
func startBodyMilter(t *testing.T) net.Listener {
	t.Helper()
	return startMilter(t, func() milter.Milter { return &bodyMilter{} }, milter.OptAddHeader)
}

// startMilter runs a milter server on 127.0.0.4 that may take actions,
// stopped when the test ends, and returns its listener.
func startMilter(t *testing.T, newMilter func() milter.Milter, actions milter.OptAction) net.Listener {
	t.Helper()
	return miltertest.Start(t, "127.0.0.4:0", newMilter, actions)
}
