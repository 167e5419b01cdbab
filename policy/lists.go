package policy

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/mxedge/mxedge/internal/domainname"
)

// The static list files of the checks: the allowlist (a CIDR list) and
// the access files (Postfix access(5) tables). Both are read once at start;
// every error names the file and line ("allow.cidr:3: ...").

// CIDRList is a list of IP networks: the allowlist file, one address or
// network per line ("192.0.2.7", "192.0.2.0/24", "2001:db8::/32"); "#"
// starts a comment, blank lines are ignored. Postfix: a cidr table of
// permits (postscreen_access_list, mynetworks).
type CIDRList struct {
	prefixes []netip.Prefix
}

// LoadCIDRList reads the CIDR list file path.
func LoadCIDRList(path string) (*CIDRList, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseCIDRList(path, f)
}

// ParseCIDRList reads a CIDR list from r; name is the file name for
// errors.
func ParseCIDRList(name string, r io.Reader) (*CIDRList, error) {
	l := &CIDRList{}
	err := eachLine(name, r, func(line string, _ int) error {
		if strings.ContainsAny(line, " \t") {
			return fmt.Errorf("one address or network per line, got %q", line)
		}
		p, err := parsePrefix(line)
		if err != nil {
			return err
		}
		l.prefixes = append(l.prefixes, p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// Contains reports whether ip is in one of the list's networks.
func (l *CIDRList) Contains(ip netip.Addr) bool {
	if l == nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range l.prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Len is the number of entries.
func (l *CIDRList) Len() int { return len(l.prefixes) }

// parsePrefix parses "192.0.2.7" or "192.0.2.0/24"; a network with bits
// set below its mask is an error (it is almost always a typo).
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or network", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or network", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q has bits set beyond its /%d (write %s)", s, p.Bits(), p.Masked())
	}
	return p, nil
}

// eachLine calls f with every line of r that is not blank or a comment,
// trimmed, and its number; an error of f is returned as "name:line: err".
func eachLine(name string, r io.Reader, f func(line string, n int) error) error {
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if err := f(line, n); err != nil {
			return fmt.Errorf("%s:%d: %w", name, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// AccessAction is the action of an access file entry.
type AccessAction string

const (
	AccessOK     AccessAction = "OK"     // accept: skip the rest of the stage's checks
	AccessReject AccessAction = "REJECT" // refuse with a 5xx
	AccessDefer  AccessAction = "DEFER"  // refuse with a 4xx
)

// AccessEntry is one line of an access file.
type AccessEntry struct {
	Key    string
	Action AccessAction
	// Text is the reply text after the action word ("" for the default).
	Text string
	Line int
}

// AccessMap is an access file (Postfix access(5), the subset for
// check_client_access and check_sender_access): one entry per line,
// "KEY ACTION [text]", ACTION one of OK, REJECT, DEFER (any case), text
// the reply's text (printable ASCII). "#" starts a comment.
//
// Keys of a client access file: an IP address or network ("192.0.2.0/24",
// "2001:db8::/32", checked in file order, first match wins), or a host
// name, matched against the client's forward-confirmed reverse name
// ("mail.example.com" matches that name and every name below it,
// ".example.com" only names below it); an address match wins over a name
// match. Keys of a sender access file: an address ("user@example.com"), a
// domain ("example.com", also its subdomains; ".example.com" only
// subdomains), a local part ("postmaster@", any domain), or "<>" (the null
// sender); looked up in that order (address, domain from the most
// specific, local part), first found wins.
type AccessMap struct {
	nets  []netAccess
	names map[string]AccessEntry // lowercase, A-labels; subdomain-only keys keep their leading dot
}

type netAccess struct {
	p netip.Prefix
	e AccessEntry
}

// LoadAccessMap reads the access file path; sender tells a sender access
// file (address keys) from a client access file (address and name keys).
func LoadAccessMap(path string, sender bool) (*AccessMap, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseAccessMap(path, f, sender)
}

// ParseAccessMap reads an access file from r; name is its name for
// errors.
func ParseAccessMap(name string, r io.Reader, sender bool) (*AccessMap, error) {
	m := &AccessMap{names: map[string]AccessEntry{}}
	err := eachLine(name, r, func(line string, n int) error {
		key, rest, _ := strings.Cut(strings.ReplaceAll(line, "\t", " "), " ")
		rest = strings.TrimSpace(rest)
		word, text, _ := strings.Cut(rest, " ")
		e := AccessEntry{Key: key, Action: AccessAction(strings.ToUpper(word)), Text: strings.TrimSpace(text), Line: n}
		switch e.Action {
		case AccessOK:
			if e.Text != "" {
				return fmt.Errorf("OK takes no text (got %q)", e.Text)
			}
		case AccessReject, AccessDefer:
		case "":
			return fmt.Errorf("%q: no action (OK, REJECT or DEFER)", key)
		default:
			return fmt.Errorf("action %q: must be OK, REJECT or DEFER", word)
		}
		if printable(e.Text, len(e.Text)) != e.Text || len(e.Text) > 200 {
			return fmt.Errorf("reply text must be printable ASCII, at most 200 bytes")
		}
		if !sender {
			if p, err := parsePrefix(key); err == nil {
				m.nets = append(m.nets, netAccess{p, e})
				return nil
			} else if strings.ContainsAny(key, ":/") || isNumeric(key) {
				return err
			}
		}
		k, err := accessKey(key, sender)
		if err != nil {
			return err
		}
		if old, dup := m.names[k]; dup {
			return fmt.Errorf("%q is already on line %d", key, old.Line)
		}
		m.names[k] = e
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

func isNumeric(s string) bool {
	return strings.Trim(s, "0123456789.") == ""
}

// accessKey brings an access file key into its lookup form.
func accessKey(key string, sender bool) (string, error) {
	if sender && key == "<>" {
		return key, nil
	}
	local, domain, hasAt := strings.Cut(key, "@")
	if hasAt && !sender {
		return "", fmt.Errorf("%q: a client access key is an address, a network or a host name", key)
	}
	if hasAt && strings.Contains(domain, "@") || hasAt && local == "" {
		return "", fmt.Errorf("%q is not an address, local part@ or domain", key)
	}
	if hasAt && domain == "" {
		return strings.ToLower(local) + "@", nil
	}
	if !hasAt {
		domain, local = key, ""
	}
	dot := strings.HasPrefix(domain, ".") && !hasAt
	d, err := domainname.Normalize(strings.TrimPrefix(domain, "."), domainname.Options{})
	if err != nil {
		return "", fmt.Errorf("%q: %v", key, err)
	}
	if dot {
		d = "." + d
	}
	if hasAt {
		return strings.ToLower(local) + "@" + d, nil
	}
	return d, nil
}

// Len is the number of entries.
func (m *AccessMap) Len() int { return len(m.nets) + len(m.names) }

// HasNames reports whether the map has host name keys (a client access
// file that needs the reverse name).
func (m *AccessMap) HasNames() bool { return len(m.names) > 0 }

// MatchIP returns the first network entry containing ip.
func (m *AccessMap) MatchIP(ip netip.Addr) (AccessEntry, bool) {
	ip = ip.Unmap()
	for _, n := range m.nets {
		if n.p.Contains(ip) {
			return n.e, true
		}
	}
	return AccessEntry{}, false
}

// MatchDomain returns the entry for name (lowercase, A-labels) or, from
// the most specific, for a parent domain: "a.b.example" looks up
// "a.b.example", then ".b.example" and "b.example", then ".example" and
// "example".
func (m *AccessMap) MatchDomain(name string) (AccessEntry, bool) {
	if e, ok := m.names[name]; ok {
		return e, true
	}
	for rest := name; ; {
		i := strings.IndexByte(rest, '.')
		if i < 0 {
			return AccessEntry{}, false
		}
		rest = rest[i+1:]
		if e, ok := m.names["."+rest]; ok {
			return e, true
		}
		if e, ok := m.names[rest]; ok {
			return e, true
		}
	}
}

// MatchSender returns the entry for a sender in wire form ("" is the null
// sender): the address, its domain and parents, its local part.
func (m *AccessMap) MatchSender(from string) (AccessEntry, bool) {
	if from == "" {
		e, ok := m.names["<>"]
		return e, ok
	}
	i := strings.LastIndexByte(from, '@')
	if i < 0 {
		return AccessEntry{}, false
	}
	local, domain := strings.ToLower(from[:i]), strings.ToLower(from[i+1:])
	if e, ok := m.names[local+"@"+domain]; ok {
		return e, true
	}
	if e, ok := m.MatchDomain(domain); ok {
		return e, true
	}
	e, ok := m.names[local+"@"]
	return e, ok
}
