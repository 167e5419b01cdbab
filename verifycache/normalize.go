package verifycache

import (
	"fmt"
	"strings"

	"github.com/mxedge/mxedge/internal/address"
)

// Normalize returns the cache key of an address typed by an operator
// ("Alice@Example.ORG", "<alice@example.org>", "\"john doe\"@example.org"):
// the form smtpd hands to Verify. The local part keeps its case (RFC 5321
// section 2.4: only the backend may fold it) and is written as a
// dot-string, or quoted when it is not one (RFC 5321 section 4.1.2); the
// domain is lowercased with IDNs as A-labels (RFC 5890) and no trailing
// dot.
func Normalize(addr string) (string, error) {
	a := strings.TrimSpace(addr)
	if len(a) >= 2 && a[0] == '<' && a[len(a)-1] == '>' {
		a = a[1 : len(a)-1]
	}
	u, err := address.Unquote(a)
	if err != nil {
		return "", fmt.Errorf("invalid address %q: %v", addr, err)
	}
	if at := strings.LastIndexByte(u, '@'); at >= 0 && strings.HasPrefix(u[at+1:], "[") {
		return "", fmt.Errorf("invalid address %q: an address literal is never a relay domain", addr)
	}
	m, err := address.Parse(u, true)
	if err != nil {
		return "", fmt.Errorf("invalid address %q: want local@domain (%v)", addr, err)
	}
	return m.Wire(), nil
}
