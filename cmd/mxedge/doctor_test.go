package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxedge/mxedge/config"
	"github.com/mxedge/mxedge/doctor"
	"github.com/mxedge/mxedge/internal/certs"
	"github.com/mxedge/mxedge/internal/smtptest"
	"github.com/mxedge/mxedge/resolver/dnstest"
)

// "mxedge doctor -json" carries the MTA-STS, DANE and open-relay checks:
// the relay domain publishes no MTA-STS (a warning), the TLSA record
// matches the certificate of the MX listener's tls_cert, and the MX
// listener given with -mx is an open relay (✗, exit status 1). With -mx
// off the self-test is skipped, which the text output says.
func TestDoctorJSON(t *testing.T) {
	dir := t.TempDir()
	pair, spki := doctorPair(t, dir)
	ns := dnstest.StartTB(t, "mx1.doctor.test. A 192.0.2.10", "_25._tcp.mx1.doctor.test. TLSA 3 1 1 "+spki)
	ns.SetAD(true)
	open, err := smtptest.Start("127.0.0.27:0") // accepts every recipient
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(open.Close)
	cfg := writeDoctorConfig(t, dir, ns.Addr(), listenerTOML("", "", "127.0.0.27:1", &pair))

	status, code := doctorJSON(t, "-config", cfg, "-mx", open.Addr(), "-relay-sender", "someone@elsewhere.test")
	for check, want := range map[string]string{
		"MTA-STS record: doctor.test":                                                                        "warn",
		"DANE TLSA matches our certificate: _25._tcp.mx1.doctor.test":                                        "ok",
		"relay self-test reaches RCPT: postmaster@doctor.test":                                               "ok",
		"not an open relay: percent hack: postmaster%other.example@doctor.test":                              "fail",
		"not an open relay: relay domain as sender: from postmaster@doctor.test to postmaster@other.example": "fail",
	} {
		if status[check] != want {
			t.Errorf("%s: %q, want %q", check, status[check], want)
		}
	}
	if code != 1 {
		t.Errorf("exit status %d with an open relay, want 1", code)
	}
	if got := strings.Join(open.Commands(), "\n"); !strings.Contains(got, "MAIL FROM:<someone@elsewhere.test>") || strings.Contains(got, "DATA") {
		t.Errorf("the self-test said:\n%s", got)
	}

	out, _, _ := runCmd(t, "doctor", "-config", cfg, "-mx", "off")
	if !strings.Contains(out, "- open relay self-test (no MX listener address to test)") {
		t.Errorf("doctor -mx off:\n%s", out)
	}
}

// doctorPair is a self-signed pair for mx1.doctor.test under dir and the
// SHA-256 of its key (the data of a TLSA 3 1 1 record).
func doctorPair(t *testing.T, dir string) (certs.Pair, string) {
	t.Helper()
	p, err := certs.SelfSigned(dir, "mx1.doctor.test")
	if err != nil {
		t.Fatal(err)
	}
	chain, err := readChain(p.Cert)
	if err != nil {
		t.Fatal(err)
	}
	return p, fmt.Sprintf("%x", sha256.Sum256(chain[0].RawSubjectPublicKeyInfo))
}

// listenerTOML is a [[listener]] table; name and kind "" are left out
// (the defaults), and so are tls_cert and tls_key with pair nil.
func listenerTOML(name, kind, addr string, pair *certs.Pair) string {
	s := "[[listener]]\n"
	if name != "" {
		s += fmt.Sprintf("name = %q\n", name)
	}
	if kind != "" {
		s += fmt.Sprintf("kind = %q\n", kind)
	}
	s += fmt.Sprintf("address = %q\n", addr)
	if pair != nil {
		s += fmt.Sprintf("tls_cert = [%q]\ntls_key = [%q]\n", pair.Cert, pair.Key)
	}
	return s
}

// writeDoctorConfig writes dir/mx.toml for mx1.doctor.test, relay domain
// doctor.test, the DNS server at dnsAddr and the listeners, and returns
// its path.
func writeDoctorConfig(t *testing.T, dir, dnsAddr string, listeners ...string) string {
	t.Helper()
	cfg := filepath.Join(dir, "mx.toml")
	data := fmt.Sprintf(`hostname = "mx1.doctor.test"
data_dir = %q
relay_domains = ["doctor.test"]

%s
[routes]
"doctor.test" = "127.0.0.27:2"

[dns]
servers = [%q]
timeout = "1s"
`, dir, strings.Join(listeners, "\n"), dnsAddr)
	if err := os.WriteFile(cfg, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// doctorJSON runs "mxedge doctor -json args..." and returns the status of
// each check by "name: subject", and the exit status.
func doctorJSON(t *testing.T, args ...string) (map[string]string, int) {
	t.Helper()
	checks, code := doctorChecks(t, args...)
	status := map[string]string{}
	for _, c := range checks {
		status[c.Name+": "+c.Subject] = c.Status
	}
	return status, code
}

// doctorChecks runs "mxedge doctor -json args..." and returns the checks
// in order, and the exit status.
func doctorChecks(t *testing.T, args ...string) ([]doctor.Check, int) {
	t.Helper()
	out, errOut, code := runCmd(t, append([]string{"doctor", "-json"}, args...)...)
	var checks []doctor.Check
	if err := json.Unmarshal([]byte(out), &checks); err != nil {
		t.Fatalf("doctor -json: %v\n%s%s", err, out, errOut)
	}
	return checks, code
}

// Two MX listeners naming the same DNSBL zone (with another weight or
// filter) get one check of it per outbound address, not one per entry;
// a zone named only with a negative weight (an allow list) gets none,
// though our address is on it.
func TestDoctorDNSBLOnce(t *testing.T) {
	dir := t.TempDir()
	pair, _ := doctorPair(t, dir)
	ns := dnstest.StartTB(t, "mx1.doctor.test. A 192.0.2.10",
		"10.2.0.192.bl.doctor.test. A 127.0.0.2", "10.2.0.192.wl.doctor.test. A 127.0.10.3")
	cfg := writeDoctorConfig(t, dir, ns.Addr(),
		listenerTOML("mx-a", "", "127.0.0.27:25", &pair)+`dnsbl_sites = ["bl.doctor.test*2"]`+"\n",
		listenerTOML("mx-b", "", "127.0.0.28:25", &pair)+
			`dnsbl_sites = ["bl.doctor.test=127.0.0.[2..11]*3", "wl.doctor.test=127.0.[0..255].[1..3]*-5"]`+"\n")

	checks, code := doctorChecks(t, "-config", cfg, "-ip", "192.0.2.10", "-mx", "off")
	var got []string
	for _, c := range checks {
		if strings.HasPrefix(c.Name, "not on ") {
			got = append(got, c.Name+": "+c.Subject+" "+c.Status)
		}
	}
	if want := "not on bl.doctor.test: 192.0.2.10 fail"; strings.Join(got, ", ") != want {
		t.Errorf("DNSBL checks %q, want %q", got, want)
	}
	if code != 1 {
		t.Errorf("exit status %d listed on a DNSBL, want 1", code)
	}
}

// The DANE check covers every MX listener that offers STARTTLS, not only
// the first: a TLSA record for the first listener's certificate fails for
// the second's, which a DANE sender reaching the second would refuse. A
// chain two listeners share is checked once; a submission listener's is
// not checked (senders do not reach it by MX).
func TestDoctorDANEEveryListener(t *testing.T) {
	dir := t.TempDir()
	a, spkiA := doctorPair(t, filepath.Join(dir, "a"))
	b, spkiB := doctorPair(t, filepath.Join(dir, "b"))
	sub, _ := doctorPair(t, filepath.Join(dir, "sub"))
	ns := dnstest.StartTB(t, "mx1.doctor.test. A 192.0.2.10", "_25._tcp.mx1.doctor.test. TLSA 3 1 1 "+spkiA)
	ns.SetAD(true)
	cfg := writeDoctorConfig(t, dir, ns.Addr(),
		listenerTOML("mx-a", "", "127.0.0.27:25", &a),
		listenerTOML("mx-b", "", "127.0.0.28:25", &b),
		listenerTOML("mx-a6", "", "[::1]:25", &a),
		listenerTOML("plain", "", "127.0.0.29:25", nil),
		listenerTOML("sub", "submission", "127.0.0.27:587", &sub))

	const check = "DANE TLSA matches our certificate: _25._tcp.mx1.doctor.test"
	ofA := " (ECDSA certificate of mx-a 127.0.0.27:25, mx-a6 [::1]:25)"
	ofB := " (ECDSA certificate of mx-b 127.0.0.28:25)"
	status, _ := doctorJSON(t, "-config", cfg, "-mx", "off")
	if status[check+ofA] != "ok" || status[check+ofB] != "fail" {
		t.Errorf("TLSA of mx-a's key only: mx-a %q, mx-b %q, want ok and fail; all checks: %v", status[check+ofA], status[check+ofB], status)
	}
	n := 0
	for name := range status {
		if strings.HasPrefix(name, check) {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d DANE checks, want 2 (mx-a's chain, shared with mx-a6, and mx-b's; not the submission listener's): %v", n, status)
	}

	ns.Add("_25._tcp.mx1.doctor.test. TLSA 3 1 1 " + spkiB)
	status, _ = doctorJSON(t, "-config", cfg, "-mx", "off")
	if status[check+ofA] != "ok" || status[check+ofB] != "ok" {
		t.Errorf("TLSA of both keys: mx-a %q, mx-b %q, want ok", status[check+ofA], status[check+ofB])
	}
	if s, ok := status["TLSA record matches a served certificate: _25._tcp.mx1.doctor.test"]; ok {
		t.Errorf("a record unmatched with both published: %q", s)
	}
}

// The open-relay self-test covers every MX listener, not only the first:
// mx-a refuses foreign destinations, mx-b relays them, and doctor fails
// mx-b's probes, each check naming its listener. A submission listener
// is not tested (it relays for authenticated users by design).
func TestDoctorRelayTestEveryListener(t *testing.T) {
	dir := t.TempDir()
	pair, _ := doctorPair(t, dir)
	ns := dnstest.StartTB(t, "mx1.doctor.test. A 192.0.2.10")
	start := func(addr string) *smtptest.Server {
		s, err := smtptest.Start(addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	closed, open, sub := start("127.0.0.27:0"), start("127.0.0.28:0"), start("127.0.0.29:0")
	closed.On(smtptest.Rcpt, func(_ *smtptest.Session, line string) string {
		if line == "RCPT TO:<postmaster@doctor.test>" {
			return ""
		}
		return "554 5.7.1 Relay access denied"
	})
	cfg := writeDoctorConfig(t, dir, ns.Addr(),
		listenerTOML("mx-a", "", closed.Addr(), &pair),
		listenerTOML("mx-b", "", open.Addr(), nil),
		listenerTOML("sub", "submission", sub.Addr(), &pair))

	status, code := doctorJSON(t, "-config", cfg)
	ofA, ofB := " (at mx-a "+closed.Addr()+")", " (at mx-b "+open.Addr()+")"
	for check, want := range map[string]string{
		"relay self-test reaches RCPT: postmaster@doctor.test" + ofA:                           "ok",
		"relay self-test reaches RCPT: postmaster@doctor.test" + ofB:                           "ok",
		"not an open relay: foreign recipient: postmaster@other.example" + ofA:                 "ok",
		"not an open relay: foreign recipient: postmaster@other.example" + ofB:                 "fail",
		"not an open relay: bang path: other.example!postmaster@doctor.test" + ofA:             "ok",
		"not an open relay: bang path: other.example!postmaster@doctor.test" + ofB:             "fail",
		"not an open relay: percent hack: postmaster%other.example@doctor.test" + ofB:          "fail",
		"not an open relay: source route: @doctor.test:postmaster@other.example" + ofB:         "fail",
		"not an open relay: quoted local part: \"postmaster@other.example\"@doctor.test" + ofB: "fail",
	} {
		if status[check] != want {
			t.Errorf("%s: %q, want %q", check, status[check], want)
		}
	}
	n := 0
	for name := range status {
		if strings.HasPrefix(name, "not an open relay: ") {
			n++
		}
	}
	if n != 12 {
		t.Errorf("%d relay probes reported, want 6 for each MX listener: %v", n, status)
	}
	if code != 1 {
		t.Errorf("exit status %d with an open MX listener, want 1", code)
	}
	if closed.Conns() != 1 || open.Conns() != 1 || sub.Conns() != 0 {
		t.Errorf("connections: mx-a %d, mx-b %d, submission %d; want 1, 1, 0", closed.Conns(), open.Conns(), sub.Conns())
	}
}

// The self-test dials a wildcard listener address on loopback.
func TestDialable(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:25": "127.0.0.1:25", ":25": "127.0.0.1:25", "[::]:25": "[::1]:25",
		"192.0.2.10:25": "192.0.2.10:25", "[2001:db8::1]:2525": "[2001:db8::1]:2525", "mx1": "mx1",
	} {
		if got := dialable(in); got != want {
			t.Errorf("dialable(%q) = %q, want %q", in, got, want)
		}
	}
}

// readChain keeps every certificate of a tls_cert file in order (leaf,
// then intermediates) and skips other blocks.
func TestReadChain(t *testing.T) {
	dir := t.TempDir()
	a, err := certs.SelfSigned(filepath.Join(dir, "a"), "mx1.doctor.test")
	if err != nil {
		t.Fatal(err)
	}
	b, err := certs.SelfSigned(filepath.Join(dir, "b"), "ca.doctor.test")
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	for _, f := range []string{a.Cert, a.Key, b.Cert} {
		d, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, d...)
	}
	file := filepath.Join(dir, "chain.pem")
	os.WriteFile(file, data, 0o600)
	chain, err := readChain(file)
	if err != nil || len(chain) != 2 || chain[0].Subject.CommonName != "mx1.doctor.test" || chain[1].Subject.CommonName != "ca.doctor.test" {
		t.Fatalf("readChain = %v, %v", chain, err)
	}
	if _, err := readChain(a.Key); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("a key file: %v", err)
	}
}

// Doctor on the built-in demo checks the certificate the demo serves (the
// self-signed pair of its first start), not "no tls_cert".
func TestDoctorDemoCertificate(t *testing.T) {
	cfg := &config.Config{DataDir: t.TempDir(), Listeners: []config.Listener{{Name: "mx", Kind: config.KindMX}}}
	demoCertificate(cfg)
	if len(cfg.Listeners[0].TLSCert) != 0 {
		t.Fatalf("no pair made yet, but the listener got %v", cfg.Listeners[0].TLSCert)
	}
	pair, err := certs.SelfSigned(filepath.Join(cfg.DataDir, "tls"), "mx.example.test")
	if err != nil {
		t.Fatal(err)
	}
	demoCertificate(cfg)
	if got := cfg.Listeners[0].TLSCert; len(got) != 1 || got[0] != pair.Cert {
		t.Fatalf("listener certificate %v, want the demo's %s", got, pair.Cert)
	}
}

// A malformed -mx is a usage error (exit 2) that names the flag, not a
// skipped self-test ("the relay is not running there") with exit 0; it
// is refused before any check runs.
func TestDoctorBadMX(t *testing.T) {
	dir := t.TempDir()
	ns := dnstest.StartTB(t, "mx1.doctor.test. A 192.0.2.10")
	cfg := writeDoctorConfig(t, dir, ns.Addr(), listenerTOML("mx", "", "127.0.0.27:25", nil))
	for _, mx := range []string{"garbage", "127.0.0.1", "mx1.doctor.test"} {
		out, errOut, code := runCmd(t, "doctor", "-config", cfg, "-mx", mx)
		if code != 2 || !strings.Contains(errOut, `-mx "`+mx+`"`) || out != "" {
			t.Errorf("doctor -mx %s: exit %d, stdout %q, stderr %q; want 2, nothing, the flag named", mx, code, out, errOut)
		}
	}
}
