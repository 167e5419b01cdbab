package msgauth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// need returns the path of a program a test drives, or skips the test
// outside CI (.ci/run installs python3-dkim, opendkim and opendkim-tools).
func need(t *testing.T, path string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("%s not installed (apt-get install python3-dkim opendkim; .ci/run does)", path)
		}
		t.Fatalf("%s not installed", path)
	}
	return path
}

// Messages signed by independent signers verify: python3-dkim's dkimsign
// (rsa-sha256 and ed25519-sha256) and opendkim in sign mode (rsa-sha256),
// relaxed and simple canonicalisation; one byte changed in the body or in
// a signed header field fails.
func TestDKIMIndependentSigners(t *testing.T) {
	dkimsign := need(t, "/usr/bin/dkimsign")
	opendkim := need(t, "/usr/sbin/opendkim")
	dir := t.TempDir()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaFile := filepath.Join(dir, "rsa.pem")
	os.WriteFile(rsaFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}), 0o600)
	_, ek, _ := ed25519.GenerateKey(rand.Reader)
	edFile := filepath.Join(dir, "ed.key")
	os.WriteFile(edFile, []byte(base64.StdEncoding.EncodeToString(ek.Seed())+"\n"), 0o600)
	msgFile := filepath.Join(dir, "msg")
	os.WriteFile(msgFile, []byte(plainMsg), 0o600)

	_, r := startDNS(t,
		txt("py._domainkey.example.org.", rsaRecord(t, rk)),
		txt("pyed._domainkey.example.org.", edRecord(ek)),
		txt("od._domainkey.example.org.", rsaRecord(t, rk)),
	)
	d := &DKIM{DNS: r}

	type signer struct {
		name string
		sign func(canon string) string
	}
	py := func(sel, alg, key string) func(string) string {
		return func(canon string) string {
			cmd := exec.Command(dkimsign, "--hcanon", canon, "--bcanon", canon, "--signalg", alg, sel, "example.org", key)
			cmd.Stdin = strings.NewReader(plainMsg)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("dkimsign: %v", err)
			}
			return string(out)
		}
	}
	od := func(canon string) string {
		conf := filepath.Join(dir, "od-"+canon+".conf")
		os.WriteFile(conf, []byte("Mode s\nSyslog no\nDomain example.org\nSelector od\nKeyFile "+rsaFile+
			"\nCanonicalization "+canon+"/"+canon+"\nRequireSafeKeys no\n"), 0o600)
		out, err := exec.Command(opendkim, "-x", conf, "-t", msgFile).Output()
		if err != nil {
			t.Fatalf("opendkim -t: %v\n%s", err, out)
		}
		// Test mode prints the signature field after a line naming the
		// file.
		i := bytes.Index(out, []byte("DKIM-Signature:"))
		if i < 0 {
			t.Fatalf("opendkim -t printed no signature:\n%s", out)
		}
		sig := strings.ReplaceAll(strings.ReplaceAll(strings.TrimRight(string(out[i:]), "\r\n"), "\r\n", "\n"), "\n", "\r\n") + "\r\n"
		return sig + plainMsg
	}
	for _, s := range []signer{
		{"dkimsign rsa", py("py", "rsa-sha256", rsaFile)},
		{"dkimsign ed25519", py("pyed", "ed25519-sha256", edFile)},
		{"opendkim rsa", od},
	} {
		for _, canon := range []string{"relaxed", "simple"} {
			msg := s.sign(canon)
			if !strings.HasPrefix(msg, "DKIM-Signature:") || !strings.Contains(msg, "c="+canon+"/"+canon) {
				t.Fatalf("%s %s: not signed as asked:\n%s", s.name, canon, msg)
			}
			if got := results(verifyStream(t, d, msg)); got != "pass:example.org" {
				t.Errorf("%s %s: %s\n%s", s.name, canon, got, msg)
			}
			if got := results(verifyStream(t, d, strings.Replace(msg, "Alice\r\n", "Alicf\r\n", 1))); got != "fail:example.org" {
				t.Errorf("%s %s, body byte changed: %s", s.name, canon, got)
			}
			if got := results(verifyStream(t, d, strings.Replace(msg, "To: bob@", "To: rob@", 1))); got != "fail:example.org" {
				t.Errorf("%s %s, signed header changed: %s", s.name, canon, got)
			}
		}
	}
}
