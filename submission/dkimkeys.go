package submission

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// A DKIM key: one [[dkim_sign]] entry (domain, selector, key file). The
// key file is PEM, PKCS#8 ("PRIVATE KEY", what mxedge dkim keygen and
// openssl genpkey write) or PKCS#1 ("RSA PRIVATE KEY", opendkim-genkey);
// RSA keys need at least 2048 bits (RFC 8301 allows 1024, shared/
// PRINCIPLES.md asks 2048), Ed25519 keys are RFC 8463's.
type Key struct {
	Domain   string
	Selector string
	File     string
	Signer   crypto.Signer
}

// Algorithm is "rsa-sha256" or "ed25519-sha256".
func (k *Key) Algorithm() string {
	if _, ok := k.Signer.Public().(ed25519.PublicKey); ok {
		return "ed25519-sha256"
	}
	return "rsa-sha256"
}

// LoadKey reads the key file of domain/selector.
func LoadKey(domain, selector, file string) (*Key, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("dkim key %s: %w", file, err)
	}
	s, err := parseKey(data)
	if err != nil {
		return nil, fmt.Errorf("dkim key %s: %w", file, err)
	}
	return &Key{Domain: strings.ToLower(domain), Selector: selector, File: file, Signer: s}, nil
}

func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q: want PRIVATE KEY or RSA PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, err
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits: at least 2048 are needed", k.N.BitLen())
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("key type %T: want RSA or Ed25519", key)
}

// GenerateKey returns a new key of kind "rsa" (2048 bits) or "ed25519" as
// PKCS#8 PEM.
func GenerateKey(kind string) ([]byte, error) {
	var key any
	var err error
	switch kind {
	case "rsa":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("key type %q: want rsa or ed25519", kind)
	}
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// TXTName is the DNS name of the key's record: selector._domainkey.domain.
func (k *Key) TXTName() string { return k.Selector + "._domainkey." + k.Domain }

// TXTRecord is the key's DNS TXT record value (RFC 6376 section 3.6.1,
// RFC 8463 section 4.2).
func (k *Key) TXTRecord() string {
	switch pub := k.Signer.Public().(type) {
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	case *rsa.PublicKey:
		der, _ := x509.MarshalPKIXPublicKey(pub)
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	}
	return ""
}

// ZoneLine is the record as a zone file line, the value split into
// strings of at most 255 octets (RFC 1035 character-strings), as a 2048
// bit RSA key needs.
func (k *Key) ZoneLine() string {
	v := k.TXTRecord()
	var parts []string
	for len(v) > 255 {
		parts = append(parts, `"`+v[:255]+`"`)
		v = v[255:]
	}
	parts = append(parts, `"`+v+`"`)
	return k.TXTName() + ". IN TXT ( " + strings.Join(parts, " ") + " )"
}
