// Package domainname puts a mail domain into the one normal form every
// stage compares: lowercase, internationalised labels as A-labels (RFC 5890,
// IDNA2008 lookup profile via golang.org/x/net/idna), no trailing dot. The
// MX listener's relay check, the recipient verification cache key, the
// configuration's domain keys and MTA-STS policy names must agree exactly,
// so they share this function; Options cover what differs between them
// (names from DNS carry a trailing dot; a host name is not an IP address).
package domainname

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// ErrInvalid is wrapped by every Normalize error.
var ErrInvalid = errors.New("not a valid domain name")

// Options relax or tighten Normalize; the zero value is the form of a
// domain from an SMTP command.
type Options struct {
	// TrailingDot accepts one trailing dot and drops it (names in DNS
	// answers and MTA-STS policies are written that way). Without it a
	// trailing dot is refused: "example.org." must not slip past a relay
	// domain comparison nor reach a backend that treats it differently.
	TrailingDot bool
	// Hostname refuses what cannot be a host name: an IP address, and a
	// numeric last label (RFC 1123 section 2.1).
	Hostname bool
	// ASCII refuses U-labels instead of converting them (a host name in
	// the configuration is written in A-labels).
	ASCII bool
}

// invalid is a Normalize error: Error says what is wrong, for an operator;
// errors.Is(err, ErrInvalid) holds.
type invalid struct{ why string }

func (e invalid) Error() string        { return e.why }
func (e invalid) Is(target error) bool { return target == ErrInvalid }

func fail(format string, args ...any) error { return invalid{fmt.Sprintf(format, args...)} }

// Normalize returns d lowercased with U-labels converted to A-labels. It
// refuses a trailing dot (unless o.TrailingDot), an empty label, invalid
// UTF-8, a label over 63 octets or starting or ending with a hyphen,
// anything but letters, digits and hyphens, and names over 253 octets
// (RFC 1035 section 2.3.4, RFC 5321 section 4.1.2). The error says why.
func Normalize(d string, o ...Options) (string, error) {
	var opt Options
	if len(o) > 0 {
		opt = o[0]
	}
	switch {
	case d == "":
		return "", fail("empty")
	case !utf8.ValidString(d):
		return "", fail("invalid UTF-8")
	case strings.HasSuffix(d, ".") && opt.TrailingDot:
		d = d[:len(d)-1]
	case strings.HasSuffix(d, ".") && d != ".":
		return "", fail("trailing dot not allowed (write %q)", strings.TrimSuffix(d, "."))
	}
	if opt.Hostname && net.ParseIP(d) != nil {
		return "", fail("an IP address, not a name")
	}
	if !opt.ASCII && (!isASCII(d) || strings.Contains(strings.ToLower(d), "xn--")) {
		a, err := idna.Lookup.ToASCII(d)
		if err != nil {
			return "", fail("%v", err)
		}
		// The result must be its own normal form: x/net/idna accepts some
		// U-labels (mapped, bidi) whose A-label it then refuses.
		if again, err := idna.Lookup.ToASCII(strings.ToLower(a)); err != nil || again != strings.ToLower(a) {
			return "", fail("IDN %q has no stable A-label form", d)
		}
		d = a
	}
	d = strings.ToLower(d)
	if len(d) > 253 {
		return "", fail("%d characters, at most 253 allowed", len(d))
	}
	labels := strings.Split(d, ".")
	for _, l := range labels {
		if err := checkLabel(l); err != nil {
			return "", err
		}
	}
	if opt.Hostname && allDigits(labels[len(labels)-1]) {
		return "", fail("last label is numeric")
	}
	return d, nil
}

// checkLabel checks one LDH label (RFC 1035 section 2.3.1, RFC 5890).
func checkLabel(l string) error {
	if l == "" {
		return fail("empty label")
	}
	if len(l) > 63 {
		return fail("label %q has %d characters, at most 63 allowed", l, len(l))
	}
	for _, r := range l {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-') {
			return fail("label %q contains %q; only letters, digits and hyphens are allowed", l, string(r))
		}
	}
	if l[0] == '-' || l[len(l)-1] == '-' {
		return fail("label %q starts or ends with a hyphen", l)
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
