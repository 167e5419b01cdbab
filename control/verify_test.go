package control

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxedge/mxedge/verifycache"
)

// fakeVerifier records the addresses the routes hand over.
type fakeVerifier struct {
	mu   sync.Mutex
	seen []string
}

func (f *fakeVerifier) saw(addr string) {
	f.mu.Lock()
	f.seen = append(f.seen, addr)
	f.mu.Unlock()
}

func (f *fakeVerifier) Show(addr string) (verifycache.Lookup, error) {
	f.saw(addr)
	if !strings.Contains(addr, "@") || strings.HasPrefix(addr, "@") {
		return verifycache.Lookup{}, fmt.Errorf("%w: %q", verifycache.ErrBadAddress, addr)
	}
	return verifycache.Lookup{Addr: addr, Mode: "probe", Answer: "accept", Valid: true,
		Entry: &verifycache.Entry{Addr: addr, State: verifycache.StateExists, Reply: "250 2.1.5 Ok"}}, nil
}

func (f *fakeVerifier) Probe(ctx context.Context, addr string) (verifycache.ProbeReport, error) {
	f.saw(addr)
	if strings.HasSuffix(addr, "@off.test") {
		return verifycache.ProbeReport{}, fmt.Errorf("%w: off.test (mode off)", verifycache.ErrNotProbed)
	}
	return verifycache.ProbeReport{ProbeResult: verifycache.ProbeResult{Addr: addr, Route: "10.0.0.25:25",
		Result: verifycache.ResultUnknown, Reply: "550 5.1.1 no", Transcript: []string{"C: RCPT TO:<" + addr + ">", "S: 550 5.1.1 no"}}}, nil
}

func (f *fakeVerifier) Forget(addr string) (string, error) {
	f.saw(addr)
	if strings.HasPrefix(addr, "none@") {
		return addr, fmt.Errorf("%w for %s", verifycache.ErrNotFound, addr)
	}
	if strings.HasPrefix(addr, "fail@") {
		return addr, fmt.Errorf("verifycache: forget %s: disk on fire", addr)
	}
	return strings.ToLower(addr), nil
}

func (f *fakeVerifier) Stats() (verifycache.Stats, error) {
	return verifycache.Stats{Lookups: 10, Hits: 9, HitRate: 0.9, Probes: 1, CatchAll: []string{"catch.test"},
		Entries: map[string]int{"exists": 5}}, nil
}

func serveVerify(t *testing.T, v Verifier) (*Client, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	s := New(&streamQueue{}, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	s.HandleVerify(v)
	path := SocketPath(t.TempDir())
	ln, err := s.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return NewClient(path), logs
}

func TestVerifyRoutes(t *testing.T) {
	fv := &fakeVerifier{}
	c, logs := serveVerify(t, fv)
	ctx := context.Background()

	// Addresses travel path-escaped and arrive as typed.
	odd := `"a/b?c%d #e"@Example.ORG`
	l, err := c.VerifyShow(ctx, odd)
	if err != nil || l.Addr != odd || l.Entry == nil || l.Entry.State != verifycache.StateExists {
		t.Errorf("show: %+v, %v", l, err)
	}
	rep, err := c.VerifyProbe(ctx, "nobody@relay.test")
	if err != nil || rep.Result != verifycache.ResultUnknown || len(rep.Transcript) != 2 {
		t.Errorf("probe: %+v, %v", rep, err)
	}
	if addr, err := c.VerifyForget(ctx, "Alice@relay.test"); err != nil || addr != "alice@relay.test" {
		t.Errorf("forget: %q, %v", addr, err)
	}
	st, err := c.VerifyStats(ctx)
	if err != nil || st.Lookups != 10 || st.HitRate != 0.9 || len(st.CatchAll) != 1 || st.Entries["exists"] != 5 {
		t.Errorf("stats: %+v, %v", st, err)
	}
	fv.mu.Lock()
	if want := []string{odd, "nobody@relay.test", "Alice@relay.test"}; strings.Join(fv.seen, "|") != strings.Join(want, "|") {
		t.Errorf("verifier saw %q, want %q", fv.seen, want)
	}
	fv.mu.Unlock()
	for _, want := range []string{"msg=admin action=verify-probe to=<nobody@relay.test> result=unknown",
		"msg=admin action=verify-forget to=<alice@relay.test>"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}

	// Errors: 400, 404, 500, and the client's own check.
	for _, tc := range []struct {
		name   string
		call   func() error
		status int
		msg    string
	}{
		{"bad address", func() error { _, err := c.VerifyShow(ctx, "@relay.test"); return err }, http.StatusBadRequest, "bad address"},
		{"not probed", func() error { _, err := c.VerifyProbe(ctx, "x@off.test"); return err }, http.StatusBadRequest, "domain not verified by probes"},
		{"no entry", func() error { _, err := c.VerifyForget(ctx, "none@relay.test"); return err }, http.StatusNotFound, "no cache entry for none@relay.test"},
		{"internal", func() error { _, err := c.VerifyForget(ctx, "fail@relay.test"); return err }, http.StatusInternalServerError, "disk on fire"},
		{"no at sign", func() error { _, err := c.VerifyShow(ctx, "stats"); return err }, 0, `invalid address "stats"`},
	} {
		err := tc.call()
		if err == nil || apiStatus(err) != tc.status || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v (status %d), want %d with %q", tc.name, err, apiStatus(err), tc.status, tc.msg)
		}
	}
	if !strings.Contains(logs.String(), "level=ERROR msg=admin action=verify-forget") {
		t.Errorf("internal error not logged at ERROR:\n%s", logs.String())
	}
}
