package integration

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeCertFiles writes cert's chain and key as PEM files into dir.
func writeCertFiles(t *testing.T, dir, name string, cert tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	// Through a rename, as certbot replaces files.
	for f, b := range map[string][]byte{certFile: chain, keyFile: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})} {
		if err := os.WriteFile(f+".new", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f+".new", f); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// peerCert does EHLO and STARTTLS against addr, trusting pool, and
// returns the certificate the relay served (DER).
func peerCert(t *testing.T, addr string, pool *x509.CertPool) string {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.src.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Fatal("STARTTLS not offered")
	}
	if err := c.StartTLS(&tls.Config{ServerName: "mx1.relay.test", RootCAs: pool}); err != nil {
		t.Fatal(err)
	}
	cs, _ := c.TLSConnectionState()
	return string(cs.PeerCertificates[0].Raw)
}

// STARTTLS on the MX listener with a certificate from a test CA: swaks
// --tls and openssl s_client get it verified, the Received header and the
// accepted log line record the TLS facts, and a certificate renewed on disk
// is served after SIGHUP without a restart.
func TestInboundSTARTTLS(t *testing.T) {
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	caFile, cert := newCA(t, "mx1.relay.test")
	certFile, keyFile := writeCertFiles(t, dir, "mx", cert)
	cfg := strings.Replace(relayConfig(filepath.Join(dir, "data"), mx, be.Addr()), "[[listener]]\n",
		fmt.Sprintf("[[listener]]\ntls_cert = [%q]\ntls_key = [%q]\n", certFile, keyFile), 1)
	admin := freeAddr(t, "127.0.0.1")
	cfg += fmt.Sprintf("\n[admin]\nhttp = %q\n", admin)
	r := startRelay(t, dir, "-config", writeConfig(t, dir, cfg))

	out, code := swaks(t, mx, "--tls", "--from", "s@src.test", "--to", "alice@relay.test",
		"--tls-verify", "--tls-ca-path", caFile, "--tls-sni", "mx1.relay.test")
	if code != 0 || !strings.Contains(out, "=== TLS started") || !strings.Contains(out, "<~  250 2.0.0 Ok: queued as ") {
		t.Fatalf("swaks --tls: exit %d\n%s", code, out)
	}
	msgs, err := be.WaitMessages(1, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	body := string(msgs[0].Body())
	if !strings.Contains(body, "\r\n\t(using TLSv1.3 with cipher TLS_") || !strings.Contains(body, "with ESMTPS id ") {
		t.Errorf("Received header lacks the TLS facts:\n%s", body[:min(len(body), 400)])
	}
	if _, err := r.logs.wait(`msg=accepted|tls="TLSv1.3 TLS_`, 1, 10*time.Second); err != nil {
		t.Error(err)
	}
	// The session is counted once, under its version.
	m := scrape(t, admin)
	if v13, v12 := m[`mxedge_tls_sessions_total{listener="mx",version="TLSv1.3"}`],
		m[`mxedge_tls_sessions_total{listener="mx",version="TLSv1.2"}`]; v13 != 1 || v12 != 0 {
		t.Errorf("mxedge_tls_sessions_total: TLSv1.3 %v, TLSv1.2 %v; want 1 and 0", v13, v12)
	}

	if path, err := exec.LookPath("openssl"); err == nil {
		cmd := exec.Command(path, "s_client", "-starttls", "smtp", "-connect", mx, "-CAfile", caFile,
			"-verify_hostname", "mx1.relay.test", "-verify_return_error", "-brief")
		cmd.Stdin = strings.NewReader("QUIT\r\n")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Verification: OK") {
			t.Errorf("openssl s_client: %v\n%s", err, out)
		}
	} else if os.Getenv("CI") != "" {
		t.Error("openssl is not installed")
	}

	// Renewal: new files in place, then SIGHUP.
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(caPEM)
	before := peerCert(t, mx, pool)
	caFile2, cert2 := newCA(t, "mx1.relay.test")
	writeCertFiles(t, dir, "mx", cert2)
	caPEM2, _ := os.ReadFile(caFile2)
	pool.AppendCertsFromPEM(caPEM2)
	r.cmd.Process.Signal(syscall.SIGHUP)
	if _, err := r.logs.wait("TLS certificate loaded", 1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if after := peerCert(t, mx, pool); after == before || after != string(cert2.Leaf.Raw) {
		t.Error("after renewal the relay still served the old certificate")
	}
	// A broken renewal keeps the working certificate.
	os.WriteFile(certFile, []byte("not a certificate"), 0o600)
	r.cmd.Process.Signal(syscall.SIGHUP)
	if _, err := r.logs.wait("TLS certificates not reloaded", 1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := peerCert(t, mx, pool); got != string(cert2.Leaf.Raw) {
		t.Error("after a broken renewal the renewed certificate is no longer served")
	}
}
