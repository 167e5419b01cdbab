package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/resolver/dnstest"
)

// Operator's story: before switching the MX records, the postmaster runs
// "mxedge doctor". With everything published it is all ✓ and exits 0
// (MTA-STS, optional and not published, is a warning), and the open-relay
// self-test finds the running relay closed; with the DMARC record missing
// it says ✗ and the record to publish; a TLSA record of another key is ✗
// with the "3 1 1" record of ours.
func TestDoctorCommand(t *testing.T) {
	dir := t.TempDir()
	ns, err := dnstest.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := ns.Add(
		"mx1.relay.test. A 192.0.2.10",
		"mx2.relay.test. A 192.0.2.20",
		"10.2.0.192.in-addr.arpa. PTR mx1.relay.test.",
		"relay.test. MX 10 mx1.relay.test.",
		"relay.test. MX 10 mx2.relay.test.",
		`relay.test. TXT "v=spf1 ip4:192.0.2.10 ip4:192.0.2.20 -all"`,
		`_dmarc.relay.test. TXT "v=DMARC1; p=reject; rua=mailto:d@relay.test"`,
		`_smtp._tls.relay.test. TXT "v=TLSRPTv1; rua=mailto:t@relay.test"`,
	); err != nil {
		t.Fatal(err)
	}
	// A certificate valid for 90 days (newCA's last one day: doctor
	// would rightly say "renew").
	certFile, keyFile := longCert(t, dir, "mx1.relay.test")
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	cfgText := strings.Replace(withDNS(relayConfig(filepath.Join(dir, "data"), mx, be.Addr()), ns.Addr()),
		"[[listener]]\n", fmt.Sprintf("[[listener]]\ntls_cert = [%q]\ntls_key = [%q]\n", certFile, keyFile), 1)
	// A DKIM key made by "mxedge dkim keygen", its record published as
	// "mxedge dkim show" prints it.
	keyPath := filepath.Join(dir, "s1.key")
	mustMxedge(t, "dkim", "keygen", "-domain", "relay.test", "-selector", "s1", "-out", keyPath,
		"-config", writeConfig(t, dir, cfgText))
	cfgText += fmt.Sprintf("\n[[dkim_sign]]\ndomain = \"relay.test\"\nselector = \"s1\"\nkey_file = %q\n", keyPath)
	cfg := writeConfig(t, dir, cfgText)
	shown := strings.Split(strings.TrimSpace(mustMxedge(t, "dkim", "show", "-config", cfg)), "\n")
	if err := ns.Add(shown[len(shown)-1]); err != nil {
		t.Fatalf("dkim show: %v\n%s", err, shown)
	}

	args := []string{"doctor", "-config", cfg, "-ip", "192.0.2.10", "-partner", "mx2.relay.test"}
	out, _, code := mxedge(t, args...)
	if code != 0 || !strings.Contains(out, "- open relay self-test: "+mx+" (the relay is not running there") {
		t.Fatalf("doctor, relay not running: exit %d\n%s", code, out)
	}
	startRelay(t, dir, "-config", cfg)
	out, errOut, code := mxedge(t, args...)
	if code != 0 || strings.Contains(out, "✗") || !strings.Contains(out, "✓ hostname resolves back (FCrDNS): 192.0.2.10") {
		t.Fatalf("doctor, all published: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"! MTA-STS record: relay.test (no v=STSv1 record at _mta-sts.relay.test (MTA-STS is optional))",
		"✓ DANE TLSA matches our certificate: _25._tcp.mx1.relay.test (not published (DANE is optional))",
		"✓ relay self-test reaches RCPT: postmaster@relay.test",
		"✓ not an open relay: foreign recipient: postmaster@other.example (RCPT TO:<postmaster@other.example> answered 554 5.7.1",
		"✓ not an open relay: percent hack",
		"✓ not an open relay: source route",
		"✓ not an open relay: quoted local part",
		"✓ not an open relay: bang path",
		"✓ not an open relay: relay domain as sender",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor, all published: no %q\n%s", want, out)
		}
	}
	if be.Conns() != 0 {
		t.Errorf("the self-test reached the backend %d times", be.Conns())
	}
	if !strings.Contains(out, "✓ DKIM selector record matches the key: s1._domainkey.relay.test") {
		t.Errorf("doctor, all published: no DKIM check\n%s", out)
	}
	ns.Remove("_dmarc.relay.test.", dns.TypeTXT)
	out, _, code = mxedge(t, args...)
	if code != 1 || !strings.Contains(out, "✗ DMARC record: relay.test") ||
		!strings.Contains(out, `fix: _dmarc.relay.test. TXT "v=DMARC1; p=quarantine`) {
		t.Errorf("doctor without DMARC: exit %d\n%s", code, out)
	}
	if strings.Count(out, "✗") != 1 {
		t.Errorf("doctor without DMARC: more than the DMARC check failed:\n%s", out)
	}
	ns.Remove("s1._domainkey.relay.test.", dns.TypeTXT)
	out, _, code = mxedge(t, args...)
	if code != 1 || !strings.Contains(out, "✗ DKIM selector record matches the key: s1._domainkey.relay.test") ||
		!strings.Contains(out, `s1._domainkey.relay.test. IN TXT ( "v=DKIM1; k=rsa; p=`) {
		t.Errorf("doctor without the DKIM record: exit %d\n%s", code, out)
	}
	// A TLSA record of another key (the certificate was replaced), under
	// DNSSEC.
	ns.Add("_25._tcp.mx1.relay.test. TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	ns.SetAD(true)
	out, _, code = mxedge(t, args...)
	if code != 1 || !strings.Contains(out, "✗ DANE TLSA matches our certificate: _25._tcp.mx1.relay.test") ||
		!strings.Contains(out, "fix: publish (DNSSEC-signed) _25._tcp.mx1.relay.test. TLSA 3 1 1 ") {
		t.Errorf("doctor with a TLSA record of another key: exit %d\n%s", code, out)
	}
	out, _, _ = mxedge(t, append(args, "-json")...)
	if !strings.Contains(out, `"status": "fail"`) || !strings.Contains(out, `"check": "DMARC record"`) ||
		!strings.Contains(out, `"check": "not an open relay: bang path"`) {
		t.Errorf("doctor -json:\n%s", out)
	}
}

func longCert(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "long.crt"), filepath.Join(dir, "long.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)
	return certFile, keyFile
}
