package config

import (
	"math"
	"testing"
	"time"
)

func TestDurationText(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"300s", 300 * time.Second, true},
		{"5m", 5 * time.Minute, true},
		{"1h30m", 90 * time.Minute, true},
		{"1.5h", 90 * time.Minute, true},
		{"250ms", 250 * time.Millisecond, true},
		{"3d", 72 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true},
		{"2d0.5h", 48*time.Hour + 30*time.Minute, true},
		{"0", 0, true},
		{"+5m", 5 * time.Minute, true},
		{"-5m", -5 * time.Minute, true}, // parses; Validate rejects it
		{"-1d12h", -36 * time.Hour, true},
		{"106751d23h47m16.854775807s", math.MaxInt64, true},
		{"-2562047h47m16.854775808s", math.MinInt64, true},

		{"", 0, false},
		{"3x", 0, false},
		{"5", 0, false},       // no unit
		{"0x10", 0, false},    // no hex
		{"3D", 0, false},      // units are case-sensitive
		{"d", 0, false},       // no day count
		{"1.5d", 0, false},    // whole days only
		{"1d-2h", 0, false},   // no sign inside
		{"1d1d", 0, false},    // one day part
		{"1dd", 0, false},     // one day part
		{"--5m", 0, false},    // one sign
		{"-+5m", 0, false},    // one sign
		{" 5m", 0, false},     // no spaces
		{"5m ", 0, false},     // no spaces
		{"1d 2h", 0, false},   // no spaces
		{"106752d", 0, false}, // overflow
		{"106751d24h", 0, false},
		{"99999999999999999999d", 0, false},
		{"3000000h", 0, false},
	} {
		var d Duration
		err := d.UnmarshalText([]byte(tc.in))
		if tc.ok && (err != nil || d.D() != tc.want) {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", tc.in, d.D(), err, tc.want)
		}
		if !tc.ok && err == nil {
			t.Errorf("UnmarshalText(%q) = %v, want an error", tc.in, d.D())
		}
	}
}

func TestDurationMarshal(t *testing.T) {
	for _, tc := range []struct {
		in   time.Duration
		want string
	}{
		{72 * time.Hour, "3d"},
		{24 * time.Hour, "1d"},
		{-72 * time.Hour, "-3d"},
		{36 * time.Hour, "36h0m0s"},
		{5 * time.Minute, "5m0s"},
		{4000 * time.Second, "1h6m40s"},
		{1500 * time.Millisecond, "1.5s"},
		{0, "0s"},
	} {
		b, err := Duration(tc.in).MarshalText()
		if err != nil || string(b) != tc.want {
			t.Errorf("MarshalText(%v) = %q, %v; want %q", tc.in, b, err, tc.want)
		}
	}
}

func TestSizeText(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"10240000", 10240000, true},
		{"1B", 1, true},
		{"1KB", 1000, true},
		{"10MB", 10000000, true},
		{"2GB", 2000000000, true},
		{"512KiB", 512 << 10, true},
		{"25MiB", 25 << 20, true},
		{"1GiB", 1 << 30, true},
		{"007", 7, true},
		{"9223372036854775807", math.MaxInt64, true},
		{"8589934591GiB", 8589934591 << 30, true},

		{"", 0, false},
		{"MB", 0, false},
		{"0x10", 0, false},
		{"-1", 0, false},
		{"-1MB", 0, false},
		{"+1", 0, false},
		{"1.5MB", 0, false},
		{"1_000", 0, false},
		{"10mb", 0, false}, // units are case-sensitive
		{"10Mb", 0, false},
		{"10kB", 0, false},
		{"10TB", 0, false},
		{"10 MB", 0, false},
		{" 10", 0, false},
		{"10MiB ", 0, false},
		{"9223372036854775808", 0, false}, // overflow
		{"8589934592GiB", 0, false},
		{"9223372036854776KB", 0, false},
	} {
		var s Size
		err := s.UnmarshalText([]byte(tc.in))
		if tc.ok && (err != nil || int64(s) != tc.want) {
			t.Errorf("UnmarshalText(%q) = %d, %v; want %d", tc.in, s, err, tc.want)
		}
		if !tc.ok && err == nil {
			t.Errorf("UnmarshalText(%q) = %d, want an error", tc.in, s)
		}
	}
}

func TestSizeMarshal(t *testing.T) {
	for _, tc := range []struct {
		in   int64
		want string
	}{
		{10240000, "10240000"},
		{25 << 20, "25MiB"},
		{10000000, "10MB"},
		{1 << 30, "1GiB"},
		{3000000000, "3GB"},
		{512 << 10, "524288"},
		{1000, "1000"},
		{1, "1"},
		{0, "0"},
	} {
		b, err := Size(tc.in).MarshalText()
		if err != nil || string(b) != tc.want {
			t.Errorf("MarshalText(%d) = %q, %v; want %q", tc.in, b, err, tc.want)
		}
	}
}

// FuzzUnits checks that MarshalText and UnmarshalText agree on every value.
func FuzzUnits(f *testing.F) {
	for _, v := range []int64{0, 1, 1000, 10240000, 25 << 20, 72 * int64(time.Hour), math.MaxInt64, math.MinInt64} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v int64) {
		var d Duration
		text, _ := Duration(v).MarshalText()
		if err := d.UnmarshalText(text); err != nil || int64(d) != v {
			t.Errorf("Duration(%d) -> %q -> %d, %v", v, text, d, err)
		}
		if v < 0 {
			return
		}
		var s Size
		text, _ = Size(v).MarshalText()
		if err := s.UnmarshalText(text); err != nil || int64(s) != v {
			t.Errorf("Size(%d) -> %q -> %d, %v", v, text, s, err)
		}
	})
}
