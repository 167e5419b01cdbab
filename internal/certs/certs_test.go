package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writePair writes a self-signed certificate for cn with key to dir.
func writePair(t *testing.T, dir, name, cn string, key crypto.Signer) Pair {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		DNSNames: []string{cn}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := Pair{Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+".key")}
	os.WriteFile(p.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(p.Key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return p
}

func ecKey(t *testing.T) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func rsaKey(t *testing.T) crypto.Signer {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// handshake runs a TLS handshake against cfg with the client's cipher
// preferences and returns the server certificate's common name.
func handshake(t *testing.T, cfg *tls.Config, client *tls.Config) string {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go tls.Server(a, cfg).Handshake()
	c := tls.Client(b, client)
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// The certificate is chosen by the client's hello: an RSA-only client gets
// the RSA pair, others the ECDSA one.
func TestChosenByHello(t *testing.T) {
	dir := t.TempDir()
	s, err := Open([]Pair{writePair(t, dir, "ec", "ecdsa.test", ecKey(t)), writePair(t, dir, "rsa", "rsa.test", rsaKey(t))}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.Config(tls.VersionTLS12)
	rsaOnly := &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}}
	if cn := handshake(t, cfg, rsaOnly); cn != "rsa.test" {
		t.Errorf("RSA-only client got %s", cn)
	}
	if cn := handshake(t, cfg, &tls.Config{InsecureSkipVerify: true}); cn != "ecdsa.test" {
		t.Errorf("modern client got %s", cn)
	}
	if n := len(s.Leaves()); n != 2 {
		t.Errorf("%d leaves", n)
	}
}

// A renewed certificate is served after the files change; a broken one
// keeps the old and is not retried until the files change again.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	p := writePair(t, dir, "mx", "old.test", ecKey(t))
	s, err := Open([]Pair{p}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.Config(tls.VersionTLS12)
	client := &tls.Config{InsecureSkipVerify: true}
	if tried, _ := s.ReloadIfChanged(); tried {
		t.Error("reloaded unchanged files")
	}
	writePair(t, dir, "mx", "new.test", ecKey(t))
	future := time.Now().Add(time.Minute) // a new mtime even on coarse clocks
	os.Chtimes(p.Cert, future, future)
	if tried, err := s.ReloadIfChanged(); !tried || err != nil {
		t.Fatalf("reload: %v %v", tried, err)
	}
	if cn := handshake(t, cfg, client); cn != "new.test" {
		t.Errorf("after renewal: %s", cn)
	}
	// A half-written renewal: the key no longer matches.
	writePair(t, dir, "other", "x.test", ecKey(t))
	os.Rename(filepath.Join(dir, "other.key"), p.Key)
	if tried, err := s.ReloadIfChanged(); !tried || err == nil {
		t.Fatalf("broken pair: %v %v", tried, err)
	}
	if cn := handshake(t, cfg, client); cn != "new.test" {
		t.Errorf("after a broken renewal: %s", cn)
	}
	if tried, _ := s.ReloadIfChanged(); tried {
		t.Error("the same broken files were tried again")
	}
	if err := s.Reload(); err == nil {
		t.Error("explicit reload of a broken pair succeeded")
	}
}

func TestSelfSigned(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	p, err := SelfSigned(dir, "mx.example.test")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open([]Pair{p}, nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf := s.Leaves()[0]
	if err := leaf.VerifyHostname("mx.example.test"); err != nil {
		t.Error(err)
	}
	if fi, _ := os.Stat(p.Key); fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", fi.Mode())
	}
	// At the next start the same pair is used.
	p2, err := SelfSigned(dir, "mx.example.test")
	if err != nil || p2 != p {
		t.Fatal(p2, err)
	}
	s2, _ := Open([]Pair{p2}, nil)
	if !s2.Leaves()[0].Equal(leaf) {
		t.Error("the pair was generated again")
	}
}
