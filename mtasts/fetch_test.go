package mtasts

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mxedge/mxedge/mtasts/ststest"
	"github.com/mxedge/mxedge/resolver"
)

// Fetch and LookupRecord, the uncached pieces "mxedge doctor" uses: the
// policy as served, or an error that says what is wrong with it.
func TestFetchAndLookupRecord(t *testing.T) {
	e := newEnv(t)
	e.publish("example.org", "20250101", policyText("enforce", 86400, "mx1.example.org", "*.example.org"))
	e.publish("redirect.example", "1", "")
	e.srv.Set("redirect.example", ststest.Response{Status: 302, Location: "https://mta-sts.example.org/.well-known/mta-sts.txt"})
	e.publish("bad.example", "1", "version: STSv1\nmode: enforce\n")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	id, rec, err := LookupRecord(ctx, e.res, "Example.ORG.")
	if err != nil || id != "20250101" || rec != "v=STSv1; id=20250101;" {
		t.Fatalf("LookupRecord = %q, %q, %v", id, rec, err)
	}
	if _, _, err := LookupRecord(ctx, e.res, "bad domain"); !errors.Is(err, resolver.ErrInvalid) {
		t.Fatalf("not a domain name: %v, want resolver.ErrInvalid", err)
	}
	if _, _, err := LookupRecord(ctx, e.res, "none.example"); !errors.Is(err, ErrNoRecord) {
		t.Fatalf("no record: %v, want ErrNoRecord", err)
	}
	e.setTXT("bad.example", "v=STSv1; id=1", "v=STSv1; id=2")
	if _, _, err := LookupRecord(ctx, e.res, "bad.example"); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("two records: %v, want ErrInvalidRecord", err)
	}

	p, err := Fetch(ctx, e.client, "Example.ORG.")
	if err != nil || p.Mode != ModeEnforce || strings.Join(p.MX, " ") != "mx1.example.org *.example.org" || p.MaxAge != 24*time.Hour {
		t.Fatalf("Fetch = %+v, %v", p, err)
	}
	// A client given without the no-redirect rule still follows none.
	lax := *e.client
	lax.CheckRedirect = nil
	if _, err := Fetch(ctx, &lax, "redirect.example"); !errors.Is(err, errRedirect) {
		t.Errorf("redirect: %v, want %v", err, errRedirect)
	}
	if n := e.srv.Requests("example.org"); n != 1 {
		t.Errorf("%d requests to example.org, want 1 (the redirect was followed)", n)
	}
	if _, err := Fetch(ctx, e.client, "bad.example"); !errors.Is(err, errPolicy) || !strings.Contains(err.Error(), "max_age") {
		t.Errorf("invalid policy: %v", err)
	}
	if _, err := Fetch(ctx, nil, "example.org"); err == nil {
		t.Error("Fetch without a client succeeded")
	}
}
