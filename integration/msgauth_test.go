package integration

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"

	"github.com/mxedge/mxedge/resolver/dnstest"
)

// authSend sends msg (CRLF lines) from local address ip with a Go SMTP
// client and returns the reply to the end of DATA (or the first refusal).
func authSend(t *testing.T, mx, ip, helo, from, to, msg string) string {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	nc, err := d.Dial("tcp", mx)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(60 * time.Second))
	host, _, _ := net.SplitHostPort(mx)
	c, err := smtp.NewClient(nc, host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reply := func(err error) string {
		var e *textproto.Error
		if errors.As(err, &e) {
			return fmt.Sprintf("%d %s", e.Code, e.Msg)
		}
		return err.Error()
	}
	if err := c.Hello(helo); err != nil {
		return reply(err)
	}
	if err := c.Mail(from); err != nil {
		return reply(err)
	}
	if err := c.Rcpt(to); err != nil {
		return reply(err)
	}
	w, err := c.Data()
	if err != nil {
		return reply(err)
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return reply(err)
	}
	if err := w.Close(); err != nil {
		return reply(err)
	}
	c.Quit()
	return "250"
}

// An MX relay with SPF, DKIM and DMARC on, as the defaults have them,
// against the in-process DNS server: a message whose From: domain
// publishes p=reject and that neither passes SPF nor DKIM aligned is
// refused after DATA with 550 5.7.1 and never reaches the backend, also
// through the organisational domain's record (a From: subdomain without
// a record of its own); p=quarantine is accepted and says dmarc=fail; a
// DKIM-signed message of a p=reject domain passes; a forged
// Authentication-Results with our authserv-id is removed, another
// server's is kept, and the backend sees exactly one of ours, which
// go-msgauth's parser reads back.
func TestMsgAuthDMARC(t *testing.T) {
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	_, ek, _ := ed25519.GenerateKey(rand.Reader)
	dns := dnstest.StartTB(t,
		"61.0.0.127.in-addr.arpa. PTR out.src.test.", "out.src.test. A 127.0.0.61",
		"src.test. MX 10 out.src.test.",
		`src.test. TXT "v=spf1 ip4:127.0.0.61 -all"`,
		`out.src.test. TXT "v=spf1 a -all"`,
		`_dmarc.bank.test. TXT "v=DMARC1; p=reject"`, "bank.test. MX 10 mx.bank.test.",
		`_dmarc.quar.test. TXT "v=DMARC1; p=quarantine"`,
		`_dmarc.corp.test. TXT "v=DMARC1; p=none; sp=reject"`,
		`_dmarc.signed.test. TXT "v=DMARC1; p=reject; adkim=s"`,
		fmt.Sprintf(`ed1._domainkey.signed.test. TXT "v=DKIM1; k=ed25519; p=%s"`, base64.StdEncoding.EncodeToString(ek.Public().(ed25519.PublicKey))),
	)
	cfg := edgeConfig(filepath.Join(dir, "data"), mx, be.Addr(), dns.Addr(), `pregreet_wait = "0s"`)
	r := startRelay(t, dir, "-config", writeConfig(t, dir, cfg))

	msg := func(from, subject, extra string) string {
		return extra + "From: <" + from + ">\r\nTo: <alice@relay.test>\r\nSubject: " + subject +
			"\r\nDate: Wed, 02 Dec 2026 10:00:00 +0000\r\nMessage-ID: <" + subject + "@src.test>\r\n\r\nHello.\r\n"
	}
	send := func(fromHdr, subject, extra string) string {
		return authSend(t, mx, "127.0.0.61", "out.src.test", "s@src.test", "alice@relay.test", msg(fromHdr, subject, extra))
	}
	for _, tc := range []struct{ from, subject string }{
		{"ceo@bank.test", "reject-direct"},
		{"ceo@mail.corp.test", "reject-orgdomain"},
	} {
		if got := send(tc.from, tc.subject, ""); got != "550 5.7.1 Rejected by DMARC policy for "+tc.from[strings.IndexByte(tc.from, '@')+1:] {
			t.Errorf("%s: %q", tc.subject, got)
		}
	}
	if _, err := r.logs.wait(`msg="message rejected"|stage=dmarc`, 2, 10*time.Second); err != nil {
		t.Error(err)
	}
	// Zero From addresses.
	noFrom := "To: <alice@relay.test>\r\nSubject: nofrom\r\n\r\nx\r\n"
	if got := authSend(t, mx, "127.0.0.61", "out.src.test", "s@src.test", "alice@relay.test", noFrom); !strings.HasPrefix(got, "550 5.7.1 Message must have exactly one From address") {
		t.Errorf("no From: %q", got)
	}

	// Accepted: quarantine; a signed message of a p=reject domain; a
	// message with forged and foreign Authentication-Results.
	if got := send("news@quar.test", "quarantine", ""); got != "250" {
		t.Errorf("quarantine: %q", got)
	}
	var signed bytes.Buffer
	if err := dkim.Sign(&signed, strings.NewReader(msg("ceo@signed.test", "signed", "")), &dkim.SignOptions{
		Domain: "signed.test", Selector: "ed1", Signer: ek}); err != nil {
		t.Fatal(err)
	}
	if got := authSend(t, mx, "127.0.0.61", "out.src.test", "s@src.test", "alice@relay.test", signed.String()); got != "250" {
		t.Errorf("signed: %q", got)
	}
	forged := "Authentication-Results: mx1.relay.test; dmarc=pass header.from=bank.test\r\n" +
		"Authentication-Results: other.example; spf=pass smtp.mailfrom=x@other.example\r\n"
	if got := send("s@src.test", "forged", forged); got != "250" {
		t.Errorf("forged: %q", got)
	}

	msgs, err := be.WaitMessages(3, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Only the three accepted messages ever arrive: once the queue has
	// removed three, nothing else is on its way.
	if _, err := r.logs.wait("msg=removed", 3, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := len(be.Messages()); n != 3 {
		t.Errorf("%d messages at the backend, want the 3 accepted", n)
	}
	bySubject := map[string]string{}
	for _, m := range msgs {
		b := string(m.Body())
		for _, s := range []string{"reject-direct", "reject-orgdomain", "nofrom", "quarantine", "signed", "forged"} {
			if strings.Contains(b, "Subject: "+s+"\r\n") {
				bySubject[s] = b
			}
		}
	}
	for _, s := range []string{"reject-direct", "reject-orgdomain", "nofrom"} {
		if _, ok := bySubject[s]; ok {
			t.Errorf("refused message %s reached the backend", s)
		}
	}
	ours := func(s string) []string {
		body := bySubject[s]
		hdr, _, _ := strings.Cut(body, "\r\n\r\n")
		var out []string
		for _, f := range strings.Split(strings.ReplaceAll(hdr, "\r\n\t", " "), "\r\n") {
			if strings.HasPrefix(f, "Authentication-Results: mx1.relay.test;") {
				out = append(out, f)
			}
		}
		return out
	}
	for s, want := range map[string][]string{
		"quarantine": {"iprev=pass", "spf=pass smtp.helo=out.src.test", "spf=pass smtp.mailfrom=s@src.test", "dkim=none", "dmarc=fail header.from=quar.test"},
		"signed":     {"dkim=pass header.d=signed.test", "dmarc=pass header.from=signed.test"},
		"forged":     {"spf=pass smtp.mailfrom=s@src.test", "dmarc=none header.from=src.test"},
	} {
		ar := ours(s)
		if len(ar) != 1 {
			t.Errorf("%s: %d Authentication-Results of ours:\n%s", s, len(ar), bySubject[s])
			continue
		}
		for _, w := range want {
			if !strings.Contains(ar[0], w) {
				t.Errorf("%s: %q lacks %q", s, ar[0], w)
			}
		}
		id, _, err := authres.Parse(strings.TrimPrefix(ar[0], "Authentication-Results:"))
		if err != nil || id != "mx1.relay.test" {
			t.Errorf("%s: parse %q: %q %v", s, ar[0], id, err)
		}
	}
	if b := bySubject["forged"]; strings.Contains(b, "dmarc=pass header.from=bank.test") || !strings.Contains(b, "Authentication-Results: other.example; spf=pass smtp.mailfrom=x@other.example\r\n") {
		t.Errorf("forged A-R not removed or foreign one not kept:\n%s", b)
	}
	// The signed message arrives as signed: our fields above it, the
	// signature still verifies for the backend.
	if b := bySubject["signed"]; !strings.Contains(b, signed.String()) {
		t.Errorf("signed message changed:\n%s", b)
	}
}
