package submission

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/mxedge/mxedge/queue"
)

// testKeys returns an RSA and an Ed25519 key for domain, written as
// mxedge dkim keygen writes them and read back.
func testKeys(t testing.TB, domain string) []*Key {
	t.Helper()
	dir := t.TempDir()
	var keys []*Key
	for _, kind := range []string{"rsa", "ed25519"} {
		pemKey, err := GenerateKey(kind)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, kind+".key")
		os.WriteFile(file, pemKey, 0o600)
		k, err := LoadKey(domain, kind+"sel", file)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	return keys
}

// queued stores data as a message of origin in a fresh queue and returns
// the queue's view of it.
func queued(t testing.TB, origin queue.Origin, data string) *queue.Message {
	t.Helper()
	q, err := queue.Open(t.TempDir(), queue.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	in, err := q.NewMessage(queue.Envelope{From: "alice@example.org", Rcpts: []queue.Rcpt{{Addr: "x@y.example"}}, Origin: origin})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(in, data)
	if err := in.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	m, err := q.Message(in.ID())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func lookupFor(keys []*Key) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		for _, k := range keys {
			if k.TXTName() == name {
				return []string{k.TXTRecord()}, nil
			}
		}
		return nil, &dkimNotFound{name}
	}
}

type dkimNotFound struct{ name string }

func (e *dkimNotFound) Error() string { return "no record " + e.name }

const testMessage = "Received: from client (unknown [192.0.2.1])\r\n\tby smtp.example.org (mxedge) with ESMTPSA id X; Sun, 01 Mar 2026 10:00:00 +0000\r\n" +
	"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: test\r\nDate: Sun, 01 Mar 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n" +
	"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nHello Bob,\r\n\r\nsee you.  \r\n\r\n\r\n"

// Both signatures verify (go-msgauth's verifier; the independent ones run
// in integration/), relaxed/relaxed, From oversigned.
func TestSignBoth(t *testing.T) {
	keys := testKeys(t, "example.org")
	s := NewSigner(keys)
	m := queued(t, queue.Origin{Listener: "submission", Kind: "submission", AuthUser: "alice@example.org"}, testMessage)
	sig, err := s.Sign(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(sig, []byte("DKIM-Signature:")); n != 2 {
		t.Fatalf("%d signatures:\n%s", n, sig)
	}
	for _, want := range []string{"a=rsa-sha256", "a=ed25519-sha256", "c=relaxed/relaxed", "d=example.org", "s=rsasel", "s=ed25519sel"} {
		if !bytes.Contains(sig, []byte(want)) {
			t.Errorf("no %s in\n%s", want, sig)
		}
	}
	unfolded := strings.NewReplacer("\r\n", "", " ", "", "\t", "").Replace(string(sig))
	if !strings.Contains(unfolded, "h=From:From:Reply-To:Sender:To:Cc:Subject:Date:Message-ID:") {
		t.Errorf("header list: %s", sig)
	}
	signed := append(sig, testMessage...)
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(signed), &dkim.VerifyOptions{LookupTXT: lookupFor(keys)})
	if err != nil || len(vs) != 2 {
		t.Fatalf("%v %v", vs, err)
	}
	for _, v := range vs {
		if v.Err != nil {
			t.Errorf("%s: %v", v.Domain, v.Err)
		}
	}
	// A second From: added later breaks both (oversigning).
	forged := append(sig, strings.Replace(testMessage, "From: Alice", "From: mallory@evil.example\r\nFrom: Alice", 1)...)
	vs, _ = dkim.VerifyWithOptions(bytes.NewReader(forged), &dkim.VerifyOptions{LookupTXT: lookupFor(keys)})
	for _, v := range vs {
		if v.Err == nil {
			t.Errorf("%s verifies with a second From", v.Domain)
		}
	}
}

// Who is signed: submission mail and our reports with a key for their
// From domain (or a parent); MX mail and domains without keys are not.
func TestSignWho(t *testing.T) {
	s := NewSigner(append(testKeys(t, "example.org"), testKeys(t, "relay.example.net")...))
	for _, tc := range []struct {
		name   string
		origin queue.Origin
		from   string
		signed bool
	}{
		{"submission", queue.Origin{Listener: "sub", Kind: "submission"}, "alice@example.org", true},
		{"submissions", queue.Origin{Listener: "sub465", Kind: "submissions"}, "alice@example.org", true},
		{"subdomain with the parent's key", queue.Origin{Listener: "sub", Kind: "submission"}, "a@lists.example.org", true},
		{"no key", queue.Origin{Listener: "sub", Kind: "submission"}, "a@other.example", false},
		{"from the MX", queue.Origin{Listener: "mx", Kind: "mx"}, "alice@example.org", false},
		{"our bounce", queue.Origin{}, "MAILER-DAEMON@relay.example.net", true},
	} {
		m := queued(t, tc.origin, "From: "+tc.from+"\r\nSubject: x\r\n\r\nbody\r\n")
		sig, err := s.Sign(context.Background(), m)
		if err != nil || (len(sig) > 0) != tc.signed {
			t.Errorf("%s: signed %v (%v), want %v", tc.name, len(sig) > 0, err, tc.signed)
		}
	}
	// mxedge_dkim_signed_total counts the signed messages only.
	if c := s.Counts(); c != (SignerCounts{Signed: 4}) {
		t.Errorf("counts %+v, want 4 signed, 0 failed", c)
	}
}

// A weak RSA key is refused.
func TestWeakKey(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	if _, err := parseKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err == nil || !strings.Contains(err.Error(), "at least 2048") {
		t.Errorf("1024-bit key: %v", err)
	}
}

// BenchmarkSign is the signing cost per 10 KiB message, rsa-sha256 and
// ed25519-sha256 together, read from the queue as delivery reads it.
func BenchmarkSign(b *testing.B) {
	s := NewSigner(testKeys(b, "example.org"))
	body := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n", 140) // ~10 KiB
	m := queued(b, queue.Origin{Listener: "sub", Kind: "submission"}, "From: alice@example.org\r\nTo: x@y.example\r\nSubject: bench\r\n\r\n"+body)
	b.SetBytes(m.Size)
	b.ResetTimer()
	for range b.N {
		if sig, err := s.Sign(context.Background(), m); err != nil || len(sig) == 0 {
			b.Fatal(err)
		}
	}
}

// SetKeys (a reload) applies to the next message: the new selector signs
// it, a domain whose key was removed goes unsigned, the counts go on.
func TestSignerSetKeys(t *testing.T) {
	s := NewSigner(testKeys(t, "example.org"))
	msg := func() *queue.Message {
		return queued(t, queue.Origin{Listener: "sub", Kind: "submission"}, "From: alice@example.org\r\nSubject: x\r\n\r\nbody\r\n")
	}
	if sig, err := s.Sign(context.Background(), msg()); err != nil || !strings.Contains(string(sig), "s=rsasel;") {
		t.Fatalf("before SetKeys: %v %q", err, sig)
	}
	k := testKeys(t, "example.org")[1] // ed25519
	k.Selector = "rotated"
	s.SetKeys([]*Key{k})
	sig, err := s.Sign(context.Background(), msg())
	if err != nil || !strings.Contains(string(sig), "s=rotated;") || strings.Contains(string(sig), "s=rsasel;") {
		t.Errorf("after SetKeys: %v %q, want only s=rotated", err, sig)
	}
	s.SetKeys(nil)
	if sig, err := s.Sign(context.Background(), msg()); err != nil || len(sig) > 0 {
		t.Errorf("after SetKeys(nil): %v %q, want unsigned", err, sig)
	}
	if c := s.Counts(); c.Signed != 2 {
		t.Errorf("counts %+v, want 2 signed", c)
	}
}

// Without any key (none configured, or a reload took them all away) a
// submitted message is not read at all: it goes unsigned. The message
// here cannot be opened, so reading it would fail the attempt.
func TestSignerWithoutKeysReadsNothing(t *testing.T) {
	for _, s := range []*Signer{NewSigner(nil), func() *Signer { s := NewSigner(testKeys(t, "example.org")); s.SetKeys(nil); return s }()} {
		m := &queue.Message{ID: "x", Origin: queue.Origin{Listener: "sub", Kind: "submission"}}
		if sig, err := s.Sign(context.Background(), m); err != nil || len(sig) > 0 {
			t.Errorf("Sign without keys: %v %q, want nothing and no error", err, sig)
		}
	}
}
