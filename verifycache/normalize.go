package verifycache

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/mxedge/mxedge/internal/domainname"
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
	at := strings.LastIndexByte(a, '@')
	if !utf8.ValidString(a) || at <= 0 || at == len(a)-1 {
		return "", fmt.Errorf("invalid address %q: want local@domain", addr)
	}
	local, err := unquote(a[:at])
	if err != nil {
		return "", fmt.Errorf("invalid address %q: %v", addr, err)
	}
	for i := 0; i < len(local); i++ {
		if local[i] < 0x20 || local[i] == 0x7f {
			return "", fmt.Errorf("invalid address %q: control character in the local part", addr)
		}
	}
	dom, err := normalizeDomain(a[at+1:])
	if err != nil {
		return "", fmt.Errorf("invalid address %q: %v", addr, err)
	}
	return wire(local, dom), nil
}

// normalizeDomain is the normal form smtpd gives the domain at RCPT, so
// that cache keys match (domainname.Normalize).
func normalizeDomain(d string) (string, error) {
	n, err := domainname.Normalize(d)
	if err != nil {
		return "", fmt.Errorf("bad domain %q: %w", d, err)
	}
	return n, nil
}

// unquote removes the quotes of a quoted-string local part and its
// backslash escapes; a dot-string is returned as is.
func unquote(s string) (string, error) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return s, nil
	}
	var b strings.Builder
	for i := 1; i < len(s)-1; i++ {
		if s[i] == '\\' {
			i++
			if i == len(s)-1 {
				return "", errors.New("dangling backslash in the quoted local part")
			}
		}
		b.WriteByte(s[i])
	}
	return b.String(), nil
}

// wire writes local@domain as smtpd does: the local part as a dot-string
// if it is one, else as a quoted string.
func wire(local, domain string) string {
	if isDotString(local) {
		return local + "@" + domain
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if c := local[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteString(`"@`)
	b.WriteString(domain)
	return b.String()
}

// isDotString reports whether s is an RFC 5321 Dot-string (RFC 5322 atext,
// UTF-8 allowed per RFC 6531, separated by single dots).
func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c >= 0x80:
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0:
		default:
			return false
		}
	}
	return true
}
