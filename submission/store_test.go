package submission

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/mxedge/mxedge/internal/fakeclock"
)

// Counters survive closing and reopening; windows roll over.
func TestStorePersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "submission.db")
	clk := fakeclock.New(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	s, err := OpenStore(path, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	s.SaveTrusted(func() map[string]time.Time { return map[string]time.Time{"alice 192.0.2.1/32": clk.Now()} })
	for range 3 {
		s.record("alice", 4)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	u, found, err := ReadUsage(path, "alice")
	if err != nil || !found || u.HourMessages != 3 || u.DayRcpts != 12 {
		t.Fatalf("read back: %+v %v %v", u, found, err)
	}
	s, err = OpenStore(path, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Usage("alice"); got.HourMessages != 3 || got.HourRcpts != 12 {
		t.Errorf("reopened: %+v", got)
	}
	if tr := s.Trusted(); !tr["alice 192.0.2.1/32"].Equal(clk.Now()) {
		t.Errorf("trusted: %v", tr)
	}
	clk.Advance(time.Hour)
	if got := s.Usage("alice"); got.HourMessages != 0 || got.DayMessages != 3 {
		t.Errorf("after an hour: %+v", got)
	}
	clk.Advance(23 * time.Hour)
	if got := s.Usage("alice"); got.DayMessages != 0 {
		t.Errorf("after a day: %+v", got)
	}
}
