package doctor

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/internal/smtptest"
	"github.com/mxedge/mxedge/mtasts"
	"github.com/mxedge/mxedge/mtasts/ststest"
	"github.com/mxedge/mxedge/resolver/dnstest"
)

var green = []string{
	"mx1.example.org. A 192.0.2.10",
	"mx2.example.org. A 192.0.2.20",
	"10.2.0.192.in-addr.arpa. PTR mx1.example.org.",
	"example.org. MX 10 mx1.example.org.",
	"example.org. MX 10 mx2.example.org.",
	`example.org. TXT "v=spf1 ip4:192.0.2.10 ip4:192.0.2.20 -all"`,
	`_dmarc.example.org. TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.org"`,
	`_smtp._tls.example.org. TXT "v=TLSRPTv1; rua=mailto:tlsrpt@example.org"`,
}

// keyPair is a self-signed certificate for name with key: our MX
// certificate (made with one key for the whole test, so that the green
// TLSA record matches every certificate of it), and the policy server's
// (trusted as its own root).
func keyPair(t *testing.T, key crypto.Signer, name string, notAfter time.Time) tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: c}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// dkimZone is the selector record of pub as a zone line, split into
// strings of at most 255 characters.
func dkimZone(t *testing.T, name string, pub *rsa.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	v := "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	var parts []string
	for len(v) > 255 {
		parts, v = append(parts, `"`+v[:255]+`"`), v[255:]
	}
	return name + " TXT " + strings.Join(append(parts, `"`+v+`"`), " ")
}

// tlsa311 is the "3 1 1" record of c at our MX host.
func tlsa311(c *x509.Certificate) string {
	return "_25._tcp.mx1.example.org. TLSA 3 1 1 " + spkiSHA256(c)
}

// TestDoctor: through the in-process DNS server, a local HTTPS policy
// server and a local MX listener, an all-green setup, then each failure
// on its own fails (or warns) exactly its check(s), with the fix.
func TestDoctor(t *testing.T) {
	now := time.Now()
	const selector = "sel._domainkey.example.org."
	ours, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ourRecord := dkimZone(t, selector, &ours.PublicKey)
	leafKey := newKey(t)
	leaf := keyPair(t, leafKey, "mx1.example.org", now.Add(90*24*time.Hour)).Leaf
	other := keyPair(t, newKey(t), "mx1.example.org", now.Add(90*24*time.Hour)).Leaf
	zone := append(append([]string(nil), green...), ourRecord, tlsa311(leaf),
		`_mta-sts.example.org. TXT "v=STSv1; id=20261202"`, "mta-sts.example.org. A 127.0.0.54")
	const tlsaName = "_25._tcp.mx1.example.org."
	for _, tc := range []struct {
		name   string
		change func(s *dnstest.Server)
		in     func(in *Input, w *world)
		mx     func(s *smtptest.Server) // changes the MX listener after startMX
		policy func(p *ststest.Response)
		accept func(from, rcpt string) bool // the MX listener's relay rule; nil: closedRelay
		fail   []string                     // check names that fail (or warn, or skip); nil: all green
		fix    string                       // in the fix of the first failing check
		found  string                       // in the found of the first failing check
	}{
		{name: "all green"},
		{name: "no A record", change: func(s *dnstest.Server) { s.Remove("mx1.example.org.", dns.TypeA) },
			fail: []string{"hostname A/AAAA", "hostname resolves back (FCrDNS)"}, fix: "mx1.example.org. A 192.0.2.10"},
		{name: "generic PTR", change: func(s *dnstest.Server) {
			s.Remove("10.2.0.192.in-addr.arpa.", dns.TypePTR)
			s.Add("10.2.0.192.in-addr.arpa. PTR host-192-0-2-10.isp.example.")
		}, fail: []string{"PTR is the hostname", "hostname resolves back (FCrDNS)"}, fix: "10.2.0.192.in-addr.arpa. PTR mx1.example.org."},
		{name: "backup MX 20", change: func(s *dnstest.Server) {
			s.Remove("example.org.", dns.TypeMX)
			s.Add("example.org. MX 10 mx1.example.org.", "example.org. MX 20 mx2.example.org.")
		}, fail: []string{"MX preferences equal"}, fix: "same preference"},
		{name: "MX elsewhere", change: func(s *dnstest.Server) {
			s.Remove("example.org.", dns.TypeMX)
			s.Add("example.org. MX 10 mail.other.example.")
		}, fail: []string{"MX points at this host and its partners", "MTA-STS policy covers the MX hosts"}, fix: "example.org. MX 10 mx1.example.org."},
		{name: "two SPF records", change: func(s *dnstest.Server) { s.Add(`example.org. TXT "v=spf1 -all"`) },
			fail: []string{"SPF: one record"}, fix: `"v=spf1 ip4:192.0.2.10 -all"`},
		{name: "no SPF, outbound address unknown", in: func(in *Input, w *world) { in.Outbound = nil },
			change: func(s *dnstest.Server) { s.Remove("example.org.", dns.TypeTXT) },
			fail:   []string{"SPF: one record"}, fix: `example.org. TXT "v=spf1 ip4:<outbound IPv4> -all"`},
		{name: "SPF without our IP", change: func(s *dnstest.Server) {
			s.Remove("example.org.", dns.TypeTXT)
			s.Add(`example.org. TXT "v=spf1 ip4:198.51.100.0/24 -all"`)
		}, fail: []string{"SPF authorises our outbound address"}, fix: "ip4:192.0.2.10"},
		{name: "SPF with 11 lookups", change: func(s *dnstest.Server) {
			s.Remove("example.org.", dns.TypeTXT)
			s.Add(`example.org. TXT "v=spf1 ip4:192.0.2.10 include:a.example include:b.example include:c.example include:d.example include:e.example include:f.example include:g.example include:h.example include:i.example include:j.example include:k.example -all"`)
		}, fail: []string{"SPF: at most 10 DNS lookups"}, fix: "flatten"},
		{name: "no DMARC", change: func(s *dnstest.Server) { s.Remove("_dmarc.example.org.", dns.TypeTXT) },
			fail: []string{"DMARC record"}, fix: "_dmarc.example.org. TXT"},

		// MTA-STS (RFC 8461) and TLS-RPT (RFC 8460).
		{name: "no MTA-STS: a warning", change: func(s *dnstest.Server) { s.Remove("_mta-sts.example.org.", dns.TypeTXT) },
			fail: []string{"MTA-STS record"}, fix: `"mx: mx1.example.org" "mx: mx2.example.org"`, found: "optional"},
		{name: "two MTA-STS records", change: func(s *dnstest.Server) { s.Add(`_mta-sts.example.org. TXT "v=STSv1; id=2"`) },
			fail: []string{"MTA-STS record"}, fix: `_mta-sts.example.org. TXT "v=STSv1; id=`, found: "2 records"},
		{name: "MTA-STS record without id", change: func(s *dnstest.Server) {
			s.Remove("_mta-sts.example.org.", dns.TypeTXT)
			s.Add(`_mta-sts.example.org. TXT "v=STSv1; ID=1"`)
		}, fail: []string{"MTA-STS record"}, found: "no id: v=STSv1; ID=1"},
		{name: "MTA-STS policy missing", policy: func(p *ststest.Response) { p.Status, p.Body = 404, "not found" },
			fail: []string{"MTA-STS policy fetch"}, fix: "https://mta-sts.example.org/.well-known/mta-sts.txt", found: "404"},
		{name: "MTA-STS policy redirected", policy: func(p *ststest.Response) {
			p.Status, p.Location = 301, "https://www.example.org/mta-sts.txt"
		}, fail: []string{"MTA-STS policy fetch"}, found: "redirect not followed"},
		{name: "MTA-STS policy as text/html", policy: func(p *ststest.Response) { p.ContentType = "text/html" },
			fail: []string{"MTA-STS policy fetch"}, fix: "text/plain", found: "not text/plain"},
		{name: "MTA-STS policy too large", policy: func(p *ststest.Response) { p.Body += strings.Repeat("# padding\r\n", 7000) },
			fail: []string{"MTA-STS policy fetch"}, found: "larger than 65536"},
		{name: "MTA-STS policy with an untrusted certificate", in: func(in *Input, w *world) {
			in.HTTPS = mtasts.NewClient(mtasts.ClientOptions{Resolver: w.res, RootCAs: x509.NewCertPool(), Port: w.policyPort})
		}, fail: []string{"MTA-STS policy fetch"}, fix: "a certificate for mta-sts.example.org", found: "unknown authority"},
		{name: "MTA-STS policy invalid", policy: func(p *ststest.Response) { p.Body = "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.org\r\n" },
			fail: []string{"MTA-STS policy fetch"}, found: "no max_age"},
		{name: "MTA-STS in testing mode", policy: func(p *ststest.Response) { p.Body = strings.Replace(greenPolicy, "enforce", "testing", 1) },
			fail: []string{"MTA-STS mode enforce"}, fix: `"mode: enforce"`, found: "mode: testing"},
		{name: "MTA-STS in mode none", policy: func(p *ststest.Response) { p.Body = "version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n" },
			fail: []string{"MTA-STS mode enforce"}, fix: `"mode: enforce"`, found: "mode: none"},
		{name: "MTA-STS policy without our host", policy: func(p *ststest.Response) {
			p.Body = strings.Replace(greenPolicy, "mx: mx1.example.org", "mx: mail.example.net", 1)
		}, fail: []string{"MTA-STS policy covers the MX hosts"}, fix: `add "mx: mx1.example.org"`, found: "not covered: mx1.example.org"},
		{name: "MTA-STS wildcard covers the MX hosts", policy: func(p *ststest.Response) {
			p.Body = "version: STSv1\nmode: enforce\nmx: *.example.org\nmax_age: 604800\n"
		}},
		{name: "no TLS-RPT", change: func(s *dnstest.Server) { s.Remove("_smtp._tls.example.org.", dns.TypeTXT) },
			fail: []string{"TLS-RPT record"}, fix: "v=TLSRPTv1"},
		{name: "TLS-RPT without rua", change: func(s *dnstest.Server) {
			s.Remove("_smtp._tls.example.org.", dns.TypeTXT)
			s.Add(`_smtp._tls.example.org. TXT "v=TLSRPTv1; ruf=mailto:tlsrpt@example.org"`)
		}, fail: []string{"TLS-RPT record"}, fix: "rua=mailto:tlsrpt@example.org", found: "no rua="},
		{name: "TLS-RPT with a bad rua", change: func(s *dnstest.Server) {
			s.Remove("_smtp._tls.example.org.", dns.TypeTXT)
			s.Add(`_smtp._tls.example.org. TXT "v=TLSRPTv1; rua=tlsrpt@example.org"`)
		}, fail: []string{"TLS-RPT record"}, found: "not a mailto: or https: URI"},

		// Certificates and DANE (RFC 7672).
		{name: "certificate for another name", in: func(in *Input, w *world) {
			in.Chains = []Chain{{Certs: []*x509.Certificate{keyPair(t, leafKey, "www.example.org", now.Add(90*24*time.Hour)).Leaf}}}
		}, fail: []string{"certificate covers the hostname"}, fix: "subjectAltName"},
		{name: "certificate expiring", in: func(in *Input, w *world) {
			in.Chains = []Chain{{Certs: []*x509.Certificate{keyPair(t, leafKey, "mx1.example.org", now.Add(5*24*time.Hour)).Leaf}}}
		}, fail: []string{"certificate valid for 14 days"}, fix: "renew"},
		{name: "no TLSA: DANE not published", change: func(s *dnstest.Server) { s.Remove(tlsaName, dns.TypeTLSA) }},
		{name: "TLSA of another key", change: func(s *dnstest.Server) {
			s.Remove(tlsaName, dns.TypeTLSA)
			s.Add(tlsa311(other))
		}, fail: []string{"DANE TLSA matches our certificate", "TLSA record matches a served certificate"},
			fix: tlsa311(leaf), found: "does not match"},
		{name: "a new certificate with another key", in: func(in *Input, w *world) { in.Chains = []Chain{{Certs: []*x509.Certificate{other}}} },
			fail: []string{"DANE TLSA matches our certificate", "TLSA record matches a served certificate"}, fix: tlsa311(other)},
		{name: "TLSA of the next key beside ours", change: func(s *dnstest.Server) { s.Add(tlsa311(other)) },
			fail: []string{"TLSA record matches a served certificate"}, fix: "rollover", found: "3 1 1 " + spkiSHA256(other)},
		{name: "TLSA of our full certificate", change: func(s *dnstest.Server) {
			s.Remove(tlsaName, dns.TypeTLSA)
			s.Add(fmt.Sprintf("%s TLSA 3 0 0 %x", tlsaName, leaf.Raw))
		}},
		{name: "TLSA only PKIX-EE, unusable for SMTP", change: func(s *dnstest.Server) {
			s.Remove(tlsaName, dns.TypeTLSA)
			s.Add(strings.Replace(tlsa311(leaf), "TLSA 3 1 1", "TLSA 1 1 1", 1))
		}, fail: []string{"DANE TLSA matches our certificate"}, fix: tlsa311(leaf), found: "no record usable for SMTP"},
		{name: "TLSA without DNSSEC", change: func(s *dnstest.Server) { s.SetAD(false) },
			fail: []string{"DANE TLSA matches our certificate"}, fix: "DNSSEC", found: "AD bit clear"},
		{name: "TLSA lookup fails", change: func(s *dnstest.Server) { s.SetRcode(tlsaName, dns.TypeTLSA, dns.RcodeServerFailure) },
			fail: []string{"DANE TLSA matches our certificate"}, fix: "DANE senders defer", found: "SERVFAIL"},
		{name: "two certificates, TLSA for one", in: func(in *Input, w *world) {
			rsaLeaf := rsaCert(t, "mx1.example.org", now.Add(90*24*time.Hour))
			in.Chains = append(in.Chains, Chain{Certs: []*x509.Certificate{rsaLeaf}})
		}, fail: []string{"DANE TLSA matches our certificate"}, fix: tlsa311(leaf) + "; " + tlsaName, found: "does not match"},

		{name: "DKIM record missing", change: func(s *dnstest.Server) { s.Remove(selector, dns.TypeTXT) },
			fail: []string{"DKIM selector record matches the key"}, fix: "sel._domainkey.example.org. TXT \"v=DKIM1; k=rsa; p="},
		{name: "DKIM record of another, weak key", change: func(s *dnstest.Server) {
			s.Remove(selector, dns.TypeTXT)
			s.Add(dkimZone(t, selector, &weak.PublicKey))
		}, fail: []string{"DKIM selector record matches the key"}, fix: ourRecord, found: "RSA key of 1024 bits"},
		{name: "DKIM record of another key", change: func(s *dnstest.Server) {
			other, _ := rsa.GenerateKey(rand.Reader, 2048)
			s.Remove(selector, dns.TypeTXT)
			s.Add(dkimZone(t, selector, &other.PublicKey))
		}, fail: []string{"DKIM selector record matches the key"}, fix: ourRecord, found: "another key published"},
		{name: "listed on a DNSBL", change: func(s *dnstest.Server) { s.Add("10.2.0.192.bl.example. A 127.0.0.2") },
			fail: []string{"not on bl.example"}, fix: "delisting"},
		{name: "a DNSBL named by several entries is checked once, a DNSWL not", in: func(in *Input, w *world) {
			in.DNSBLs = []string{"bl.example*2", "wl.example=127.0.[0..255].[1..3]*-5", "BL.example=127.0.0.[2..11]*1", "bl.example*2"}
		}, change: func(s *dnstest.Server) {
			s.Add("10.2.0.192.bl.example. A 127.0.0.2", "10.2.0.192.wl.example. A 127.0.10.2")
		}, fail: []string{"not on bl.example"}, found: "127.0.0.2"},
		{name: "a DNSBL's error code is no listing", change: func(s *dnstest.Server) { s.Add("10.2.0.192.bl.example. A 127.255.255.254") },
			fail: []string{"not on bl.example"}, fix: "resolver of your own", found: "not a listing"},

		// The open-relay self-test.
		{name: "open relay", accept: func(string, string) bool { return true },
			fail: []string{"not an open relay: foreign recipient", "not an open relay: percent hack", "not an open relay: source route",
				"not an open relay: quoted local part", "not an open relay: bang path", "not an open relay: relay domain as sender"},
			fix: "relay_domains", found: "OPEN RELAY: RCPT TO:<postmaster@other.example> answered 250"},
		{name: "percent hack relayed", accept: func(from, rcpt string) bool { return closedRelay(from, rcpt) || strings.Contains(rcpt, "%") },
			fail: []string{"not an open relay: percent hack"}, found: "OPEN RELAY: RCPT TO:<postmaster%other.example@example.org> answered 250"},
		{name: "bang path relayed", accept: func(from, rcpt string) bool { return closedRelay(from, rcpt) || strings.Contains(rcpt, "!") },
			fail: []string{"not an open relay: bang path"}, found: "other.example!postmaster@example.org"},
		{name: "quoted local part relayed", accept: func(from, rcpt string) bool { return closedRelay(from, rcpt) || strings.HasPrefix(rcpt, `"`) },
			fail: []string{"not an open relay: quoted local part"}, found: `"postmaster@other.example"@example.org`},
		{name: "source route relayed", accept: func(from, rcpt string) bool { return closedRelay(from, rcpt) || strings.HasPrefix(rcpt, "@") },
			fail: []string{"not an open relay: source route"}, found: "@example.org:postmaster@other.example"},
		{name: "relayed for a sender of ours", accept: func(from, rcpt string) bool {
			return closedRelay(from, rcpt) || strings.HasSuffix(from, "@example.org")
		}, fail: []string{"not an open relay: relay domain as sender"}, found: "OPEN RELAY"},
		{name: "foreign domains refused only for now", mx: func(s *smtptest.Server) {
			s.On(smtptest.Rcpt, func(_ *smtptest.Session, line string) string {
				if line == "RCPT TO:<postmaster@example.org>" {
					return ""
				}
				return "451 4.3.0 Try again later"
			})
		}, fail: []string{"not an open relay: foreign recipient", "not an open relay: percent hack", "not an open relay: source route",
			"not an open relay: quoted local part", "not an open relay: bang path", "not an open relay: relay domain as sender"},
			fix: "5xx", found: "refused only for now"},
		{name: "relay hangs at RCPT", mx: func(s *smtptest.Server) { t.Cleanup(s.Hold(smtptest.Rcpt)) },
			in: func(in *Input, w *world) { in.RelayTests[0].Timeout = 300 * time.Millisecond },
			fail: []string{"relay self-test reaches RCPT", "not an open relay: foreign recipient", "not an open relay: percent hack",
				"not an open relay: source route", "not an open relay: quoted local part", "not an open relay: bang path",
				"not an open relay: relay domain as sender"}, found: "timeout"},
		{name: "outside sender refused, null sender used", in: func(in *Input, w *world) { in.RelayTests[0].Sender = "nobody@unknown.example" },
			mx: func(s *smtptest.Server) {
				s.On(smtptest.Mail, func(_ *smtptest.Session, line string) string {
					if strings.Contains(line, "unknown.example") {
						return "550 5.1.8 <nobody@unknown.example>: Sender address rejected: Domain not found"
					}
					return ""
				})
			}},
		{name: "second MX listener an open relay", in: func(in *Input, w *world) {
			open := startMX(t, func(string, string) bool { return true })
			in.RelayTests = append(in.RelayTests, RelayTest{Addr: open.Addr(), Listener: "mx-b " + open.Addr(), Timeout: 5 * time.Second})
		}, fail: []string{"not an open relay: foreign recipient", "not an open relay: percent hack", "not an open relay: source route",
			"not an open relay: quoted local part", "not an open relay: bang path", "not an open relay: relay domain as sender"},
			found: "OPEN RELAY"},
		{name: "relay not running", in: func(in *Input, w *world) { in.RelayTests[0].Addr = closedAddr(t) },
			fail: []string{"open relay self-test"}, found: "not running"},
		{name: "no MX listener to test", in: func(in *Input, w *world) { in.RelayTests = nil },
			fail: []string{"open relay self-test"}, found: "no MX listener"},
		{name: "relay refuses us before relay control", accept: func(string, string) bool { return false },
			fail: []string{"relay self-test reaches RCPT"}, fix: "-mx", found: "554 5.7.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := ststest.Response{Body: greenPolicy}
			if tc.policy != nil {
				tc.policy(&resp)
			}
			accept := tc.accept
			if accept == nil {
				accept = closedRelay
			}
			w := newWorld(t, zone, resp, accept, Input{Hostname: "mx1.example.org", Outbound: []netip.Addr{netip.MustParseAddr("192.0.2.10")},
				RelayDomains: []string{"example.org"}, Partners: []string{"mx2.example.org"},
				Chains: []Chain{{Certs: []*x509.Certificate{leaf}}}, DNSBLs: []string{"bl.example*2"}, Now: now,
				DKIM: []DKIMKey{{Domain: "example.org", Selector: "sel", Public: &ours.PublicKey, Record: ourRecord}}})
			if tc.change != nil {
				tc.change(w.dns)
			}
			if tc.mx != nil {
				tc.mx(w.mx)
			}
			if tc.in != nil {
				tc.in(&w.in, w)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			checks := Run(ctx, w.res, w.in)
			var failed []string
			var firstFix, firstFound string
			for _, c := range checks {
				if c.Status != "ok" {
					if firstFix == "" && firstFound == "" {
						firstFix, firstFound = c.Fix, c.Found
					}
					failed = append(failed, c.Name)
				}
			}
			if strings.Join(failed, ",") != strings.Join(tc.fail, ",") {
				t.Errorf("failed checks %q, want %q\n%s", failed, tc.fail, show(checks))
			}
			if !strings.Contains(firstFix, tc.fix) {
				t.Errorf("fix %q does not say %q", firstFix, tc.fix)
			}
			if !strings.Contains(firstFound, tc.found) {
				t.Errorf("found %q does not say %q", firstFound, tc.found)
			}
		})
	}
}

// The self-test's dialogue: one session, each probe a MAIL, RCPT, RSET,
// then QUIT; never DATA. An outside sender that MAIL FROM refuses is
// replaced by the null sender for the rest of the session.
func TestRelaySelfTestDialogue(t *testing.T) {
	w := newWorld(t, nil, ststest.Response{}, closedRelay, Input{Hostname: "mx1.example.org", RelayDomains: []string{"example.org"}})
	w.in.RelayTests[0].Sender = "nobody@unknown.example"
	w.mx.On(smtptest.Mail, func(_ *smtptest.Session, line string) string {
		if strings.Contains(line, "unknown.example") {
			return "550 5.1.8 Sender address rejected: Domain not found"
		}
		return ""
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	checks := Run(ctx, w.res, w.in)
	want := []string{"EHLO mxedge-doctor.invalid",
		"MAIL FROM:<nobody@unknown.example>", "MAIL FROM:<>", "RCPT TO:<postmaster@example.org>", "RSET",
		"MAIL FROM:<>", "RCPT TO:<postmaster@other.example>", "RSET",
		"MAIL FROM:<>", "RCPT TO:<postmaster%other.example@example.org>", "RSET",
		"MAIL FROM:<>", "RCPT TO:<@example.org:postmaster@other.example>", "RSET",
		`MAIL FROM:<>`, `RCPT TO:<"postmaster@other.example"@example.org>`, "RSET",
		"MAIL FROM:<>", "RCPT TO:<other.example!postmaster@example.org>", "RSET",
		"MAIL FROM:<postmaster@example.org>", "RCPT TO:<postmaster@other.example>", "RSET",
		"QUIT"}
	if got := w.mx.Commands(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := w.mx.Conns(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
	n := 0
	for _, c := range checks {
		if strings.HasPrefix(c.Name, "not an open relay: ") {
			n++
			if c.Status != "ok" {
				t.Errorf("%s: %s (%s)", c.Name, c.Status, c.Found)
			}
		}
	}
	if n != 6 {
		t.Errorf("%d relay probes reported, want 6\n%s", n, show(checks))
	}
}

func show(checks []Check) string {
	var b strings.Builder
	for _, c := range checks {
		fmt.Fprintf(&b, "%s %s: %s (%s) fix: %s\n", c.Status, c.Name, c.Subject, c.Found, c.Fix)
	}
	return b.String()
}

// rsaCert is a self-signed RSA certificate for name (a second chain of
// the listener, beside the ECDSA one).
func rsaCert(t *testing.T, name string, notAfter time.Time) *x509.Certificate {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return keyPair(t, key, name, notAfter).Leaf
}

// closedAddr is an address on which nothing listens any more.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.26:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
