package greylist

import (
	"fmt"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// commits is the number of write transactions committed to g's file: the
// transaction ID that a read transaction sees, which every commit (even
// an empty one) increases by one.
func commits(t testing.TB, g *Greylist) int {
	t.Helper()
	id := 0
	if err := g.Store.db.View(func(tx *bolt.Tx) error {
		id = tx.ID()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return id
}

// pass takes a new triplet through its delay; the clock moves by
// DefaultDelay.
func pass(t *testing.T, g *Greylist, advance func(time.Duration), ip, from, to string) {
	t.Helper()
	if got := try(g, client(ip), from, to); got != greylisted {
		t.Fatalf("%s %s %s first attempt: %q", ip, from, to, got)
	}
	advance(DefaultDelay)
	if got := try(g, client(ip), from, to); got != "" {
		t.Fatalf("%s %s %s retry: %q", ip, from, to, got)
	}
}

// A spambot hammering a new triplet before its delay is over is answered
// 450 each time and commits nothing after the first attempt.
func TestGreylistTooEarlyWritesNothing(t *testing.T) {
	g, clk := newTest(t)
	c := client("192.0.2.10")
	if got := try(g, c, "bot@src.test", "b@dst.test"); got != greylisted {
		t.Fatalf("first attempt: %q", got)
	}
	before := commits(t, g)
	for range 20 {
		clk.Advance(10 * time.Second)
		if got := try(g, c, "bot@src.test", "b@dst.test"); got != greylisted {
			t.Fatalf("retry at %v: %q", clk.Now(), got)
		}
	}
	if n := commits(t, g) - before; n != 0 {
		t.Errorf("20 retries too early committed %d write transactions, want 0", n)
	}
}

// A known triplet used again within LastUseRefresh commits nothing; once
// the interval is over its last use is rewritten once, and the 36 days are
// then counted from there.
func TestGreylistKnownRefresh(t *testing.T) {
	g, clk := newTest(t)
	pass(t, g, clk.Advance, "192.0.2.10", "a@src.test", "b@dst.test")
	passed := clk.Now()
	c := client("192.0.2.10")
	before := commits(t, g)
	for range 59 {
		clk.Advance(time.Minute)
		if got := try(g, c, "a@src.test", "b@dst.test"); got != "" {
			t.Fatalf("known triplet at %v: %q", clk.Now(), got)
		}
	}
	if n := commits(t, g) - before; n != 0 {
		t.Errorf("59 uses within %v committed %d write transactions, want 0", LastUseRefresh, n)
	}
	clk.Advance(time.Minute) // LastUseRefresh after the pass
	if got := try(g, c, "a@src.test", "b@dst.test"); got != "" {
		t.Fatalf("known triplet after %v: %q", LastUseRefresh, got)
	}
	if got := try(g, c, "a@src.test", "b@dst.test"); got != "" {
		t.Fatalf("known triplet again: %q", got)
	}
	if n := commits(t, g) - before; n != 1 {
		t.Errorf("uses after %v committed %d write transactions, want 1 (the refresh)", LastUseRefresh, n)
	}
	// Past PassTTL from the pass, within PassTTL from the refresh.
	clk.Advance(passed.Add(DefaultPassTTL + time.Minute).Sub(clk.Now()))
	if got := try(g, c, "a@src.test", "b@dst.test"); got != "" {
		t.Errorf("PassTTL after the pass, refreshed an hour later: %q", got)
	}
}

// An allowlisted client network's RCPTs commit nothing within
// LastUseRefresh, and refresh its last use after it.
func TestGreylistAllowlistedRefresh(t *testing.T) {
	g, clk := newTest(t)
	g.AutoAllow = 2
	for _, to := range []string{"a@dst.test", "b@dst.test"} {
		pass(t, g, clk.Advance, "198.51.100.5", "s@src.test", to)
	}
	passed := clk.Now()
	before := commits(t, g)
	for i := range 30 {
		clk.Advance(time.Minute)
		if got := try(g, client("198.51.100.9"), "s@src.test", fmt.Sprintf("n%d@dst.test", i)); got != "" {
			t.Fatalf("allowlisted network, new triplet %d: %q", i, got)
		}
	}
	if n := commits(t, g) - before; n != 0 {
		t.Errorf("30 RCPTs of an allowlisted network committed %d write transactions, want 0", n)
	}
	clk.Advance(LastUseRefresh)
	if got := try(g, client("198.51.100.9"), "s@src.test", "late@dst.test"); got != "" {
		t.Fatalf("allowlisted network after %v: %q", LastUseRefresh, got)
	}
	if n := commits(t, g) - before; n != 1 {
		t.Errorf("RCPT after %v committed %d write transactions, want 1 (the refresh)", LastUseRefresh, n)
	}
	clk.Advance(passed.Add(DefaultPassTTL + time.Minute).Sub(clk.Now()))
	if got := try(g, client("198.51.100.9"), "s@src.test", "later@dst.test"); got != "" {
		t.Errorf("PassTTL after the passes, refreshed later: %q", got)
	}
}

// A PassTTL shorter than 100 hours refreshes at PassTTL/100, so a triplet
// in steady use does not expire.
func TestGreylistShortPassTTL(t *testing.T) {
	g, clk := newTest(t)
	g.PassTTL = 10 * time.Minute
	pass(t, g, clk.Advance, "192.0.2.10", "a@src.test", "b@dst.test")
	for range 20 {
		clk.Advance(2 * time.Minute)
		if got := try(g, client("192.0.2.10"), "a@src.test", "b@dst.test"); got != "" {
			t.Fatalf("triplet used every 2 minutes, PassTTL 10m, at %v: %q", clk.Now(), got)
		}
	}
}

// Concurrent RCPTs of one new triplet are all greylisted and leave one
// entry, which the retry after the delay passes.
func TestGreylistConcurrentNew(t *testing.T) {
	g, clk := newTest(t)
	c := client("192.0.2.10")
	got := make([]string, 16)
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() { got[i] = try(g, c, "a@src.test", "b@dst.test") })
	}
	wg.Wait()
	for i, r := range got {
		if r != greylisted {
			t.Errorf("concurrent first attempt %d: %q", i, r)
		}
	}
	n := 0
	if err := g.Store.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketTriplets).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d triplet entries, want 1", n)
	}
	clk.Advance(DefaultDelay)
	if r := try(g, c, "a@src.test", "b@dst.test"); r != "" {
		t.Errorf("retry after the delay: %q", r)
	}
}

// Concurrent passes of different triplets of one network all count
// towards its allowlisting: the write transaction decides on the current
// count, not on the one its read transaction saw.
func TestGreylistConcurrentPasses(t *testing.T) {
	g, clk := newTest(t)
	g.AutoAllow = 8
	c := client("198.51.100.5")
	to := func(i int) string { return fmt.Sprintf("r%d@dst.test", i) }
	for i := range g.AutoAllow {
		if got := try(g, c, "s@src.test", to(i)); got != greylisted {
			t.Fatalf("%s first attempt: %q", to(i), got)
		}
	}
	clk.Advance(DefaultDelay)
	got := make([]string, g.AutoAllow)
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() { got[i] = try(g, c, "s@src.test", to(i)) })
	}
	wg.Wait()
	for i, r := range got {
		if r != "" {
			t.Errorf("concurrent retry of %s: %q", to(i), r)
		}
	}
	if r := try(g, client("198.51.100.200"), "new@src.test", "new@dst.test"); r != "" {
		t.Errorf("new triplet after %d concurrent passes: %q", g.AutoAllow, r)
	}
}

// A known triplet's RCPT: a read transaction (run with
// -bench=CheckRcptKnown -benchtime=200x).
func BenchmarkCheckRcptKnown(b *testing.B) {
	s, err := Open(b.TempDir() + "/greylist.db")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	g := &Greylist{Store: s, Now: func() time.Time { return now }}
	c := client("192.0.2.10")
	try(g, c, "a@src.test", "b@dst.test")
	now = now.Add(DefaultDelay)
	if got := try(g, c, "a@src.test", "b@dst.test"); got != "" {
		b.Fatalf("retry: %q", got)
	}
	before := commits(b, g)
	for b.Loop() {
		if got := try(g, c, "a@src.test", "b@dst.test"); got != "" {
			b.Fatalf("known: %q", got)
		}
	}
	if n := commits(b, g) - before; n != 0 {
		b.Errorf("%d write transactions for a known triplet", n)
	}
}
