package verifycache

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/mxedge/mxedge/internal/address"
	"github.com/mxedge/mxedge/internal/domainname"
)

// List is a static recipient list of one domain: the local parts that
// exist, lowercased. Lookups ignore case, like Postfix's
// relay_recipient_maps: a list is written by people, and backends that
// cannot be probed are case-insensitive almost always.
type List map[string]struct{}

// Has reports whether addr (wire form, of the list's domain) is listed.
func (l List) Has(addr string) bool {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return false
	}
	_, ok := l[strings.ToLower(addr[:at])]
	return ok
}

const (
	maxListLine   = 4096
	maxListErrors = 20
	maxLocalPart  = 64 // RFC 5321 section 4.5.3.1.1
)

// LoadList reads the recipient list file at path for domain; see ParseList.
func LoadList(path, domain string) (List, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("verifycache: recipient list of %s: %w", domain, err)
	}
	defer f.Close()
	return ParseList(path, f, domain)
}

// ParseList reads a recipient list: one entry per line, either a local
// part ("alice") or an address of domain ("alice@example.org"; the domain
// compared after lowercasing and IDN conversion). A quoted local part
// ("\"john doe\"") may contain spaces. "#" at the start of a line, or after
// white space, starts a comment; blank lines are skipped. Every error is
// reported as NAME:LINE: message (at most 20).
func ParseList(name string, r io.Reader, domain string) (List, error) {
	l := List{}
	var errs []error
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1024), maxListLine)
	n := 0
	for sc.Scan() {
		n++
		entry, err := parseListLine(sc.Text(), domain)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %v", name, n, err))
			if len(errs) == maxListErrors {
				errs = append(errs, fmt.Errorf("%s: too many errors", name))
				break
			}
			continue
		}
		if entry != "" {
			l[strings.ToLower(entry)] = struct{}{}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("line longer than %d bytes", maxListLine)
		}
		errs = append(errs, fmt.Errorf("%s:%d: %v", name, n+1, err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return l, nil
}

// parseListLine returns the local part on line in wire form, or "" for a
// blank or comment line.
func parseListLine(line, domain string) (string, error) {
	line = strings.TrimSuffix(line, "\r")
	if !utf8.ValidString(line) {
		return "", errors.New("not valid UTF-8")
	}
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return "", nil
	}
	var local, rest string
	if strings.HasPrefix(line, `"`) {
		end := closingQuote(line)
		if end < 0 {
			return "", fmt.Errorf("%q: quoted local part without its closing quote", line)
		}
		uq, err := address.Unquote(line[:end+1])
		if err != nil {
			return "", fmt.Errorf("%q: %v", line, err)
		}
		local, rest = uq, line[end+1:]
		if rest != "" && rest[0] != '@' && !startsComment(rest) {
			return "", fmt.Errorf("%q: text after the quoted local part", line)
		}
	} else {
		if i := strings.IndexAny(line, " \t"); i >= 0 {
			if !startsComment(line[i:]) {
				return "", fmt.Errorf("%q: one address or local part per line", line)
			}
			line = line[:i]
		}
		local, rest = line, ""
		if at := strings.LastIndexByte(line, '@'); at >= 0 {
			local, rest = line[:at], line[at:]
		}
	}
	if i := strings.IndexAny(rest, " \t"); i >= 0 {
		if !startsComment(rest[i:]) {
			return "", fmt.Errorf("%q: one address or local part per line", line)
		}
		rest = rest[:i]
	}
	if rest != "" {
		d := rest[1:]
		nd, err := domainname.Normalize(d)
		if err != nil {
			return "", fmt.Errorf("%q: bad domain %q: %v", line, d, err)
		}
		if nd != domain {
			return "", fmt.Errorf("%q: address of another domain (this list is for %s)", line, domain)
		}
	}
	switch {
	case local == "":
		return "", fmt.Errorf("%q: empty local part", line)
	case len(local) > maxLocalPart:
		return "", fmt.Errorf("%q: local part longer than %d octets", line, maxLocalPart)
	}
	for i := 0; i < len(local); i++ {
		if local[i] < 0x20 || local[i] == 0x7f {
			return "", fmt.Errorf("%q: control character", line)
		}
	}
	return strings.TrimSuffix(address.Mailbox{Local: local, Domain: "x"}.Wire(), "@x"), nil
}

// startsComment reports whether s is white space, optionally followed by
// a comment.
func startsComment(s string) bool {
	t := strings.TrimLeft(s, " \t")
	return t == "" || t[0] == '#'
}

// closingQuote returns the index of the quote that ends the quoted string
// at the start of s, or -1.
func closingQuote(s string) int {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}
