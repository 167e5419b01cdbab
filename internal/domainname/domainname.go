// Package domainname puts a mail domain into the one normal form every
// stage compares: lowercase, internationalised labels as A-labels (RFC 5890,
// IDNA2008 lookup profile via golang.org/x/net/idna), no trailing dot. The
// MX listener's relay check and the recipient verification cache key must
// agree exactly, so they share this function.
package domainname

import (
	"errors"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// ErrInvalid is wrapped by every Normalize error.
var ErrInvalid = errors.New("not a valid domain name")

// Normalize returns d lowercased with U-labels converted to A-labels. It
// refuses a trailing dot ("example.org." must not slip past a relay
// domain comparison nor reach a backend that treats it differently), an
// empty label, invalid UTF-8, a label over 63 octets or starting or ending with a hyphen,
// anything but letters, digits and hyphens, and names over 253 octets
// (RFC 1035 section 2.3.4, RFC 5321 section 4.1.2).
func Normalize(d string) (string, error) {
	if d == "" || strings.HasSuffix(d, ".") || len(d) > 253 || !utf8.ValidString(d) {
		return "", ErrInvalid
	}
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		return "", errors.Join(ErrInvalid, err)
	}
	a = strings.ToLower(a)
	// The result must be its own normal form: x/net/idna accepts some
	// U-labels (mapped, bidi) whose A-label it then refuses.
	if again, err := idna.Lookup.ToASCII(a); err != nil || again != a {
		return "", ErrInvalid
	}
	for _, label := range strings.Split(a, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", ErrInvalid
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", ErrInvalid
			}
		}
	}
	return a, nil
}
