package greylist

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/mxedge/mxedge/internal/fakeclock"
	"github.com/mxedge/mxedge/policy"
)

func newTest(t *testing.T) (*Greylist, *fakeclock.Clock) {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "greylist.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	clk := fakeclock.New(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	return &Greylist{Store: s, Now: clk.Now}, clk
}

// try is one RCPT of a delivery attempt; it returns the reply ("" for
// none).
func try(g *Greylist, c *policy.Conn, from, to string) string {
	r := g.CheckRcpt(context.Background(), c, &policy.Txn{From: from}, policy.Rcpt{Addr: to})
	if r.Err != nil {
		return "error: " + r.Err.Error()
	}
	if r.Reply == nil {
		return ""
	}
	return r.Reply.String()
}

const greylisted = "450 4.7.1 Greylisted, please try again later"

func client(ip string) *policy.Conn { return &policy.Conn{IP: netip.MustParseAddr(ip)} }

// A first attempt waits 5 minutes; a retry in the window passes; a retry
// after the window starts over; a passed triplet is remembered 36 days.
func TestGreylistTriplet(t *testing.T) {
	g, clk := newTest(t)
	c := client("192.0.2.10")
	if got := try(g, c, "a@src.test", "b@dst.test"); got != greylisted {
		t.Fatalf("first attempt: %q", got)
	}
	clk.Advance(4 * time.Minute)
	if got := try(g, c, "a@src.test", "b@dst.test"); got != greylisted {
		t.Errorf("retry after 4 min: %q", got)
	}
	// Another server of the same /24, another case: the same triplet.
	clk.Advance(time.Minute)
	if got := try(g, client("192.0.2.77"), "A@src.test", "b@DST.test"); got != "" {
		t.Errorf("retry after 5 min from the same /24: %q", got)
	}
	// Other triplets are not passed by it.
	for _, tc := range []struct{ ip, from, to string }{
		{"192.0.3.10", "a@src.test", "b@dst.test"},
		{"192.0.2.10", "x@src.test", "b@dst.test"},
		{"192.0.2.10", "a@src.test", "y@dst.test"},
	} {
		if got := try(g, client(tc.ip), tc.from, tc.to); got != greylisted {
			t.Errorf("%v: %q", tc, got)
		}
	}
	clk.Advance(35 * 24 * time.Hour)
	if got := try(g, c, "a@src.test", "b@dst.test"); got != "" {
		t.Errorf("passed triplet after 35 days: %q", got)
	}
	clk.Advance(36*24*time.Hour + time.Second)
	if got := try(g, c, "a@src.test", "b@dst.test"); got != greylisted {
		t.Errorf("passed triplet unused for 36 days: %q", got)
	}

	// A retry after the window (5 min + 1 day) starts over.
	if got := try(g, c, "late@src.test", "b@dst.test"); got != greylisted {
		t.Fatal(got)
	}
	clk.Advance(24*time.Hour + 6*time.Minute)
	if got := try(g, c, "late@src.test", "b@dst.test"); got != greylisted {
		t.Errorf("retry after the window: %q", got)
	}
	clk.Advance(5 * time.Minute)
	if got := try(g, c, "late@src.test", "b@dst.test"); got != "" {
		t.Errorf("retry of the new attempt: %q", got)
	}
}

// IPv6 clients are grouped by /64.
func TestGreylistIPv6(t *testing.T) {
	g, clk := newTest(t)
	try(g, client("2001:db8:1:2::10"), "a@src.test", "b@dst.test")
	clk.Advance(5 * time.Minute)
	if got := try(g, client("2001:db8:1:2:ffff::1"), "a@src.test", "b@dst.test"); got != "" {
		t.Errorf("same /64: %q", got)
	}
	if got := try(g, client("2001:db8:1:3::10"), "a@src.test", "b@dst.test"); got != greylisted {
		t.Errorf("other /64: %q", got)
	}
	if n := Network(netip.MustParseAddr("::ffff:192.0.2.9")).String(); n != "192.0.2.0/24" {
		t.Errorf("mapped IPv4: %s", n)
	}
}

// After 5 passed triplets a client network's new triplets are not
// delayed.
func TestGreylistAutoAllow(t *testing.T) {
	g, clk := newTest(t)
	c := client("198.51.100.5")
	for i := range 5 {
		to := string(rune('a'+i)) + "@dst.test"
		if got := try(g, c, "s@src.test", to); got != greylisted {
			t.Fatalf("%s first: %q", to, got)
		}
		clk.Advance(5 * time.Minute)
		if got := try(g, c, "s@src.test", to); got != "" {
			t.Fatalf("%s retry: %q", to, got)
		}
	}
	if got := try(g, client("198.51.100.200"), "new@src.test", "new@dst.test"); got != "" {
		t.Errorf("after 5 passes: %q", got)
	}
	if got := try(g, client("198.51.101.1"), "new@src.test", "new@dst.test"); got != greylisted {
		t.Errorf("other network: %q", got)
	}
}

// Trusted (allowlisted) clients, DNSWL hits and authenticated sessions are
// never greylisted.
func TestGreylistSkips(t *testing.T) {
	g, _ := newTest(t)
	for name, c := range map[string]*policy.Conn{
		"trusted": {IP: netip.MustParseAddr("192.0.2.1"), Trusted: true},
		"dnswl":   {IP: netip.MustParseAddr("192.0.2.2"), DNSWL: true},
		"auth":    {IP: netip.MustParseAddr("192.0.2.3"), AuthUser: "alice"},
	} {
		if got := try(g, c, "a@src.test", "b@dst.test"); got != "" {
			t.Errorf("%s: %q", name, got)
		}
	}
}

// Cleanup deletes triplets past their window and entries unused for 36
// days, and keeps the others.
func TestGreylistCleanup(t *testing.T) {
	g, clk := newTest(t)
	c := client("192.0.2.10")
	try(g, c, "a@src.test", "pending@dst.test")
	try(g, c, "a@src.test", "passed@dst.test")
	clk.Advance(5 * time.Minute)
	try(g, c, "a@src.test", "passed@dst.test")
	if n, err := g.Cleanup(clk.Now()); n != 0 || err != nil {
		t.Errorf("cleanup at once: %d %v", n, err)
	}
	clk.Advance(24*time.Hour + time.Minute)
	if n, err := g.Cleanup(clk.Now()); n != 1 || err != nil {
		t.Errorf("cleanup after a day: %d %v (want the pending triplet)", n, err)
	}
	clk.Advance(36 * 24 * time.Hour)
	if n, err := g.Cleanup(clk.Now()); n != 2 || err != nil {
		t.Errorf("cleanup after 36 days: %d %v (want the passed triplet and the client)", n, err)
	}
}

// Expired entries side by side are all deleted in one run: Cleanup deletes
// under a bbolt cursor and goes on with Next, which old bbolt versions
// answered by skipping the following key (etcd-io/bbolt#146).
func TestGreylistCleanupAdjacent(t *testing.T) {
	g, clk := newTest(t)
	c := client("192.0.2.10")
	for i := range 50 {
		try(g, c, "a@src.test", fmt.Sprintf("r%02d@dst.test", i))
	}
	clk.Advance(24*time.Hour + 10*time.Minute)
	if n, err := g.Cleanup(clk.Now()); n != 50 || err != nil {
		t.Errorf("cleanup of 50 expired triplets: %d deleted, %v", n, err)
	}
	if n, err := g.Cleanup(clk.Now()); n != 0 || err != nil {
		t.Errorf("second cleanup: %d deleted (left behind by the first), %v", n, err)
	}
}
