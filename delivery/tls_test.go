package delivery

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mxedge/mxedge/internal/smtptest"
)

// TLS tests: fake MX hosts with STARTTLS and certificates from a test CA,
// behind the test DNS server.

// tlsZone: each domain has one MX host, or two of different preference.
var tlsZone = []string{
	"tls.example. 300 IN MX 10 mx1.tls.example.",
	"tls.example. 300 IN MX 20 mx2.tls.example.",
	"mx1.tls.example. 300 IN A 127.0.0.2",
	"mx2.tls.example. 300 IN A 127.0.0.3",
	"one.example. 300 IN MX 10 mx1.tls.example.",
}

// testCA issues server certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mxedge test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// leaf issues a server certificate for names (host names or IP
// addresses).
func (ca *testCA) leaf(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}
}

// spkiSHA256 is the data of a "3 1 1" TLSA record for cert.
func spkiSHA256(cert tls.Certificate) string {
	sum := sha256.Sum256(cert.Leaf.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

func serverTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// commands returns the command lines s received, "TLS: " in front of
// those sent over TLS.
func commands(s *smtptest.Server) []string {
	var lines []string
	for _, l := range s.Transcript() {
		switch {
		case !l.Client:
		case l.TLS:
			lines = append(lines, "TLS: "+l.Text)
		default:
			lines = append(lines, l.Text)
		}
	}
	return lines
}

// mails counts the MAIL commands s received, in plaintext and over TLS.
func mails(s *smtptest.Server) (plain, tlsed int) {
	for _, l := range commands(s) {
		switch {
		case strings.HasPrefix(l, "MAIL FROM:"):
			plain++
		case strings.HasPrefix(l, "TLS: MAIL FROM:"):
			tlsed++
		}
	}
	return plain, tlsed
}

// notTLS is a STARTTLS reply followed by bytes that are not TLS.
func notTLS(s *smtptest.Session, _ string) string {
	s.Write([]byte("220 2.0.0 Ready to start TLS\r\nthis is not TLS\r\n"))
	return smtptest.Hangup
}

// withPolicy sets the tls policy of domain.
func withPolicy(domain, level string) func(*Options) {
	return func(o *Options) { o.TLS.Domains = map[string]string{domain: level} }
}

func withRoots(pool *x509.CertPool) func(*Options) { return func(o *Options) { o.RootCAs = pool } }

func TestSTARTTLSWithTestCA(t *testing.T) {
	ca := newTestCA(t)
	hops, port := startMXServers(t)
	hops[0].SetTLS(serverTLS(ca.leaf(t, "mx1.tls.example")))
	for _, tc := range []struct {
		level, policy string
	}{{"verify", "policy=verify"}, {"may", "policy=may"}, {"encrypt", "policy=encrypt"}} {
		e := newMXEnv(t, tlsZone, port, withPolicy("one.example", tc.level), withRoots(ca.pool))
		r := e.deliver(t, "alice@one.example")[0]
		if r.Code != 250 || !strings.Contains(r.Relay, "mx1.tls.example:"+strconv.Itoa(port)+" [127.0.0.2:") ||
			!strings.Contains(r.Relay, "tls=TLSv1.3/TLS_") || !strings.HasSuffix(r.Relay, tc.policy) {
			t.Errorf("%s: %+v", tc.level, r)
		}
	}
	// The plaintext EHLO carries the configured name (not go-smtp's
	// "localhost"), then STARTTLS, then EHLO again over TLS; the mail goes
	// over TLS only.
	lines := commands(hops[0])
	want := []string{"EHLO relay.mxedge.test", "STARTTLS", "TLS: EHLO relay.mxedge.test"}
	if len(lines) < 4 || strings.Join(lines[:3], "\n") != strings.Join(want, "\n") || !strings.HasPrefix(lines[3], "TLS: MAIL FROM:<sender@src.test>") {
		t.Errorf("dialogue %q", lines)
	}
	if plain, tlsed := mails(hops[0]); plain != 0 || tlsed != 3 {
		t.Errorf("MAIL commands: %d plaintext, %d over TLS", plain, tlsed)
	}
}

// "verify" checks the certificate against the roots and the MX host
// name; a failure defers with 4.7.5 and moves on to the next MX host.
func TestVerifyFailureTriesNextMX(t *testing.T) {
	ca := newTestCA(t)
	hops, port := startMXServers(t)
	hops[0].SetTLS(serverTLS(ca.leaf(t, "wrong.example")))
	hops[1].SetTLS(serverTLS(ca.leaf(t, "mx2.tls.example")))
	e := newMXEnv(t, tlsZone, port, withPolicy("tls.example", "verify"), withRoots(ca.pool))
	r := e.deliver(t, "alice@tls.example")[0]
	if r.Code != 250 || !strings.HasPrefix(r.Relay, "mx2.tls.example:") {
		t.Fatalf("%+v, want delivery at mx2", r)
	}
	if plain, tlsed := mails(hops[0]); plain+tlsed != 0 {
		t.Errorf("mail sent to the host with the wrong certificate")
	}
	// Untrusted CA (the system roots): both fail, deferred.
	e = newMXEnv(t, tlsZone, port, withPolicy("tls.example", "verify"))
	r = e.deliver(t, "alice@tls.example")[0]
	if r.Code != 0 || r.Enhanced != "4.7.5" || !strings.Contains(r.Text, "TLS policy verify: certificate of mx2.tls.example") {
		t.Errorf("untrusted: %+v", r)
	}
}

// Plaintext only where no policy requires TLS: "may" falls back to
// plaintext on a new connection when the handshake fails, and continues
// in plaintext when STARTTLS is not offered or refused; "encrypt" and
// "verify" defer (4.7.5 handshake, 4.7.4 not offered or refused).
func TestPlaintextFallbackOnlyUnderMay(t *testing.T) {
	ca := newTestCA(t)
	good := serverTLS(ca.leaf(t, "mx1.tls.example"))
	refused := smtptest.Reply("454 4.7.0 TLS not available")
	for _, tc := range []struct {
		name     string
		tls      *tls.Config   // offered with STARTTLS, nil: not offered
		starttls smtptest.Hook // the reply to STARTTLS, nil: 220
		level    string
		code     int
		enh      string
		conns    int
		relay    string
		plainM   int
	}{
		{"handshake fails, may", good, notTLS, "may", 250, "", 2, "tls=none policy=may (handshake failed, plaintext)", 1},
		{"handshake fails, encrypt", good, notTLS, "encrypt", 0, "4.7.5", 1, "", 0},
		{"not offered, may", nil, nil, "may", 250, "", 1, "tls=none policy=may", 1},
		{"not offered, encrypt", nil, nil, "encrypt", 0, "4.7.4", 1, "", 0},
		{"refused, may", good, refused, "may", 250, "", 1, "tls=none policy=may", 1},
		{"refused, verify", good, refused, "verify", 0, "4.7.4", 1, "", 0},
		{"offered, none", good, nil, "none", 250, "", 1, "tls=none policy=none", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hops, port := startMXServers(t)
			hops[0].SetTLS(tc.tls)
			hops[0].On(smtptest.StartTLS, tc.starttls)
			e := newMXEnv(t, tlsZone, port, withPolicy("one.example", tc.level), withRoots(ca.pool))
			r := e.deliver(t, "alice@one.example")[0]
			if r.Code != tc.code || tc.enh != "" && r.Enhanced != tc.enh || tc.relay != "" && !strings.HasSuffix(r.Relay, tc.relay) {
				t.Errorf("%+v", r)
			}
			if n := hops[0].Conns(); n != tc.conns {
				t.Errorf("%d connections, want %d", n, tc.conns)
			}
			if plain, _ := mails(hops[0]); plain != tc.plainM {
				t.Errorf("%d MAIL in plaintext, want %d", plain, tc.plainM)
			}
			if tc.level == "none" && strings.Contains(strings.Join(commands(hops[0]), "\n"), "STARTTLS") {
				t.Error("STARTTLS under tls policy none")
			}
		})
	}
}

// fakeSTS is a fixed MTA-STS policy per domain.
type fakeSTS map[string]*STSPolicy

func (f fakeSTS) Policy(_ context.Context, domain string) (*STSPolicy, error) {
	if p, ok := f[domain]; ok && p == nil {
		return nil, errors.New("TXT lookup: SERVFAIL")
	}
	return f[domain], nil
}

func stsPolicy(mode string, patterns ...string) *STSPolicy {
	return &STSPolicy{Mode: mode, ID: "20251123", Match: func(mx string) bool {
		for _, p := range patterns {
			if p == mx {
				return true
			}
		}
		return false
	}}
}

func TestMTASTS(t *testing.T) {
	ca := newTestCA(t)
	var logs syncBuffer
	for _, tc := range []struct {
		name   string
		cert   string // name in mx1's certificate
		policy *STSPolicy
		code   int
		enh    string
		text   string // in Text (deferred) or Relay (delivered)
		mails  int
	}{
		{"enforce, matching certificate", "mx1.tls.example", stsPolicy("enforce", "mx1.tls.example"), 250, "", "policy=mta-sts", 1},
		{"enforce, mismatching certificate", "other.example", stsPolicy("enforce", "mx1.tls.example"), 0, "4.7.5", "TLS policy mta-sts: certificate of mx1.tls.example", 0},
		{"enforce, MX not in policy", "mx1.tls.example", stsPolicy("enforce", "mx9.tls.example"), 0, "4.7.5", "MX host mx1.tls.example does not match the MTA-STS policy of one.example", 0},
		{"testing, mismatching certificate", "other.example", stsPolicy("testing", "mx1.tls.example"), 250, "", "policy=may+mta-sts-testing", 1},
		{"policy unknown", "mx1.tls.example", nil, 0, "4.4.3", "MTA-STS policy of one.example unknown", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hops, port := startMXServers(t)
			hops[0].SetTLS(serverTLS(ca.leaf(t, tc.cert)))
			e := newMXEnv(t, tlsZone, port, withRoots(ca.pool), func(o *Options) { o.TLS.STS = fakeSTS{"one.example": tc.policy} })
			e.d.log = slog.New(slog.NewTextHandler(&logs, nil))
			r := e.deliver(t, "alice@one.example")[0]
			if r.Code != tc.code || tc.enh != "" && r.Enhanced != tc.enh || !strings.Contains(r.Text+r.Relay, tc.text) {
				t.Errorf("%+v", r)
			}
			if _, tlsed := mails(hops[0]); tlsed != tc.mails {
				t.Errorf("%d messages over TLS, want %d", tlsed, tc.mails)
			}
		})
	}
	if !strings.Contains(logs.String(), `msg="MTA-STS testing: certificate would not be accepted"`) {
		t.Errorf("testing mode logged no failure:\n%s", logs.String())
	}
}

// Smarthost: TLS required and verified, then AUTH PLAIN, never MX.
func TestSmarthost(t *testing.T) {
	ca := newTestCA(t)
	hop := startServer(t, "127.0.0.6:0")
	hop.SetTLS(serverTLS(ca.leaf(t, "127.0.0.6")))
	hop.SetAuth(func(user, pass string) bool { return user == "relay" && pass == "s3cret:x" })
	dir := t.TempDir()
	authFile := dir + "/auth"
	if err := writeFile(authFile, "relay:s3cret:x\n"); err != nil {
		t.Fatal(err)
	}
	d := New(testOptions(withRoots(ca.pool), func(o *Options) {
		o.Smarthost = hop.Addr()
		o.SmarthostAuthFile = authFile
	}))
	defer d.Close()
	rs := d.Deliver(context.Background(), spooled(t, "s@src.test", "x\r\n", "a@anywhere.example", "b@elsewhere.example"))
	for _, r := range rs {
		if r.Code != 250 || !strings.Contains(r.Relay, "policy=smarthost-verify") || r.Class != ClassSmarthost {
			t.Errorf("%+v", r)
		}
	}
	lines := commands(hop)
	if len(lines) < 4 || lines[1] != "STARTTLS" || !strings.HasPrefix(lines[3], "TLS: AUTH PLAIN ") {
		t.Errorf("dialogue %q", lines)
	}
	// Wrong password: deferred, 4.7.0.
	writeFile(authFile, "relay:wrong\n")
	d.Close()
	r := d.Deliver(context.Background(), spooled(t, "s@src.test", "x\r\n", "a@anywhere.example"))[0]
	if r.Code != 0 || r.Enhanced != "4.7.0" || !strings.Contains(r.Text, "authentication as relay refused: 535") || r.Class != ClassSmarthost {
		t.Errorf("wrong password: %+v", r)
	}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }

// SetTLSPolicy (a reload) applies to the next delivery: a plaintext-only
// MX host takes mail under "may"; once the domain is set to "encrypt"
// the next message is deferred (4.7.4) and nothing more arrives; the
// same after a switch to MTA-STS "enforce" for another MX name.
func TestSetTLSPolicyNextDelivery(t *testing.T) {
	hops, port := startMXServers(t) // no STARTTLS offered
	e := newMXEnv(t, tlsZone, port)
	if r := e.deliver(t, "alice@one.example")[0]; r.Code != 250 {
		t.Fatalf("under may: %+v", r)
	}
	e.d.SetTLSPolicy(TLSPolicy{Domains: map[string]string{"one.example": "encrypt"}})
	if r := e.deliver(t, "alice@one.example")[0]; r.Code != 0 || r.Enhanced != "4.7.4" {
		t.Errorf("after SetTLSPolicy encrypt: %+v, want deferred 4.7.4", r)
	}
	e.d.SetTLSPolicy(TLSPolicy{STS: fakeSTS{"one.example": stsPolicy("enforce", "other.example")}})
	if r := e.deliver(t, "alice@one.example")[0]; r.Code != 0 || r.Enhanced != "4.7.5" {
		t.Errorf("after SetTLSPolicy with MTA-STS enforce: %+v, want deferred 4.7.5", r)
	}
	if plain, _ := mails(hops[0]); plain != 1 {
		t.Errorf("%d messages delivered in plaintext, want only the one before the change", plain)
	}
}
