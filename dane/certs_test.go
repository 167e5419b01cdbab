package dane

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// issued is a certificate made for a test, with its key.
type issued struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// issue makes a certificate from tmpl signed by parent (nil: self-signed).
func issue(t testing.TB, tmpl *x509.Certificate, parent *issued) *issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl.SerialNumber = serial
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &issued{cert: cert, key: key}
}

func newCA(t testing.TB, name string, parent *issued) *issued {
	return issue(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}, parent)
}

// newLeaf makes a server certificate for names; parent nil: self-signed.
func newLeaf(t testing.TB, parent *issued, names ...string) *issued {
	return issue(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: names[0]},
		DNSNames:    names,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, parent)
}

// tlsa returns the record of usage, selector and matching type for c.
func tlsa(usage, selector, mtype uint8, c *x509.Certificate) *dns.TLSA {
	data := c.Raw
	if selector == SelectorSPKI {
		data = c.RawSubjectPublicKeyInfo
	}
	switch mtype {
	case MatchSHA256:
		s := sha256.Sum256(data)
		data = s[:]
	case MatchSHA512:
		s := sha512.Sum512(data)
		data = s[:]
	}
	return &dns.TLSA{
		Hdr:   dns.RR_Header{Name: "_25._tcp.mx.example.org.", Rrtype: dns.TypeTLSA, Class: dns.ClassINET, Ttl: 300},
		Usage: usage, Selector: selector, MatchingType: mtype,
		Certificate: hex.EncodeToString(data),
	}
}

// state is the connection state of a server that presented chain.
func state(chain ...*issued) tls.ConnectionState {
	var cs tls.ConnectionState
	for _, c := range chain {
		cs.PeerCertificates = append(cs.PeerCertificates, c.cert)
	}
	return cs
}

// tlsCert is chain as a server's tls.Certificate, leaf first.
func tlsCert(chain ...*issued) tls.Certificate {
	var tc tls.Certificate
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.cert.Raw)
	}
	tc.PrivateKey = chain[0].key
	return tc
}

// handshake runs a TLS handshake between a server on 127.0.0.1 presenting
// chain and a client with cfg. It returns the client's error and the SNI
// the server received.
func handshake(t *testing.T, cfg *tls.Config, chain ...*issued) (clientErr error, sni string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sniCh := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		s := tls.Server(c, &tls.Config{
			Certificates: []tls.Certificate{tlsCert(chain...)},
			GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
				sniCh <- hello.ServerName
				return nil, nil
			},
		})
		s.HandshakeContext(ctx)
		s.Close()
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, cfg)
	clientErr = tc.HandshakeContext(ctx)
	if clientErr == nil && tc.ConnectionState().Version < tls.VersionTLS12 {
		t.Errorf("TLS version %x", tc.ConnectionState().Version)
	}
	tc.Close()
	<-done
	select {
	case sni = <-sniCh:
	default:
	}
	return clientErr, sni
}
