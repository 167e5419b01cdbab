package auth

import (
	"net/netip"
	"testing"
	"time"

	"github.com/mxedge/mxedge/internal/fakeclock"
)

// The lockout sequence of one client network: five plain failures,
// delayed ones up to the ninth, the tenth locks it out for 15 minutes.
func TestGuardNetwork(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	g := NewGuard(GuardOptions{Now: clk.Now})
	ip := netip.MustParseAddr("192.0.2.7")
	for i := 1; i <= 10; i++ {
		v := g.Failed(ip, "user"+string(rune('a'+i)))
		wantDelay := i > 5 && i < 10
		if v.Failures != i || (v.Delay > 0) != wantDelay || v.Locked != (i == 10) {
			t.Fatalf("failure %d: %+v", i, v)
		}
	}
	if !g.Locked(ip) || !g.Locked(netip.MustParseAddr("::ffff:192.0.2.7")) {
		t.Fatal("not locked")
	}
	if c := g.Counts(); c != (GuardCounts{Failures: 10, Lockouts: 1}) {
		t.Errorf("counts after the lockout: %+v, want 10 failures, 1 lockout", c)
	}
	if g.Locked(netip.MustParseAddr("192.0.2.8")) {
		t.Fatal("the neighbour is locked")
	}
	clk.Advance(15*time.Minute - time.Second)
	if !g.Locked(ip) {
		t.Fatal("lockout ended early")
	}
	clk.Advance(time.Second)
	if g.Locked(ip) {
		t.Fatal("still locked after 15 minutes")
	}
	// Failures older than the window no longer count.
	if v := g.Failed(ip, "x"); v.Failures != 1 {
		t.Errorf("after the window: %+v", v)
	}
}

// An IPv6 client is counted per /64.
func TestGuardIPv6(t *testing.T) {
	g := NewGuard(GuardOptions{})
	for i := range 10 {
		g.Failed(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}), "u")
	}
	if !g.Locked(netip.MustParseAddr("2001:db8::ffff")) {
		t.Error("/64 not locked")
	}
	if g.Locked(netip.MustParseAddr("2001:db8:0:1::1")) {
		t.Error("another /64 locked")
	}
}

// A user name attacked from many networks is slowed down, never locked
// out, and its owner's own network (a success within 30 days) is not
// slowed.
func TestGuardUser(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	g := NewGuard(GuardOptions{Now: clk.Now})
	home := netip.MustParseAddr("198.51.100.1")
	g.Succeeded(home, "alice")
	clk.Advance(29 * 24 * time.Hour)
	var last Verdict
	for i := range 20 {
		last = g.Failed(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), "alice")
	}
	if last.Delay == 0 || last.Locked {
		t.Fatalf("attacked user: %+v", last)
	}
	if v := g.Failed(home, "alice"); v.Delay != 0 || v.Locked {
		t.Errorf("the owner's network is slowed: %+v", v)
	}
	// Trust ends after 30 days; it survives a save and load.
	g2 := NewGuard(GuardOptions{Now: clk.Now})
	g2.LoadTrusted(g.Trusted())
	for i := range 20 {
		g2.Failed(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), "alice")
	}
	if v := g2.Failed(home, "alice"); v.Delay != 0 {
		t.Errorf("loaded trust lost: %+v", v)
	}
	clk.Advance(2 * 24 * time.Hour)
	for i := range 20 {
		g2.Failed(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), "alice")
	}
	if v := g2.Failed(home, "alice"); v.Delay == 0 {
		t.Errorf("trust older than 30 days still exempts: %+v", v)
	}
}
