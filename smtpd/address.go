package smtpd

import (
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/mxedge/mxedge/internal/domainname"
)

// mailbox is an address from MAIL or RCPT, split and normalised.
//
// go-smtp hands us "local@domain" with the local part already unquoted
// ("a@b"@x arrives as a@b@x) and any source route (<@a,@b:u@c>) already
// dropped, as RFC 5321 section 4.1.1.3 and appendix C allow: the route is
// ignored and only the final mailbox counts. So the domain is whatever
// follows the last "@", and the local part may contain "@", "%", "!",
// spaces or quotes that were quoted on the wire.
type mailbox struct {
	local  string // as received, case kept (RFC 5321 section 2.4: local parts are case-sensitive)
	domain string // lowercased; IDNs as A-labels; or a domain literal "[...]"
	ascii  bool   // the local part is plain ASCII
}

var (
	errSyntax   = errors.New("bad address syntax")
	errNonASCII = errors.New("non-ASCII address without SMTPUTF8")
)

// parseMailbox splits and normalises an address from go-smtp.
func parseMailbox(s string, smtputf8 bool) (mailbox, error) {
	if !utf8.ValidString(s) {
		return mailbox{}, errSyntax
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return mailbox{}, errSyntax
	}
	m := mailbox{local: s[:at], ascii: true}
	for i := 0; i < len(m.local); i++ {
		c := m.local[i]
		if c < 0x20 || c == 0x7f {
			return mailbox{}, errSyntax
		}
		if c >= 0x80 {
			m.ascii = false
		}
	}
	if !m.ascii && !smtputf8 {
		return mailbox{}, errNonASCII // RFC 6531 section 3.2
	}
	d := s[at+1:]
	if strings.HasPrefix(d, "[") {
		// RFC 5321 section 4.1.3 address literal: kept as given; never a
		// relay domain.
		if !strings.HasSuffix(d, "]") || len(d) < 3 {
			return mailbox{}, errSyntax
		}
		m.domain = strings.ToLower(d)
		return m, nil
	}
	if !isASCII(d) && !smtputf8 {
		return mailbox{}, errNonASCII
	}
	dom, err := domainname.Normalize(d)
	if err != nil {
		return mailbox{}, errSyntax
	}
	m.domain = dom
	return m, nil
}

// routed reports whether the local part carries sender-specified routing:
// "user%other@relay", "other!user@relay", "user@other@relay" (the last from
// a quoted local part). Postfix refuses these even for relay domains
// (reject_unauth_destination), because a backend that honours the
// %-hack or a UUCP path would relay on.
func (m mailbox) routed() bool { return strings.ContainsAny(m.local, "@%!") }

// wire returns the address as it goes on the wire to the next hop: the
// local part as a dot-string if it is one, else as a quoted string
// (RFC 5321 section 4.1.2), and the normalised domain.
func (m mailbox) wire() string {
	if isDotString(m.local) {
		return m.local + "@" + m.domain
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(m.local); i++ {
		c := m.local[i]
		if c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	b.WriteString(`"@`)
	b.WriteString(m.domain)
	return b.String()
}

// isDotString reports whether s is an RFC 5321 Dot-string: atoms of atext
// (RFC 5322 section 3.2.3; UTF-8 allowed per RFC 6531) separated by single
// dots.
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

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
