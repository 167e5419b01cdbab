package mtasts

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/internal/fakeclock"
	"github.com/mxedge/mxedge/mtasts/ststest"
	"github.com/mxedge/mxedge/resolver"
	"github.com/mxedge/mxedge/resolver/dnstest"
)

// clock is a fake clock for policy ages.
type clock = fakeclock.Clock

func newClock() *clock { return fakeclock.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)) }

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mxedge test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// leaf issues a server certificate for names.
func (ca *testCA) leaf(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// certNames are the names in the policy server's certificate: every
// domain of the tests but badcert.example.
var certNames = []string{
	"mta-sts.example.org", "mta-sts.example.net", "mta-sts.testing.example",
	"mta-sts.none.example", "mta-sts.redirect.example", "mta-sts.big.example",
	"mta-sts.bad.example", "mta-sts.busy.example",
}

// logBuf collects log lines, safe for concurrent use.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// env is one test's world: a DNS server, the policy server, a resolver,
// an HTTP client that reaches the policy server, a fake clock.
type env struct {
	t      *testing.T
	dns    *dnstest.Server
	res    *resolver.Resolver
	srv    *ststest.Server
	clock  *clock
	client *http.Client
	log    *logBuf
}

func newEnv(t *testing.T) *env {
	t.Helper()
	d := dnstest.StartTB(t)
	ca := newCA(t)
	e := &env{
		t:   t,
		dns: d,
		res: resolver.New(resolver.Config{Servers: []string{d.Addr()}, CacheSize: -1, Timeout: 2 * time.Second}),
		// Every mta-sts.<domain> of the tests is on 127.0.0.2.
		srv:   ststest.Start(t, "127.0.0.2:0", ca.leaf(t, certNames...)),
		clock: newClock(),
		log:   &logBuf{},
	}
	// The client resolves mta-sts.<domain> through the test DNS server,
	// dials the policy server's port instead of 443, and trusts the test
	// CA only.
	e.client = NewClient(ClientOptions{Resolver: e.res, RootCAs: ca.pool, Port: e.srv.Port()})
	return e
}

// newCache returns a Cache of e with the cache file in dir ("" none).
func (e *env) newCache(dir string) *Cache {
	e.t.Helper()
	c, err := New(Options{
		Resolver:   e.res,
		HTTPClient: e.client,
		Dir:        dir,
		Now:        e.clock.Now,
		Log:        slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// publish publishes the TXT record with id for domain, the address of
// mta-sts.<domain> (the policy server), and the policy body.
func (e *env) publish(domain, id, body string) {
	e.t.Helper()
	e.setTXT(domain, "v=STSv1; id="+id+";")
	e.dns.Remove("mta-sts."+domain+".", dns.TypeA)
	if err := e.dns.Add(fmt.Sprintf("mta-sts.%s. 300 IN A 127.0.0.2", domain)); err != nil {
		e.t.Fatal(err)
	}
	e.srv.Set(domain, ststest.Response{Body: body})
}

// setTXT replaces the TXT records of _mta-sts.<domain>; no record if
// txts is empty.
func (e *env) setTXT(domain string, txts ...string) {
	e.t.Helper()
	name := "_mta-sts." + domain + "."
	e.dns.Remove(name, dns.TypeTXT)
	for _, txt := range txts {
		if err := e.dns.Add(fmt.Sprintf("%s 300 IN TXT %q", name, txt)); err != nil {
			e.t.Fatal(err)
		}
	}
}

// get calls c.Get with a deadline and fails the test on error.
func (e *env) get(c *Cache, domain string) *Policy {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := c.Get(ctx, domain)
	if err != nil {
		e.t.Fatalf("Get(%s): %v", domain, err)
	}
	return p
}

// policyText builds a policy file.
func policyText(mode string, maxAge int, mx ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: STSv1\r\nmode: %s\r\n", mode)
	for _, m := range mx {
		fmt.Fprintf(&b, "mx: %s\r\n", m)
	}
	fmt.Fprintf(&b, "max_age: %d\r\n", maxAge)
	return b.String()
}
