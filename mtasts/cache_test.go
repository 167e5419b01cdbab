package mtasts

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/mtasts/ststest"
	"github.com/mxedge/mxedge/resolver"
)

const day = 24 * time.Hour

func TestGetEnforce(t *testing.T) {
	e := newEnv(t)
	e.publish("example.org", "20250101T000000", policyText("enforce", 604800, "mx1.example.org", "*.mail.example.org"))
	c := e.newCache("")

	p := e.get(c, "Example.ORG.")
	if p == nil {
		t.Fatal("no policy")
	}
	if p.Mode != ModeEnforce || p.ID != "20250101T000000" || p.MaxAge != 7*day || !p.Fetched.Equal(e.clock.Now()) {
		t.Fatalf("policy %+v", p)
	}
	if want := []string{"mx1.example.org", "*.mail.example.org"}; !slices.Equal(p.MX, want) {
		t.Fatalf("MX %q, want %q", p.MX, want)
	}
	for host, want := range map[string]bool{
		"mx1.example.org":      true,
		"MX1.Example.Org.":     true,
		"a.mail.example.org":   true,
		"a.b.mail.example.org": false, // the wildcard is one label
		"mail.example.org":     false,
		"mx2.example.org":      false,
		"evil.org":             false,
	} {
		if got := p.Match(host); got != want {
			t.Errorf("Match(%q) = %v, want %v", host, got, want)
		}
	}
	if n := e.srv.Requests("example.org"); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
}

func TestGetTestingAndNone(t *testing.T) {
	e := newEnv(t)
	e.publish("testing.example", "1", policyText("testing", 86400, "mx.testing.example"))
	e.publish("none.example", "1", "version: STSv1\nmode: none\nmax_age: 86400\n")
	c := e.newCache("")
	if p := e.get(c, "testing.example"); p == nil || p.Mode != ModeTesting || !p.Match("mx.testing.example") {
		t.Fatalf("testing: %+v", p)
	}
	if p := e.get(c, "none.example"); p == nil || p.Mode != ModeNone || len(p.MX) != 0 {
		t.Fatalf("none: %+v", p)
	}
}

// Without a usable TXT record there is no policy, and nothing is fetched.
func TestGetNoRecord(t *testing.T) {
	e := newEnv(t)
	e.publish("example.org", "1", policyText("enforce", 86400, "mx.example.org"))
	c := e.newCache("")
	tests := []struct {
		name string
		txts []string
	}{
		{"NXDOMAIN", nil},
		{"other TXT", []string{"v=spf1 -all"}},
		{"two records", []string{"v=STSv1; id=1", "v=STSv1; id=2"}},
		{"bad id", []string{"v=STSv1; id=not-alnum"}},
		{"not first", []string{"id=1; v=STSv1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.setTXT("example.org", tt.txts...)
			if p := e.get(c, "example.org"); p != nil {
				t.Fatalf("policy %+v", p)
			}
		})
	}
	if n := e.srv.Requests("example.org"); n != 0 {
		t.Fatalf("%d requests, want 0", n)
	}
	// NODATA: the name exists without TXT.
	e.setTXT("example.org")
	e.dns.Add("_mta-sts.example.org. 300 IN A 127.0.0.9")
	if p := e.get(c, "example.org"); p != nil {
		t.Fatalf("NODATA: policy %+v", p)
	}
}

// The record's strings are joined without spaces (RFC 8461 section 3.1),
// and other TXT records beside it are ignored.
func TestGetSplitRecord(t *testing.T) {
	e := newEnv(t)
	e.publish("example.org", "1", policyText("enforce", 86400, "mx.example.org"))
	e.dns.Remove("_mta-sts.example.org.", dns.TypeTXT)
	e.dns.Add(`_mta-sts.example.org. 300 IN TXT "v=STS" "v1; id=abc" "123"`, `_mta-sts.example.org. 300 IN TXT "something else"`)
	c := e.newCache("")
	if p := e.get(c, "example.org"); p == nil || p.ID != "abc123" {
		t.Fatalf("policy %+v", p)
	}
}

func TestGetIDUnchangedNoRefetch(t *testing.T) {
	e := newEnv(t)
	e.publish("example.org", "1", policyText("enforce", 86400, "mx.example.org"))
	c := e.newCache("")
	for range 5 {
		if p := e.get(c, "example.org"); p == nil || p.ID != "1" {
			t.Fatalf("policy %+v", p)
		}
		e.clock.Advance(time.Hour)
	}
	if n := e.srv.Requests("example.org"); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
	if n := e.dns.Count("_mta-sts.example.org.", dns.TypeTXT); n < 5 {
		t.Fatalf("%d TXT lookups, want one per Get", n)
	}
}

func TestGetIDChangedRefetch(t *testing.T) {
	e := newEnv(t)
	e.publish("example.org", "1", policyText("enforce", 86400, "mx1.example.org"))
	c := e.newCache("")
	if p := e.get(c, "example.org"); !p.Match("mx1.example.org") {
		t.Fatalf("policy %+v", p)
	}
	e.publish("example.org", "2", policyText("enforce", 86400, "mx2.example.org"))
	p := e.get(c, "example.org")
	if p.ID != "2" || p.Match("mx1.example.org") || !p.Match("mx2.example.org") {
		t.Fatalf("policy %+v", p)
	}
	if n := e.srv.Requests("example.org"); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

func TestGetExpiry(t *testing.T) {
	e := newEnv(t)
	e.publish("example.org", "1", policyText("enforce", 3600, "mx.example.org"))
	c := e.newCache("")
	first := e.get(c, "example.org").Fetched
	e.clock.Advance(3599 * time.Second)
	if p := e.get(c, "example.org"); !p.Fetched.Equal(first) {
		t.Fatalf("refetched before expiry: %+v", p)
	}
	e.clock.Advance(time.Second)
	if p := e.get(c, "example.org"); !p.Fetched.Equal(e.clock.Now()) {
		t.Fatalf("not refetched at expiry: %+v", p)
	}
	if n := e.srv.Requests("example.org"); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

// RFC 8461 section 3.3: a valid cached policy stays in force when the
// new one cannot be fetched; a failed fetch is not retried for 5 minutes.
func TestGetFetchFailureKeepsCached(t *testing.T) {
	e := newEnv(t)
	e.publish("example.org", "1", policyText("enforce", 86400, "mx1.example.org"))
	c := e.newCache("")
	e.get(c, "example.org")

	e.setTXT("example.org", "v=STSv1; id=2")
	e.srv.Set("example.org", ststest.Response{Status: 500, Body: "oops"})
	if p := e.get(c, "example.org"); p == nil || p.ID != "1" || !p.Match("mx1.example.org") {
		t.Fatalf("policy %+v, want the cached one", p)
	}
	if !strings.Contains(e.log.String(), "level=WARN msg=\"mta-sts: policy fetch failed\" domain=example.org id=2") {
		t.Errorf("no warning logged:\n%s", e.log)
	}
	e.get(c, "example.org")
	if n := e.srv.Requests("example.org"); n != 2 {
		t.Fatalf("%d requests, want 2 (no retry within 5 minutes)", n)
	}
	e.clock.Advance(5 * time.Minute)
	e.get(c, "example.org")
	if n := e.srv.Requests("example.org"); n != 3 {
		t.Fatalf("%d requests, want 3", n)
	}

	// Once the cached policy expires, there is none.
	e.clock.Advance(day)
	if p := e.get(c, "example.org"); p != nil {
		t.Fatalf("policy %+v after expiry", p)
	}

	// DNS and HTTPS both fail: the cached policy still holds.
	e.publish("example.net", "1", policyText("enforce", 86400, "mx.example.net"))
	e.get(c, "example.net")
	e.dns.SetRcode("_mta-sts.example.net.", dns.TypeTXT, dns.RcodeServerFailure)
	e.srv.Set("example.net", ststest.Response{Status: 503})
	if p := e.get(c, "example.net"); p == nil || p.ID != "1" {
		t.Fatalf("policy %+v, want the cached one", p)
	}
	e.dns.SetRcode("_mta-sts.example.net.", dns.TypeTXT, dns.RcodeSuccess)
	e.setTXT("example.net")
	if p := e.get(c, "example.net"); p == nil || p.ID != "1" {
		t.Fatalf("TXT removed: policy %+v, want the cached one", p)
	}
}

// A temporary DNS failure without a cached policy is an error: the
// policy in force is unknown.
func TestGetTemporaryDNSFailure(t *testing.T) {
	e := newEnv(t)
	e.publish("example.org", "1", policyText("enforce", 86400, "mx.example.org"))
	e.dns.SetRcode("_mta-sts.example.org.", dns.TypeTXT, dns.RcodeServerFailure)
	c := e.newCache("")
	p, err := c.Get(context.Background(), "example.org")
	if p != nil || err == nil || !resolver.IsTemporary(err) {
		t.Fatalf("Get = %+v, %v; want a temporary error", p, err)
	}
	p, err = c.Get(context.Background(), "bad..domain")
	if p != nil || !errors.Is(err, resolver.ErrInvalid) {
		t.Fatalf("invalid domain: %+v, %v", p, err)
	}
}

// Policies that must be refused: each publishes a new id, so that the
// failure of one does not hold back the next.
func TestGetBadPolicy(t *testing.T) {
	e := newEnv(t)
	c := e.newCache("")
	ok := policyText("enforce", 86400, "mx.bad.example")
	tests := []struct {
		name string
		resp ststest.Response
	}{
		{"version", ststest.Response{Body: strings.Replace(ok, "STSv1", "STSv2", 1)}},
		{"no mode", ststest.Response{Body: "version: STSv1\nmx: mx.bad.example\nmax_age: 86400\n"}},
		{"bad mode", ststest.Response{Body: policyText("Enforce", 86400, "mx.bad.example")}},
		{"max_age too large", ststest.Response{Body: policyText("enforce", MaxMaxAge+1, "mx.bad.example")}},
		{"no max_age", ststest.Response{Body: "version: STSv1\nmode: enforce\nmx: mx.bad.example\n"}},
		{"enforce without mx", ststest.Response{Body: "version: STSv1\nmode: enforce\nmax_age: 86400\n"}},
		{"bad mx", ststest.Response{Body: policyText("enforce", 86400, "*.*.bad.example")}},
		{"garbage", ststest.Response{Body: "<html>hello</html>"}},
		{"media type", ststest.Response{Body: ok, ContentType: "text/html"}},
		{"no media type", ststest.Response{Body: ok, ContentType: "application/octet-stream"}},
		{"404", ststest.Response{Status: 404, Body: ok}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.publish("bad.example", "bad"+string(rune('a'+i)), "")
			e.srv.Set("bad.example", tt.resp)
			before := e.srv.Requests("bad.example")
			if p := e.get(c, "bad.example"); p != nil {
				t.Fatalf("policy %+v accepted", p)
			}
			if e.srv.Requests("bad.example") != before+1 {
				t.Fatal("not fetched")
			}
		})
	}
	// The same server with a good policy: accepted (the cases above
	// failed for their own reason).
	e.publish("bad.example", "good", ok)
	if p := e.get(c, "bad.example"); p == nil || p.Mode != ModeEnforce {
		t.Fatalf("good policy: %+v", p)
	}
}

// A certificate not valid for mta-sts.<domain> fails the fetch (RFC 8461
// section 3.3).
func TestGetWrongCertificate(t *testing.T) {
	e := newEnv(t)
	e.publish("badcert.example", "1", policyText("enforce", 86400, "mx.badcert.example"))
	c := e.newCache("")
	if p := e.get(c, "badcert.example"); p != nil {
		t.Fatalf("policy %+v accepted", p)
	}
	if !strings.Contains(e.log.String(), "certificate") {
		t.Fatalf("log does not say why:\n%s", e.log)
	}
}

// RFC 8461 section 3.3: redirects are not followed.
func TestGetRedirectNotFollowed(t *testing.T) {
	e := newEnv(t)
	e.publish("example.org", "1", policyText("enforce", 86400, "mx.example.org"))
	e.publish("redirect.example", "1", "")
	e.srv.Set("redirect.example", ststest.Response{Status: 302, Location: "https://mta-sts.example.org/.well-known/mta-sts.txt"})
	c := e.newCache("")
	if p := e.get(c, "redirect.example"); p != nil {
		t.Fatalf("policy %+v", p)
	}
	if n := e.srv.Requests("redirect.example"); n != 1 {
		t.Fatalf("%d requests to redirect.example", n)
	}
	if n := e.srv.Requests("example.org"); n != 0 {
		t.Fatalf("redirect followed: %d requests to example.org", n)
	}
	if !strings.Contains(e.log.String(), "redirect not followed") {
		t.Fatalf("log does not say why:\n%s", e.log)
	}
}

func TestGetBodyLimit(t *testing.T) {
	e := newEnv(t)
	c := e.newCache("")
	// pad fills a policy up to n bytes with an extension field.
	pad := func(n int) string {
		p := policyText("enforce", 86400, "mx.big.example")
		p += "x-pad: " + strings.Repeat("a", n-len(p)-len("x-pad: \r\n")) + "\r\n"
		if len(p) != n {
			t.Fatalf("padded to %d", len(p))
		}
		return p
	}
	e.publish("big.example", "1", pad(MaxPolicySize+1))
	if p := e.get(c, "big.example"); p != nil {
		t.Fatalf("policy of %d bytes accepted", MaxPolicySize+1)
	}
	e.publish("big.example", "2", pad(MaxPolicySize))
	if p := e.get(c, "big.example"); p == nil {
		t.Fatalf("policy of %d bytes refused:\n%s", MaxPolicySize, e.log)
	}
}

// Concurrent Gets for one domain share one fetch.
func TestGetConcurrent(t *testing.T) {
	e := newEnv(t)
	e.publish("busy.example", "1", policyText("enforce", 86400, "mx.busy.example"))
	e.srv.Set("busy.example", ststest.Response{Body: policyText("enforce", 86400, "mx.busy.example"), Delay: 200 * time.Millisecond})
	c := e.newCache("")
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			p, err := c.Get(context.Background(), "busy.example")
			if err != nil || p == nil || !p.Match("mx.busy.example") {
				t.Errorf("Get = %+v, %v", p, err)
			}
			if p != nil {
				p.MX[0] = "changed" // the caller's copy
			}
		})
	}
	wg.Wait()
	if n := e.srv.Requests("busy.example"); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
	if p := e.get(c, "busy.example"); p.MX[0] != "mx.busy.example" {
		t.Fatalf("cached policy modified through a copy: %q", p.MX)
	}
}

// A caller that gives up does not spoil the fetch for the next one.
func TestGetCallerGivesUp(t *testing.T) {
	e := newEnv(t)
	e.publish("busy.example", "1", "")
	e.srv.Set("busy.example", ststest.Response{Body: policyText("enforce", 86400, "mx.busy.example"), Delay: 300 * time.Millisecond})
	c := e.newCache("")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if p, err := c.Get(ctx, "busy.example"); p != nil || !errors.Is(err, context.DeadlineExceeded) || !resolver.IsTemporary(err) {
		t.Fatalf("Get = %+v, %v; want the deadline", p, err)
	}
	if p := e.get(c, "busy.example"); p == nil {
		t.Fatal("no policy")
	}
	if n := e.srv.Requests("busy.example"); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
}

func TestPersistence(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	e.publish("example.org", "1", policyText("enforce", 86400, "mx1.example.org", "*.example.org"))
	e.publish("none.example", "1", "version: STSv1\nmode: none\nmax_age: 3600\n")
	c := e.newCache(dir)
	want := e.get(c, "example.org")
	e.get(c, "none.example")

	// Restart while DNS fails: the policy seen before the restart holds,
	// without a fetch.
	e.dns.SetRcode("_mta-sts.example.org.", dns.TypeTXT, dns.RcodeServerFailure)
	e.clock.Advance(2 * time.Hour)
	c2 := e.newCache(dir)
	got := e.get(c2, "example.org")
	if got == nil || got.ID != want.ID || !slices.Equal(got.MX, want.MX) || got.Mode != want.Mode ||
		got.MaxAge != want.MaxAge || !got.Fetched.Equal(want.Fetched) {
		t.Fatalf("after restart: %+v, want %+v", got, want)
	}
	if n := e.srv.Requests("example.org"); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
	// none.example (max_age 3600) expired during the "downtime": not
	// loaded, so fetched again.
	if p := e.get(c2, "none.example"); p == nil || !p.Fetched.Equal(e.clock.Now()) {
		t.Fatalf("none.example: %+v", p)
	}

	// Past expiry, a restarted cache has nothing: DNS failure = error.
	e.clock.Advance(day)
	c3 := e.newCache(dir)
	if p, err := c3.Get(context.Background(), "example.org"); p != nil || !resolver.IsTemporary(err) {
		t.Fatalf("after expiry: %+v, %v", p, err)
	}

	// A damaged file is moved aside; the cache starts empty.
	file := filepath.Join(dir, "mtasts.json")
	if err := os.WriteFile(file, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	c4 := e.newCache(dir)
	if _, err := os.Stat(file + ".bad"); err != nil {
		t.Fatal(err)
	}
	if p := c4.valid("example.org"); p != nil {
		t.Fatalf("policy %+v from a damaged file", p)
	}
}

// A cache file with a policy that does not validate loses that policy
// only.
func TestLoadSkipsInvalid(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	now := e.clock.Now().Format(time.RFC3339)
	data := `{"version":1,"policies":{
		"good.example":{"mode":"enforce","mx":["mx.good.example"],"max_age":86400,"id":"1","fetched":"` + now + `"},
		"badmode.example":{"mode":"strict","mx":["mx.x"],"max_age":86400,"id":"1","fetched":"` + now + `"},
		"badmx.example":{"mode":"enforce","mx":["*.*.x"],"max_age":86400,"id":"1","fetched":"` + now + `"},
		"nomx.example":{"mode":"enforce","max_age":86400,"id":"1","fetched":"` + now + `"},
		"age.example":{"mode":"enforce","mx":["mx.x"],"max_age":99999999999,"id":"1","fetched":"` + now + `"},
		"Upper.example":{"mode":"enforce","mx":["mx.x"],"max_age":86400,"id":"1","fetched":"` + now + `"}
	}}`
	if err := os.WriteFile(filepath.Join(dir, "mtasts.json"), []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	c := e.newCache(dir)
	var got []string
	for d := range c.policies {
		got = append(got, d)
	}
	if !slices.Equal(got, []string{"good.example"}) {
		t.Fatalf("loaded %q", got)
	}
}

func TestRefresh(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	e.publish("example.org", "1", policyText("enforce", 86400, "mx.example.org"))
	e.publish("example.net", "1", policyText("enforce", 86400, "mx.example.net"))
	c := e.newCache(dir)
	start := e.clock.Now()
	e.get(c, "example.org")
	e.get(c, "example.net")

	// Not due before half of max_age.
	e.clock.Advance(11 * time.Hour)
	c.Refresh(context.Background())
	if n := e.srv.Requests("example.org"); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}

	// Due: example.org is refetched, with the same id. example.net
	// withdrew its record: it is left to expire.
	e.setTXT("example.net")
	e.clock.Advance(2 * time.Hour)
	c.Refresh(context.Background())
	if n := e.srv.Requests("example.org"); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
	if n := e.srv.Requests("example.net"); n != 1 {
		t.Fatalf("example.net: %d requests, want 1", n)
	}

	// A day after the first fetch, example.org is still valid thanks to
	// the refresh, also after a restart while DNS fails.
	e.clock.Advance(start.Add(day + time.Hour).Sub(e.clock.Now()))
	e.dns.SetRcode("_mta-sts.example.org.", dns.TypeTXT, dns.RcodeServerFailure)
	if p := e.get(e.newCache(dir), "example.org"); p == nil {
		t.Fatal("refreshed policy expired")
	}
	// example.net expired and is dropped by Refresh.
	c.Refresh(context.Background())
	c.mu.Lock()
	_, ok := c.policies["example.net"]
	c.mu.Unlock()
	if ok {
		t.Fatal("expired policy kept")
	}

	// That Refresh found example.org due again (refetched at 13 h, due
	// at 25 h) but could not look up its record. A refresh whose fetch
	// fails keeps the policy too, and says so.
	if !strings.Contains(e.log.String(), `level=WARN msg="mta-sts: refresh: TXT lookup failed, keeping cached policy" domain=example.org`) {
		t.Fatalf("failed lookup not logged:\n%s", e.log)
	}
	e.dns.SetRcode("_mta-sts.example.org.", dns.TypeTXT, dns.RcodeSuccess)
	e.srv.Set("example.org", ststest.Response{Status: 500})
	e.clock.Advance(time.Minute)
	c.Refresh(context.Background())
	if n := e.srv.Requests("example.org"); n != 3 {
		t.Fatalf("%d requests, want 3", n)
	}
	if p := c.valid("example.org"); p == nil {
		t.Fatal("policy dropped after a failed refresh")
	}
	if !strings.Contains(e.log.String(), `level=WARN msg="mta-sts: policy fetch failed" domain=example.org`) {
		t.Fatalf("failed refresh not logged:\n%s", e.log)
	}
}

func TestNewNeedsResolver(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without a resolver succeeded")
	}
}

// The default client follows no redirects, and neither does a client
// given without that rule.
func TestHTTPClient(t *testing.T) {
	c := httpClient(nil, nil)
	if c.CheckRedirect == nil || c.Timeout != FetchTimeout {
		t.Fatalf("default client %+v", c)
	}
	given := &http.Client{Timeout: time.Hour}
	c = httpClient(given, nil)
	if c.CheckRedirect == nil || c.Timeout != FetchTimeout || given.CheckRedirect != nil {
		t.Fatalf("client %+v", c)
	}
}
