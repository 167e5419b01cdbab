// Package address parses and writes mail addresses (RFC 5321 section
// 4.1.2 Mailbox) in the one form every stage uses: the MX listener's relay
// check and queue, and the recipient verification cache key. The local part
// keeps its case (RFC 5321 section 2.4); the domain is in domainname's
// normal form; the wire form quotes a local part that is not a dot-string.
package address

import (
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/mxedge/mxedge/internal/domainname"
)

// Mailbox is an address from MAIL or RCPT, split and normalised.
//
// go-smtp hands us "local@domain" with the local part already unquoted
// ("a@b"@x arrives as a@b@x) and any source route (<@a,@b:u@c>) already
// dropped, as RFC 5321 section 4.1.1.3 and appendix C allow: the route is
// ignored and only the final mailbox counts. So the domain is whatever
// follows the last "@", and the local part may contain "@", "%", "!",
// spaces or quotes that were quoted on the wire.
type Mailbox struct {
	Local  string // as received, case kept (RFC 5321 section 2.4: local parts are case-sensitive)
	Domain string // lowercased; IDNs as A-labels; or a domain literal "[...]"
	ASCII  bool   // the local part is plain ASCII
}

var (
	ErrSyntax   = errors.New("bad address syntax")
	ErrNonASCII = errors.New("non-ASCII address without SMTPUTF8")
)

// Parse splits and normalises an address from go-smtp.
func Parse(s string, smtputf8 bool) (Mailbox, error) {
	if !utf8.ValidString(s) {
		return Mailbox{}, ErrSyntax
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return Mailbox{}, ErrSyntax
	}
	m := Mailbox{Local: s[:at], ASCII: true}
	for i := 0; i < len(m.Local); i++ {
		c := m.Local[i]
		if c < 0x20 || c == 0x7f {
			return Mailbox{}, ErrSyntax
		}
		if c >= 0x80 {
			m.ASCII = false
		}
	}
	if !m.ASCII && !smtputf8 {
		return Mailbox{}, ErrNonASCII // RFC 6531 section 3.2
	}
	d := s[at+1:]
	if strings.HasPrefix(d, "[") {
		// RFC 5321 section 4.1.3 address literal: kept as given; never a
		// relay domain.
		if !strings.HasSuffix(d, "]") || len(d) < 3 {
			return Mailbox{}, ErrSyntax
		}
		m.Domain = strings.ToLower(d)
		return m, nil
	}
	if !isASCII(d) && !smtputf8 {
		return Mailbox{}, ErrNonASCII
	}
	dom, err := domainname.Normalize(d)
	if err != nil {
		return Mailbox{}, ErrSyntax
	}
	m.Domain = dom
	return m, nil
}

// Routed reports whether the local part carries sender-specified routing:
// "user%other@relay", "other!user@relay", "user@other@relay" (the last from
// a quoted local part). Postfix refuses these even for relay domains
// (reject_unauth_destination), because a backend that honours the
// %-hack or a UUCP path would relay on.
func (m Mailbox) Routed() bool { return strings.ContainsAny(m.Local, "@%!") }

// Wire returns the address as it goes on the wire to the next hop: the
// local part as a dot-string if it is one, else as a quoted string
// (RFC 5321 section 4.1.2), and the normalised domain.
func (m Mailbox) Wire() string {
	if IsDotString(m.Local) {
		return m.Local + "@" + m.Domain
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(m.Local); i++ {
		c := m.Local[i]
		if c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	b.WriteString(`"@`)
	b.WriteString(m.Domain)
	return b.String()
}

// IsDotString reports whether s is an RFC 5321 Dot-string: atoms of atext
// (RFC 5322 section 3.2.3; UTF-8 allowed per RFC 6531) separated by single
// dots.
func IsDotString(s string) bool {
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

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// Unquote undoes the quoting of a quoted-string local part (RFC 5321
// section 4.1.2) in an address written on the wire or typed by an operator:
// "\"john doe\"@example.org" becomes "john doe@example.org", as go-smtp's
// parser hands addresses over. An address whose local part is not quoted
// is returned as is.
func Unquote(addr string) (string, error) {
	if addr == "" || addr[0] != '"' {
		return addr, nil
	}
	var b strings.Builder
	for i := 1; i < len(addr); i++ {
		switch addr[i] {
		case '\\':
			i++
			if i == len(addr) {
				return "", errors.New("dangling backslash in the quoted local part")
			}
			b.WriteByte(addr[i])
		case '"':
			return b.String() + addr[i+1:], nil
		default:
			b.WriteByte(addr[i])
		}
	}
	return "", errors.New("unterminated quoted local part")
}
