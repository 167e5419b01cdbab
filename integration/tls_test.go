package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxedge/mxedge/resolver/dnstest"
)

// tlsReceiver is a remote MX host with STARTTLS: go-smtp's server, an
// implementation independent of mxedge's client.
type tlsReceiver struct {
	mu   sync.Mutex
	msgs []received
}

type received struct {
	rcpt, helo string
	tls        bool
}

func (b *tlsReceiver) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &tlsSession{b: b, c: c}, nil
}

func (b *tlsReceiver) received() []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]received(nil), b.msgs...)
}

type tlsSession struct {
	b    *tlsReceiver
	c    *smtp.Conn
	rcpt string
}

func (s *tlsSession) Reset()                                    { s.rcpt = "" }
func (s *tlsSession) Logout() error                             { return nil }
func (s *tlsSession) Mail(string, *smtp.MailOptions) error      { return nil }
func (s *tlsSession) Rcpt(to string, _ *smtp.RcptOptions) error { s.rcpt = to; return nil }
func (s *tlsSession) Data(r io.Reader) error {
	io.Copy(io.Discard, r)
	_, isTLS := s.c.TLSConnectionState()
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, received{rcpt: s.rcpt, helo: s.c.Hostname(), tls: isTLS})
	s.b.mu.Unlock()
	return nil
}

// newCA returns a test CA, written as PEM to a file for SSL_CERT_FILE, and
// a server certificate from it for names.
func newCA(t *testing.T, names ...string) (caFile string, cert tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mxedge test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key, Leaf: leaf}
}

// Relay C returns messages to senders at domains with different TLS
// policies, all served by one remote MX host with STARTTLS and a
// certificate for mx.tls.test from a test CA (trusted through
// SSL_CERT_FILE): PKIX "verify" passes for the right name and defers for
// a wrong one; DANE-EE (DNSSEC-signed TLSA, AD bit from the test DNS
// server) passes for the right key and defers for another. Every
// delivery log line names TLS version and policy.
func TestOutboundTLSPolicies(t *testing.T) {
	caFile, cert := newCA(t, "mx.tls.test")
	t.Setenv("SSL_CERT_FILE", caFile)
	_, other := newCA(t, "mx.tls.test")
	spki := func(c tls.Certificate) string {
		sum := sha256.Sum256(c.Leaf.RawSubjectPublicKeyInfo)
		return hex.EncodeToString(sum[:])
	}

	rx := &tlsReceiver{}
	srv := smtp.NewServer(rx)
	srv.Domain = "mx.tls.test"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.ReadTimeout, srv.WriteTimeout = 30*time.Second, 30*time.Second
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	dns := dnstest.StartTB(t,
		"tls.test. 300 IN MX 10 mx.tls.test.",
		"mx.tls.test. 300 IN A 127.0.0.2",
		"badname.test. 300 IN MX 10 mx.badname.test.",
		"mx.badname.test. 300 IN A 127.0.0.2",
		"dane.test. 300 IN MX 10 mx.dane.test.",
		"mx.dane.test. 300 IN A 127.0.0.2",
		fmt.Sprintf("_%s._tcp.mx.dane.test. 300 IN TLSA 3 1 1 %s", port, spki(cert)),
		"danebad.test. 300 IN MX 10 mx.danebad.test.",
		"mx.danebad.test. 300 IN A 127.0.0.2",
		fmt.Sprintf("_%s._tcp.mx.danebad.test. 300 IN TLSA 3 1 1 %s", port, spki(other)),
	)
	dns.SetAD(true)

	backend := startBackend(t, "127.0.0.3:0")
	cAddr := freeAddr(t, "127.0.0.4")
	cDir := t.TempDir()
	cfg := relayConfig(filepath.Join(cDir, "data"), cAddr, backend.Addr()) + fmt.Sprintf(`
[delivery]
mx_port = %s
mta_sts = false

[tls_policy]
"tls.test" = "verify"
"badname.test" = "verify"
`, port)
	cfg = strings.Replace(cfg, `hostname = "mx1.relay.test"`, `hostname = "relay-c.test"`, 1)
	cfg = withDNS(cfg, dns.Addr())
	c := startRelay(t, cDir, "-config", writeConfig(t, cDir, cfg))

	for _, domain := range []string{"tls.test", "badname.test", "dane.test", "danebad.test"} {
		out, code := swaks(t, cAddr, "--from", "sender@"+domain, "--to", "nobody@relay.test")
		if code != 0 {
			t.Fatalf("swaks (%d):\n%s", code, out)
		}
	}
	for _, want := range []string{
		"msg=delivery|to=<sender@tls.test>|tls=TLSv1.3/|policy=verify|status=sent",
		"msg=delivery|to=<sender@dane.test>|tls=TLSv1.3/|policy=dane|status=sent",
		"msg=delivery|to=<sender@badname.test>|dsn=4.7.5|status=deferred|TLS policy verify: certificate of mx.badname.test",
		"msg=delivery|to=<sender@danebad.test>|dsn=4.7.5|status=deferred|TLS policy dane: certificate of mx.danebad.test",
	} {
		if _, err := c.logs.wait(want, 1, 30*time.Second); err != nil {
			t.Error(err)
		}
	}
	got := rx.received()
	if len(got) != 2 {
		t.Fatalf("remote MX got %+v, want the two messages that passed", got)
	}
	for _, m := range got {
		if !m.tls || m.helo != "relay-c.test" || (m.rcpt != "sender@tls.test" && m.rcpt != "sender@dane.test") {
			t.Errorf("received %+v, want over TLS after EHLO relay-c.test", m)
		}
	}
}
