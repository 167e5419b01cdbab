package auth

import (
	"fmt"
	"strings"

	"github.com/mxedge/mxedge/internal/domainname"
)

// Senders are the addresses a login may send as (Postfix
// smtpd_sender_login_maps), as rules:
//
//	alice@example.org   that address (and aliases: list each)
//	*@example.org       any address of the domain; "@example.org" and
//	                    "example.org" say the same
//	*                   any address (a trusted application)
//
// Addresses compare without regard to case; domains as IDNs in A-labels.
type Senders struct {
	addrs   map[string]bool
	domains map[string]bool
	any     bool
	rules   []string
}

// ParseSenders parses rules (as in a users file's senders= field).
func ParseSenders(rules []string) (Senders, error) {
	s := Senders{addrs: map[string]bool{}, domains: map[string]bool{}}
	for _, r := range rules {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		s.rules = append(s.rules, r)
		if r == "*" {
			s.any = true
			continue
		}
		local, domain, isAddr := strings.Cut(r, "@")
		if !isAddr {
			local, domain = "*", r
		}
		d, err := domainname.Normalize(domain, domainname.Options{Hostname: true})
		if err != nil {
			return Senders{}, fmt.Errorf("sender %q: bad domain: %v", r, err)
		}
		switch {
		case local == "*" || local == "":
			s.domains[d] = true
		case strings.ContainsAny(local, " \t<>\"*"):
			return Senders{}, fmt.Errorf("sender %q: not an address, *@domain or domain", r)
		default:
			s.addrs[strings.ToLower(local)+"@"+d] = true
		}
	}
	return s, nil
}

// Owns reports whether addr (local@domain, wire form) is one of the
// login's addresses.
func (s Senders) Owns(addr string) bool {
	if s.any {
		return true
	}
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 {
		return false
	}
	d, err := domainname.Normalize(addr[i+1:], domainname.Options{Hostname: true})
	if err != nil {
		return false
	}
	return s.domains[d] || s.addrs[strings.ToLower(addr[:i])+"@"+d]
}

// Rules returns the rules as written.
func (s Senders) Rules() []string { return append([]string(nil), s.rules...) }

// Empty reports whether no address is allowed.
func (s Senders) Empty() bool { return !s.any && len(s.addrs) == 0 && len(s.domains) == 0 }
