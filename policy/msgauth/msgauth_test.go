//go:debug rsa1024min=0

package msgauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/policy"
	"github.com/mxedge/mxedge/resolver"
	"github.com/mxedge/mxedge/resolver/dnstest"
)

func startDNS(t *testing.T, records ...string) (*dnstest.Server, *resolver.Resolver) {
	t.Helper()
	s := dnstest.StartTB(t, records...)
	return s, resolver.New(resolver.Config{Servers: []string{s.Addr()}, Timeout: 300 * time.Millisecond, Attempts: 1, CacheSize: -1})
}

func testCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func client(ip, helo string) *policy.Conn {
	a := netip.MustParseAddr(ip)
	return &policy.Conn{Kind: policy.KindMX, IP: a, Remote: netip.AddrPortFrom(a, 4000), Helo: helo, Hostname: "mx.relay.test"}
}

// txt is a TXT record line, split into 255-byte strings.
func txt(name, value string) string {
	var parts []string
	for len(value) > 255 {
		parts = append(parts, `"`+value[:255]+`"`)
		value = value[255:]
	}
	parts = append(parts, `"`+value+`"`)
	return name + " TXT " + strings.Join(parts, " ")
}

func TestSPFResults(t *testing.T) {
	srv, r := startDNS(t,
		txt("pass.test.", "v=spf1 ip4:192.0.2.10 -all"),
		txt("fail.test.", "v=spf1 -all"),
		txt("soft.test.", "v=spf1 ~all"),
		txt("neutral.test.", "v=spf1 ?all"),
		"none.test. A 192.0.2.1",
		txt("perm.test.", "v=spf1 bogus:x -all"),
		txt("mail.helo.test.", "v=spf1 a -all"),
		"mail.helo.test. A 192.0.2.10",
		txt("mx.test.", "v=spf1 mx -all"),
		"mx.test. MX 10 mail.helo.test.",
	)
	srv.SetRcode("temp.test.", dns.TypeTXT, dns.RcodeServerFailure)
	for _, tc := range []struct {
		from, helo  string
		mail, heloR string
	}{
		{"a@pass.test", "mail.helo.test", "pass", "pass"},
		{"a@fail.test", "mail.helo.test", "fail", "pass"},
		{"a@soft.test", "mail.helo.test", "softfail", "pass"},
		{"a@neutral.test", "mail.helo.test", "neutral", "pass"},
		{"a@none.test", "mail.helo.test", "none", "pass"},
		{"a@temp.test", "mail.helo.test", "temperror", "pass"},
		{"a@perm.test", "mail.helo.test", "permerror", "pass"},
		{"a@mx.test", "mail.helo.test", "pass", "pass"},
		// <>: postmaster@HELO (RFC 7208 section 2.4).
		{"", "mail.helo.test", "pass", "pass"},
		{"", "fail.test", "fail", "fail"},
	} {
		s := &SPF{DNS: r, Fail: policy.ActionLog, Helo: true}
		tx := &policy.Txn{From: tc.from}
		res := s.CheckMail(testCtx(t), client("192.0.2.10", tc.helo), tx)
		got := SPFOf(tx)
		if string(got.Mail.Result) != tc.mail || string(got.Helo.Result) != tc.heloR {
			t.Errorf("%q helo %q: mail=%s (%s) helo=%s, want %s, %s", tc.from, tc.helo, got.Mail.Result, got.Mail.Err, got.Helo.Result, tc.mail, tc.heloR)
		}
		if res.Reply != nil {
			t.Errorf("%q: refused with action log: %v", tc.from, res.Reply)
		}
		if tc.mail == "fail" && res.Logged == nil {
			t.Errorf("%q: fail not logged", tc.from)
		}
	}

	// The actions an operator may choose.
	s := &SPF{DNS: r, Fail: policy.ActionReject, TempError: policy.ActionDefer}
	if res := s.CheckMail(testCtx(t), client("192.0.2.10", "x.test"), &policy.Txn{From: "a@fail.test"}); res.Reply == nil || res.Reply.String() != "550 5.7.23 SPF validation failed for fail.test" {
		t.Errorf("reject: %+v", res)
	}
	if res := s.CheckMail(testCtx(t), client("192.0.2.10", "x.test"), &policy.Txn{From: "a@temp.test"}); res.Reply == nil || res.Reply.Code != 451 || res.Reply.Enhanced != [3]int{4, 7, 24} {
		t.Errorf("temperror defer: %+v", res)
	}
	if res := s.CheckMail(testCtx(t), client("192.0.2.10", "x.test"), &policy.Txn{From: "a@soft.test"}); res.Reply != nil {
		t.Errorf("softfail refused: %+v", res)
	}
	// An action of "reject" for temperror is still a 4xx.
	s.TempError = policy.ActionReject
	if res := s.CheckMail(testCtx(t), client("192.0.2.10", "x.test"), &policy.Txn{From: "a@temp.test"}); res.Reply == nil || res.Reply.Code != 451 {
		t.Errorf("temperror reject: %+v", res)
	}
}

// signed signs msg with go-msgauth's signer.
func signed(t *testing.T, msg, domain, selector string, key crypto.Signer, hc, bc dkim.Canonicalization) string {
	t.Helper()
	var b bytes.Buffer
	err := dkim.Sign(&b, strings.NewReader(msg), &dkim.SignOptions{Domain: domain, Selector: selector, Signer: key,
		HeaderCanonicalization: hc, BodyCanonicalization: bc, HeaderKeys: []string{"From", "To", "Subject", "Date"}})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func rsaRecord(t *testing.T, k *rsa.PrivateKey) string {
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
}

func edRecord(k ed25519.PrivateKey) string {
	return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k.Public().(ed25519.PublicKey))
}

const plainMsg = "From: Alice <alice@example.org>\r\n" +
	"To: bob@relay.test\r\n" +
	"Subject: dinner\r\n" +
	"Date: Wed, 02 Dec 2026 10:00:00 +0000\r\n" +
	"Message-ID: <1@example.org>\r\n" +
	"\r\n" +
	"Hi Bob,\r\n\r\nare you hungry yet?\r\n\r\nAlice\r\n"

// verifyStream runs msg through the DKIM check as the listener does: the
// data written in small pieces while it "arrives", then CheckData.
func verifyStream(t *testing.T, d *DKIM, msg string) *DKIMResults {
	t.Helper()
	tx := &policy.Txn{}
	c := client("192.0.2.10", "mail.example.org")
	w := d.Stream(testCtx(t), c, tx)
	for b := []byte(msg); len(b) > 0; {
		n := min(7, len(b))
		if _, err := w.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
	}
	w.Close()
	if res := d.CheckData(testCtx(t), c, tx, nil); res.Reply != nil || res.Err != nil {
		t.Fatalf("DKIM refused: %+v", res)
	}
	return DKIMOf(tx)
}

func results(r *DKIMResults) string {
	var out []string
	for _, s := range r.Sigs {
		out = append(out, s.Result+":"+s.Domain)
	}
	return strings.Join(out, ",")
}

func TestDKIMVerify(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, ek, _ := ed25519.GenerateKey(rand.Reader)
	weak, err := rsa.GenerateKey(rand.Reader, 768)
	if err != nil {
		t.Fatal(err)
	}
	srv, r := startDNS(t,
		txt("rsa1._domainkey.example.org.", rsaRecord(t, rk)),
		txt("ed1._domainkey.example.org.", edRecord(ek)),
		txt("weak._domainkey.example.org.", rsaRecord(t, weak)),
		txt("bad._domainkey.example.org.", "v=DKIM1; k=rsa; p=notbase64!!"),
	)
	srv.SetRcode("temp._domainkey.example.org.", dns.TypeTXT, dns.RcodeServerFailure)
	d := &DKIM{DNS: r, Timeout: 2 * time.Second}

	for _, c := range []struct {
		name   string
		hc, bc dkim.Canonicalization
	}{{"relaxed/relaxed", dkim.CanonicalizationRelaxed, dkim.CanonicalizationRelaxed},
		{"simple/simple", dkim.CanonicalizationSimple, dkim.CanonicalizationSimple}} {
		for _, k := range []struct {
			sel string
			key crypto.Signer
		}{{"rsa1", rk}, {"ed1", ek}} {
			msg := signed(t, plainMsg, "example.org", k.sel, k.key, c.hc, c.bc)
			if got := results(verifyStream(t, d, msg)); got != "pass:example.org" {
				t.Errorf("%s %s: %s", k.sel, c.name, got)
			}
			body := strings.Replace(msg, "hungry", "hungrY", 1)
			if got := results(verifyStream(t, d, body)); got != "fail:example.org" {
				t.Errorf("%s %s, body changed: %s", k.sel, c.name, got)
			}
			hdr := strings.Replace(msg, "Subject: dinner", "Subject: dinnex", 1)
			if got := results(verifyStream(t, d, hdr)); got != "fail:example.org" {
				t.Errorf("%s %s, header changed: %s", k.sel, c.name, got)
			}
		}
	}

	// RFC 8301 section 3.2: an RSA key under 1024 bits is policy.
	if got := results(verifyStream(t, d, signed(t, plainMsg, "example.org", "weak", weak, "relaxed", "relaxed"))); got != "policy:example.org" {
		t.Errorf("768-bit key: %s", got)
	}
	// temperror, permerror, none.
	if got := results(verifyStream(t, d, signed(t, plainMsg, "example.org", "temp", rk, "relaxed", "relaxed"))); got != "temperror:example.org" {
		t.Errorf("SERVFAIL: %s", got)
	}
	if got := results(verifyStream(t, d, signed(t, plainMsg, "example.org", "bad", rk, "relaxed", "relaxed"))); got != "permerror:example.org" {
		t.Errorf("bad key record: %s", got)
	}
	if got := results(verifyStream(t, d, signed(t, plainMsg, "example.org", "nokey", rk, "relaxed", "relaxed"))); got != "permerror:example.org" {
		t.Errorf("no key record: %s", got)
	}
	if got := verifyStream(t, d, plainMsg); len(got.Sigs) != 0 || got.Err != nil {
		t.Errorf("unsigned: %+v", got)
	}

	// At most MaxSignatures signatures: 7 signatures, 5 verified, one neutral.
	msg := plainMsg
	for range 7 {
		msg = signed(t, msg, "example.org", "ed1", ek, "relaxed", "relaxed")
	}
	d5 := &DKIM{DNS: r, MaxSignatures: 5}
	if got := results(verifyStream(t, d5, msg)); got != strings.Repeat("pass:example.org,", 5)+"neutral:" {
		t.Errorf("7 signatures: %s", got)
	}
	if n := srv.Count("ed1._domainkey.example.org.", dns.TypeTXT); n > 5+2*2+1 {
		t.Errorf("key looked up %d times", n)
	}
}

// TestDKIMKeyRotation: the check keeps parsed keys (go-msgauth fork's
// KeyCache) but looks the record up for every message, so a key replaced
// or revoked in the DNS counts from the next message on.
func TestDKIMKeyRotation(t *testing.T) {
	_, old, _ := ed25519.GenerateKey(rand.Reader)
	_, repl, _ := ed25519.GenerateKey(rand.Reader)
	const name = "ed1._domainkey.example.org."
	srv, r := startDNS(t, txt(name, edRecord(old)))
	d := &DKIM{DNS: r, Timeout: 2 * time.Second}
	byOld := signed(t, plainMsg, "example.org", "ed1", old, "relaxed", "relaxed")
	byRepl := signed(t, plainMsg, "example.org", "ed1", repl, "relaxed", "relaxed")
	publish := func(record string) {
		srv.Remove(name, dns.TypeTXT)
		if err := srv.Add(txt(name, record)); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range []struct {
		record      string // "" keeps the one published
		msg, result string
	}{
		{"", byOld, "pass:example.org"},
		{"", byOld, "pass:example.org"},
		{"", byRepl, "fail:example.org"},
		{edRecord(repl), byOld, "fail:example.org"},
		{"", byRepl, "pass:example.org"},
		{"v=DKIM1; k=ed25519; p=", byRepl, "permerror:example.org"},
		{edRecord(old), byOld, "pass:example.org"},
	} {
		if c.record != "" {
			publish(c.record)
		}
		if got := results(verifyStream(t, d, c.msg)); got != c.result {
			t.Errorf("step %d: %s, want %s", i, got, c.result)
		}
	}
	if n := srv.Count(name, dns.TypeTXT); n != 7 {
		t.Errorf("key record looked up %d times for 7 messages, want 7", n)
	}
}

// The RFC 8463 appendix A example, as published (ed25519-sha256 and
// rsa-sha256 of the same message).
const rfc8463Msg = "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n" +
	" d=football.example.com; i=@football.example.com;\r\n" +
	" q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n" +
	" subject : date : message-id : from : subject : date;\r\n" +
	" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n" +
	" b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n" +
	" Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n" +
	"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n" +
	" d=football.example.com; i=@football.example.com;\r\n" +
	" q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n" +
	" date : message-id : from : subject : date;\r\n" +
	" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n" +
	" b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n" +
	" DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r\n" +
	" dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r\n" +
	"From: Joe SixPack <joe@football.example.com>\r\n" +
	"To: Suzie Q <suzie@shopping.example.net>\r\n" +
	"Subject: Is dinner ready?\r\n" +
	"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n" +
	"Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n" +
	"\r\n" +
	"Hi.\r\n" +
	"\r\n" +
	"We lost the game.  Are you hungry yet?\r\n" +
	"\r\n" +
	"Joe.\r\n"

func TestDKIMRFC8463(t *testing.T) {
	_, r := startDNS(t,
		txt("brisbane._domainkey.football.example.com.", "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="),
	)
	// Only the ed25519 key of appendix A.2 is published here: the RSA
	// signature's key record ("test") is left out, so it is permerror.
	d := &DKIM{DNS: r}
	if got := results(verifyStream(t, d, rfc8463Msg)); got != "pass:football.example.com,permerror:football.example.com" {
		t.Errorf("RFC 8463 example: %s", got)
	}
	if got := results(verifyStream(t, d, strings.Replace(rfc8463Msg, "Joe.", "Joe!", 1))); got != "fail:football.example.com,permerror:football.example.com" {
		t.Errorf("RFC 8463 example changed: %s", got)
	}
}

// message is a stored message for DATA checks.
type message string

func (m message) Open() (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader(string(m))), nil
}
func (m message) Size() int64 { return int64(len(m)) }

func TestDMARC(t *testing.T) {
	srv, r := startDNS(t,
		txt("_dmarc.reject.test.", "v=DMARC1; p=reject"),
		txt("_dmarc.quar.test.", "v=DMARC1; p=quarantine"),
		txt("_dmarc.none.test.", "v=DMARC1; p=none"),
		txt("_dmarc.strict.test.", "v=DMARC1; p=reject; aspf=s; adkim=s"),
		txt("_dmarc.org.co.uk.", "v=DMARC1; p=none; sp=reject"),
		txt("_dmarc.half.test.", "v=DMARC1; p=reject; pct=50"),
		txt("_dmarc.list.test.", "v=DMARC1; p=reject"),
		txt("_dmarc.perm.test.", "v=DMARC1; p=bogus"),
	)
	srv.SetRcode("_dmarc.temp.test.", dns.TypeTXT, dns.RcodeServerFailure)
	spfPass := func(domain string) *SPFResults {
		return &SPFResults{Mail: SPFResult{Result: "pass", Domain: domain}}
	}
	dkimPass := func(domain string) *DKIMResults {
		return &DKIMResults{Sigs: []DKIMResult{{Result: "pass", Domain: domain}}}
	}
	for _, tc := range []struct {
		name   string
		from   string
		spf    *SPFResults
		dkim   *DKIMResults
		result string
		code   int
	}{
		{"reject, nothing aligned", "a@reject.test", spfPass("other.test"), dkimPass("other.test"), "fail", 550},
		{"reject, spf aligned", "a@reject.test", spfPass("reject.test"), nil, "pass", 0},
		{"reject, spf relaxed", "a@reject.test", spfPass("bounce.reject.test"), nil, "pass", 0},
		{"reject, dkim relaxed", "a@mail.reject.test", nil, dkimPass("reject.test"), "pass", 0},
		{"strict spf not aligned", "a@strict.test", spfPass("bounce.strict.test"), nil, "fail", 550},
		{"strict dkim aligned", "a@strict.test", nil, dkimPass("strict.test"), "pass", 0},
		{"dkim fail does not count", "a@reject.test", nil, &DKIMResults{Sigs: []DKIMResult{{Result: "fail", Domain: "reject.test"}}}, "fail", 550},
		{"quarantine accepted", "a@quar.test", nil, nil, "fail", 0},
		{"p=none", "a@none.test", nil, nil, "fail", 0},
		{"no record", "a@nothing.test", nil, nil, "none", 0},
		// Organisational domain fallback (RFC 7489 section 6.6.3) with sp=.
		{"org domain sp=reject", "a@mail.org.co.uk", nil, nil, "fail", 550},
		{"org domain itself p=none", "a@org.co.uk", nil, nil, "fail", 0},
		{"temperror", "a@temp.test", nil, nil, "temperror", 0},
		{"permerror", "a@perm.test", nil, nil, "permerror", 0},
		{"exempt", "a@list.test", nil, nil, "fail", 0},
	} {
		d := &DMARC{DNS: r, Reject: policy.ActionReject, Quarantine: policy.ActionLog, Exempt: map[string]bool{"list.test": true}}
		tx := &policy.Txn{}
		if tc.spf != nil {
			tx.SetValue(spfKey{}, tc.spf)
		}
		if tc.dkim != nil {
			tx.SetValue(dkimKey{}, &dkimRun{res: tc.dkim})
		}
		msg := message("From: A <" + tc.from + ">\r\nSubject: x\r\n\r\nbody\r\n")
		res := d.CheckData(testCtx(t), client("192.0.2.10", "h.test"), tx, msg)
		got := DMARCOf(tx)
		if got == nil || got.Result != tc.result {
			t.Errorf("%s: %+v, want %s", tc.name, got, tc.result)
			continue
		}
		code := 0
		if res.Reply != nil {
			code = res.Reply.Code
			if res.Reply.String() != "550 5.7.1 Rejected by DMARC policy for "+tc.from[2:] {
				t.Errorf("%s: reply %s", tc.name, res.Reply)
			}
		}
		if code != tc.code || res.Err != nil {
			t.Errorf("%s: reply %v err %v, want %d", tc.name, res.Reply, res.Err, tc.code)
		}
	}

	// pct=50: sampled out, reject becomes quarantine (accepted).
	for _, sampled := range []bool{true, false} {
		d := &DMARC{DNS: r, Reject: policy.ActionReject, Quarantine: policy.ActionLog,
			Sample: func(pct int) bool { return pct == 50 && sampled }}
		res := d.CheckData(testCtx(t), client("192.0.2.10", "h.test"), &policy.Txn{}, message("From: a@half.test\r\n\r\n"))
		if (res.Reply != nil) != sampled {
			t.Errorf("pct=50 sampled=%v: %+v", sampled, res)
		}
	}
	// Configured: quarantine rejected; reject only logged.
	d := &DMARC{DNS: r, Reject: policy.ActionLog, Quarantine: policy.ActionReject}
	if res := d.CheckData(testCtx(t), client("192.0.2.10", "h.test"), &policy.Txn{}, message("From: a@quar.test\r\n\r\n")); res.Reply == nil {
		t.Errorf("quarantine=reject: %+v", res)
	}
	if res := d.CheckData(testCtx(t), client("192.0.2.10", "h.test"), &policy.Txn{}, message("From: a@reject.test\r\n\r\n")); res.Reply != nil {
		t.Errorf("reject=log: %+v", res)
	}

	// Zero or several From addresses: 550 5.7.1 (RFC 7489 section 6.6.1).
	for _, m := range []string{
		"Subject: no from\r\n\r\nx\r\n",
		"From: a@reject.test, b@reject.test\r\n\r\nx\r\n",
		"From: a@reject.test\r\nFrom: b@reject.test\r\n\r\nx\r\n",
		"From: undisclosed\r\n\r\nx\r\n",
	} {
		d := &DMARC{DNS: r, Reject: policy.ActionReject}
		res := d.CheckData(testCtx(t), client("192.0.2.10", "h.test"), &policy.Txn{}, message(m))
		if res.Reply == nil || res.Reply.String() != "550 5.7.1 Message must have exactly one From address (RFC 7489 section 6.6.1)" {
			t.Errorf("%q: %+v", m, res)
		}
	}
}

func TestOrgDomain(t *testing.T) {
	for in, want := range map[string]string{
		"example.org": "example.org", "a.b.example.org": "example.org",
		"mail.example.co.uk": "example.co.uk", "co.uk": "co.uk",
	} {
		if got := OrgDomain(in); got != want {
			t.Errorf("OrgDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAuthResultsField(t *testing.T) {
	a := &AuthResults{ServID: "mx.relay.test"}
	c := client("192.0.2.10", "mail.example.org")
	c.Reverse = policy.Reverse{Name: "mail.example.org", Status: policy.ReversePass}
	tx := &policy.Txn{}
	tx.SetValue(spfKey{}, &SPFResults{Helo: SPFResult{Result: "pass", Domain: "mail.example.org"},
		Mail: SPFResult{Result: "fail", Domain: "example.org", Sender: "a@example.org"}})
	tx.SetValue(dkimKey{}, &dkimRun{res: &DKIMResults{Sigs: []DKIMResult{{Result: "pass", Domain: "example.org", Identifier: "@example.org"},
		{Result: "policy", Domain: "weak.example"}}}})
	tx.SetValue(dmarcKey{}, &DMARCResult{Result: "pass", From: "example.org"})
	f := a.Field(c, tx)
	if err := checkField(f); err != nil {
		t.Fatalf("%q: %v", f, err)
	}
	name, value, _ := strings.Cut(strings.TrimSuffix(f, "\r\n"), ":")
	if name != "Authentication-Results" {
		t.Fatal(f)
	}
	// Parse our own output back (authres has had quoting bugs).
	id, rs, err := authres.Parse(strings.ReplaceAll(value, "\r\n", ""))
	if err != nil {
		t.Fatalf("parse %q: %v", f, err)
	}
	if id != "mx.relay.test" || len(rs) != 6 {
		t.Fatalf("parsed %q %d results from %q", id, len(rs), f)
	}
	want := []authres.Result{
		&authres.IPRevResult{Value: "pass", IP: "192.0.2.10"},
		&authres.SPFResult{Value: "pass", Helo: "mail.example.org"},
		&authres.SPFResult{Value: "fail", From: "a@example.org"},
		&authres.DKIMResult{Value: "pass", Domain: "example.org", Identifier: "@example.org"},
		&authres.DKIMResult{Value: "policy", Domain: "weak.example"},
		&authres.DMARCResult{Value: "pass", From: "example.org"},
	}
	for i := range want {
		if got, w := authres.Format("x", rs[i:i+1]), authres.Format("x", want[i:i+1]); got != w {
			t.Errorf("result %d: %q, want %q", i, got, w)
		}
	}
	// Nothing known: "none".
	if f := a.Field(client("192.0.2.10", "h"), &policy.Txn{}); f != "Authentication-Results: mx.relay.test; none\r\n" {
		t.Errorf("empty: %q", f)
	}
}

// checkField is what the queue checks before it prepends a field.
func checkField(f string) error {
	for _, l := range strings.Split(strings.TrimSuffix(f, "\r\n"), "\r\n") {
		if len(l) > 998 || strings.ContainsAny(l, "\r\n\x00") {
			return io.ErrUnexpectedEOF
		}
	}
	return nil
}

func TestDropForgedAuthResults(t *testing.T) {
	a := &AuthResults{ServID: "mx.relay.test"}
	in := "Received: from x\r\n" +
		"Authentication-Results: mx.relay.test; spf=pass smtp.mailfrom=forged@bank.test\r\n" +
		"Authentication-Results: other.example; dkim=pass header.d=x.test\r\n" +
		"authentication-results:\r\n (comment) MX.Relay.Test;\r\n\tdmarc=pass\r\n" +
		"ARC-Authentication-Results: i=1; mx.relay.test; spf=pass\r\n" +
		"Subject: hi\r\n" +
		"\r\n" +
		"Authentication-Results: mx.relay.test; body line, kept\r\n"
	want := "Received: from x\r\n" +
		"Authentication-Results: other.example; dkim=pass header.d=x.test\r\n" +
		"ARC-Authentication-Results: i=1; mx.relay.test; spf=pass\r\n" +
		"Subject: hi\r\n" +
		"\r\n" +
		"Authentication-Results: mx.relay.test; body line, kept\r\n"
	for _, chunk := range []int{1, 3, 17, len(in)} {
		var out bytes.Buffer
		ch := (&policy.Chain{}).Add(a)
		w := ch.HeaderFilter(&policy.Conn{}, &policy.Txn{}, &out)
		for b := []byte(in); len(b) > 0; {
			n := min(chunk, len(b))
			if k, err := w.Write(b[:n]); k != n || err != nil {
				t.Fatal(k, err)
			}
			b = b[n:]
		}
		w.(interface{ Flush() error }).Flush()
		if out.String() != want {
			t.Errorf("chunk %d:\n%s\nwant:\n%s", chunk, out.String(), want)
		}
	}
}

func TestServIDOf(t *testing.T) {
	for in, want := range map[string]string{
		" mx.relay.test; spf=pass":         "mx.relay.test",
		" (c (nested)) mx.relay.test 1; x": "mx.relay.test",
		"mx.relay.test":                    "mx.relay.test",
		" ":                                "",
		" (unclosed":                       "",
	} {
		if got := ServIDOf(in); got != want {
			t.Errorf("ServIDOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseExemptions(t *testing.T) {
	m, err := ParseExemptions("exempt", strings.NewReader("# lists\nlists.example.org\n\nEXAMPLE.net # comment\n"))
	if err != nil || !m["lists.example.org"] || !m["example.net"] || len(m) != 2 {
		t.Errorf("%v %v", m, err)
	}
	for in, want := range map[string]string{
		"ok.test\nbad domain\n":   "exempt:2: one domain per line",
		"a@b.test\n":              "exempt:1: one domain per line",
		"ok.test\n\n-bad-.test\n": "exempt:3: ",
	} {
		if _, err := ParseExemptions("exempt", strings.NewReader(in)); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: %v, want %s...", in, err, want)
		}
	}
}
