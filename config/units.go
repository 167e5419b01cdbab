package config

import (
	"encoding"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

const day = 24 * time.Hour

var (
	_ encoding.TextMarshaler   = Duration(0)
	_ encoding.TextUnmarshaler = (*Duration)(nil)
	_ encoding.TextMarshaler   = Size(0)
	_ encoding.TextUnmarshaler = (*Size)(nil)
)

// UnmarshalText parses Go's time.ParseDuration syntax ("300s", "5m",
// "1h30m", "1.5h") and a leading whole number of days: "3d", "1d12h".
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := parseDuration(string(text))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes "3d" for a whole number of days and time.Duration's
// form ("5m0s", "1h6m40s") otherwise; UnmarshalText reads both back.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.String()), nil
}

// String returns the form written by MarshalText.
func (d Duration) String() string {
	if d != 0 && time.Duration(d)%day == 0 {
		return strconv.FormatInt(int64(time.Duration(d)/day), 10) + "d"
	}
	return time.Duration(d).String()
}

func parseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf(`invalid duration %q (examples: "300s", "5m", "1h30m", "3d", "1d12h")`, s)
	rest := strings.TrimLeft(s, "+-")
	if len(s)-len(rest) > 1 {
		return 0, bad
	}
	neg := strings.HasPrefix(s, "-")
	i := strings.IndexByte(rest, 'd')
	if i < 0 {
		// No day part: time.ParseDuration alone, but insist on a number
		// right after the sign.
		if !startsNumber(rest) {
			return 0, bad
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return 0, bad
		}
		return v, nil
	}
	if i == 0 || !allDigits(rest[:i]) {
		return 0, bad
	}
	days, err := strconv.ParseInt(rest[:i], 10, 64)
	if err != nil || days > math.MaxInt64/int64(day) {
		return 0, fmt.Errorf("duration %q is too large", s)
	}
	total := time.Duration(days) * day
	if rest = rest[i+1:]; rest != "" {
		if !startsNumber(rest) {
			return 0, bad
		}
		v, err := time.ParseDuration(rest)
		if err != nil {
			return 0, bad
		}
		if v > math.MaxInt64-total {
			return 0, fmt.Errorf("duration %q is too large", s)
		}
		total += v
	}
	if neg {
		total = -total
	}
	return total, nil
}

func startsNumber(s string) bool {
	return s != "" && (s[0] == '.' || '0' <= s[0] && s[0] <= '9')
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// sizeUnit returns the multiplier of a size unit; units are case-sensitive.
func sizeUnit(u string) (int64, bool) {
	switch u {
	case "", "B":
		return 1, true
	case "KB":
		return 1e3, true
	case "MB":
		return 1e6, true
	case "GB":
		return 1e9, true
	case "KiB":
		return 1 << 10, true
	case "MiB":
		return 1 << 20, true
	case "GiB":
		return 1 << 30, true
	}
	return 0, false
}

// UnmarshalText parses a non-negative decimal integer with an optional unit:
// B, KB, MB, GB (powers of 10) or KiB, MiB, GiB (powers of 2), e.g.
// "10240000", "10MB", "25MiB". A TOML integer is accepted as well (the
// decoder stores it directly, Size being an int64).
func (s *Size) UnmarshalText(text []byte) error {
	v, err := parseSize(string(text))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalText writes a whole number of GiB, MiB, GB or MB when exact
// ("25MiB", "10MB") and the plain byte count otherwise ("10240000").
func (s Size) MarshalText() ([]byte, error) {
	return []byte(s.String()), nil
}

// String returns the form written by MarshalText.
func (s Size) String() string {
	if s > 0 {
		for _, u := range [...]string{"GiB", "MiB", "GB", "MB"} {
			if m, _ := sizeUnit(u); int64(s)%m == 0 {
				return strconv.FormatInt(int64(s)/m, 10) + u
			}
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

const sizeSyntax = `want a byte count such as "10240000", "10MB" or "25MiB" (units B, KB, MB, GB, KiB, MiB, GiB)`

func parseSize(s string) (Size, error) {
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	mult, ok := sizeUnit(s[i:])
	if i == 0 || !ok {
		return 0, fmt.Errorf("invalid size %q: %s", s, sizeSyntax)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return Size(n * mult), nil
}
