package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// SelfSignedPair names the files of SelfSigned's pair under dir, made or
// not.
func SelfSignedPair(dir string) Pair {
	return Pair{Cert: filepath.Join(dir, "selfsigned-cert.pem"), Key: filepath.Join(dir, "selfsigned-key.pem")}
}

// SelfSigned returns the pair under dir (selfsigned-cert.pem,
// selfsigned-key.pem), creating it first if it does not exist: an ECDSA
// P-256 key and a certificate for hostname, localhost and 127.0.0.1, valid
// for ten years. It is for the built-in demo and tests: a client that
// verifies certificates refuses it, an opportunistic MX client (and swaks
// --tls) takes it.
func SelfSigned(dir, hostname string) (Pair, error) {
	p := SelfSignedPair(dir)
	if _, err := os.Stat(p.Cert); err == nil {
		if _, err := os.Stat(p.Key); err == nil {
			return p, nil
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Pair{}, fmt.Errorf("certs: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, fmt.Errorf("certs: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return Pair{}, fmt.Errorf("certs: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hostname, Organization: []string{"mxedge self-signed"}},
		DNSNames:     []string{hostname, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return Pair{}, fmt.Errorf("certs: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Pair{}, fmt.Errorf("certs: %w", err)
	}
	// Key first: a certificate without its key is never left behind.
	if err := writeNew(p.Key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})); err != nil {
		return Pair{}, err
	}
	if err := writeNew(p.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})); err != nil {
		return Pair{}, err
	}
	return p, nil
}

// writeNew writes b to path (mode 0600) through a temporary file renamed
// into place.
func writeNew(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}
