package dsn

import (
	"bytes"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	// rfc5322Date is the date-time of RFC 5322 section 3.3.
	rfc5322Date = "Mon, 02 Jan 2006 15:04:05 -0700"
	// softWidth is where header fields are folded and text is wrapped if
	// white space allows (RFC 5322 section 2.1.1: SHOULD be 78).
	softWidth = 78
	// hardWidth is the longest line written, without its CRLF (RFC 5322
	// section 2.1.1: MUST be no more than 998).
	hardWidth = 998
)

// field returns the header field "name: value" with its CRLF, folded before
// white space so that lines stay within 78 octets where the value allows,
// and always within 998 (a longer run without white space is broken by
// inserting CRLF SP, which adds a space to the value but keeps the message
// valid). value must not contain CR or LF.
func field(name, value string) string {
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte(':')
	col := len(name) + 1
	rest := " " + strings.TrimRight(value, " ")
	for rest != "" {
		// The next token: a run of spaces and the word after it.
		i := 0
		for i < len(rest) && rest[i] == ' ' {
			i++
		}
		j := i
		for j < len(rest) && rest[j] != ' ' {
			j++
		}
		tok := rest[:j]
		rest = rest[j:]
		if i > 0 && col > len(name)+1 && col+len(tok) > softWidth {
			b.WriteString("\r\n") // the token's leading space starts the continuation line
			col = 0
		}
		for col+len(tok) > hardWidth {
			n := runeStart(tok, hardWidth-col)
			b.WriteString(tok[:n])
			b.WriteString("\r\n ")
			col = 1
			tok = tok[n:]
		}
		b.WriteString(tok)
		col += len(tok)
	}
	b.WriteString("\r\n")
	return b.String()
}

// appendWrapped appends the words of s as lines of at most width octets
// where the words allow and always at most 998, continuation lines starting
// with indent, and a final CRLF.
func appendWrapped(b []byte, s string, width int, indent string) []byte {
	col := 0
	words := 0
	for _, w := range strings.Fields(s) {
		if words > 0 && col+1+len(w) > width {
			b = append(b, "\r\n"...)
			b = append(b, indent...)
			col, words = len(indent), 0
		}
		if words > 0 {
			b = append(b, ' ')
			col++
		}
		for col+len(w) > hardWidth {
			n := runeStart(w, hardWidth-col)
			b = append(b, w[:n]...)
			b = append(b, "\r\n"...)
			b = append(b, indent...)
			col = len(indent)
			w = w[n:]
		}
		b = append(b, w...)
		col += len(w)
		words++
	}
	return append(b, "\r\n"...)
}

// runeStart returns n moved back (by at most 3) to the start of a UTF-8
// sequence in s, so that cutting s at the result does not split a
// character; n itself if there is none close by.
func runeStart(s string, n int) int {
	if n >= len(s) {
		return n
	}
	for k := n; k > 0 && k > n-4; k-- {
		if !isContinuation(s[k]) {
			return k
		}
	}
	return n
}

func isContinuation(c byte) bool { return c&0xC0 == 0x80 }

// normalize returns data as CRLF lines of at most 998 octets, each ending in
// CRLF: a bare LF becomes CRLF and a CR not followed by LF a space (as
// smtpd's body filter does), and a longer line is broken by inserting
// CRLF SP (as Postfix does with smtp_line_length_limit), which keeps a header
// field a header field.
func normalize(data []byte) []byte {
	out := make([]byte, 0, len(data)+len(data)/32+2)
	for len(data) > 0 {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = bytes.TrimSuffix(data[:i], []byte("\r")), data[i+1:]
		} else {
			line, data = data, nil
		}
		col := 0
		for {
			n := min(len(line), hardWidth-col)
			if n < len(line) {
				n = runeStart(string(line[:min(len(line), n+1)]), n)
			}
			for _, c := range line[:n] {
				if c == '\r' {
					c = ' '
				}
				out = append(out, c)
			}
			line = line[n:]
			if len(line) == 0 {
				break
			}
			out = append(out, "\r\n "...)
			col = 1
		}
		out = append(out, "\r\n"...)
	}
	return out
}

// cleanText returns s as one line: CR, LF and other control or
// non-printable characters become spaces, leading and trailing space is
// removed, and with collapse, runs of spaces become one. With utf8ok, invalid
// UTF-8 becomes U+FFFD; without, every non-ASCII character (or invalid byte)
// becomes '?'.
func cleanText(s string, utf8ok, collapse bool) string {
	var b strings.Builder
	space := false
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == utf8.RuneError && size == 1:
			r = '?'
			if utf8ok {
				r = utf8.RuneError
			}
		case r < utf8.RuneSelf:
			if r < ' ' || r == 0x7f {
				r = ' '
			}
		case !utf8ok:
			r = '?'
		case !unicode.IsPrint(r):
			r = ' '
		}
		if r == ' ' {
			if !collapse && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		if collapse && space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return strings.TrimRight(b.String(), " ")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// dotAtom returns s reduced to an RFC 5322 dot-atom: atext characters and
// single dots, no dot at either end; "" if nothing is left.
func dotAtom(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if b.Len() > 0 && !strings.HasSuffix(b.String(), ".") {
				b.WriteByte('.')
			}
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0:
			b.WriteByte(c)
		}
	}
	return strings.TrimRight(b.String(), ".")
}

// typedAddress returns the value of a Final-Recipient field for addr:
// "rfc822; addr" for an ASCII address, else "utf-8; addr" (RFC 6533
// section 3), with addr raw when utf8ok (utf-8-address, for
// message/global-delivery-status) and in its 7-bit utf-8-addr-xtext form
// otherwise.
func typedAddress(addr string, utf8ok bool) string {
	addr = cleanText(addr, true, false)
	switch {
	case isASCII(addr):
		return "rfc822; " + addr
	case utf8ok:
		return "utf-8; " + addr
	default:
		return "utf-8; " + utf8AddrXtext(addr)
	}
}

// utf8AddrXtext encodes addr as RFC 6533 utf-8-addr-xtext: printable ASCII
// other than '\', '+' and '=' stays, every other character becomes
// \x{HEX} with uppercase hex digits and no leading zeros (two digits below
// 0x10).
func utf8AddrXtext(addr string) string {
	var b strings.Builder
	for _, r := range addr {
		if r > ' ' && r < 0x7f && r != '\\' && r != '+' && r != '=' {
			b.WriteRune(r)
			continue
		}
		hex := strings.ToUpper(strconv.FormatInt(int64(r), 16))
		if len(hex) == 1 {
			hex = "0" + hex
		}
		b.WriteString(`\x{` + hex + `}`)
	}
	return b.String()
}

// escapeNonASCII replaces each non-ASCII character of s by its RFC 6533
// \x{HEX} escape, leaving ASCII (including existing escapes) as it is.
func escapeNonASCII(s string) string {
	if isASCII(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r < utf8.RuneSelf {
			b.WriteRune(r)
			continue
		}
		b.WriteString(`\x{` + strings.ToUpper(strconv.FormatInt(int64(r), 16)) + `}`)
	}
	return b.String()
}

// chooseBoundary returns a MIME boundary made of the queue ID and a counter,
// "=_mxedge_<queueid>_<n>_=", with the smallest n for which it occurs in none
// of bodies. Instead of trying counters one by one against every body (which
// a hostile original full of candidate boundaries could make quadratic), it
// collects the counters that do occur after the fixed prefix in one pass.
// The result is at most 64 characters (RFC 2046 allows 70).
func chooseBoundary(queueID string, bodies [][]byte) string {
	var q strings.Builder
	for i := 0; i < len(queueID) && q.Len() < 32; i++ {
		if c := queueID[i]; c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			q.WriteByte(c)
		}
	}
	prefix := []byte("=_mxedge_" + q.String() + "_")
	const suffix = "_="
	used := map[uint64]bool{}
	for _, body := range bodies {
		for rest := body; ; {
			i := bytes.Index(rest, prefix)
			if i < 0 {
				break
			}
			rest = rest[i+len(prefix):]
			j := 0
			for j < len(rest) && j < 20 && rest[j] >= '0' && rest[j] <= '9' {
				j++
			}
			if n, err := strconv.ParseUint(string(rest[:j]), 10, 64); err == nil && bytes.HasPrefix(rest[j:], []byte(suffix)) {
				used[n] = true
			}
		}
	}
	for n := uint64(0); ; n++ {
		if used[n] {
			continue
		}
		b := string(prefix) + strconv.FormatUint(n, 10) + suffix
		clash := false
		for _, body := range bodies {
			if bytes.Contains(body, []byte(b)) {
				clash = true // only with leading zeros ("_007_="); cannot happen otherwise
				break
			}
		}
		if !clash {
			return b
		}
	}
}
