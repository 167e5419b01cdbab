package mtasts

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mxedge/mxedge/internal/domainname"
)

// Mode is a policy's mode (RFC 8461 section 5).
type Mode string

// The modes of RFC 8461 section 3.2.
const (
	// ModeEnforce: deliver only to matching MX hosts over verified TLS.
	ModeEnforce Mode = "enforce"
	// ModeTesting: deliver as usual; report what enforce would refuse.
	ModeTesting Mode = "testing"
	// ModeNone: the domain has no active policy (RFC 8461 section 8.3:
	// how a domain withdraws an earlier policy).
	ModeNone Mode = "none"
)

func (m Mode) valid() bool { return m == ModeEnforce || m == ModeTesting || m == ModeNone }

// MaxMaxAge is the largest max_age a policy may have, in seconds (RFC 8461
// section 3.2: about one year).
const MaxMaxAge = 31557600

// Policy is a domain's MTA-STS policy as fetched.
type Policy struct {
	Mode Mode
	// MX are the mx patterns, lowercase, without trailing dot:
	// "mx1.example.com" or "*.example.com".
	MX []string
	// MaxAge is how long the policy may be cached after Fetched.
	MaxAge time.Duration
	// ID is the id of the TXT record the policy was fetched for.
	ID string
	// Fetched is when the policy was fetched.
	Fetched time.Time
}

// Expires is when the policy stops being valid: Fetched + MaxAge.
func (p *Policy) Expires() time.Time { return p.Fetched.Add(p.MaxAge) }

// Match reports whether mxHost is allowed by one of p's mx patterns (RFC
// 8461 section 4.1): equal to a pattern, or, for a pattern "*.example.com",
// one label followed by ".example.com" ("mx.example.com", but neither
// "example.com" nor "a.mx.example.com"). Case is ignored, and so is a
// trailing dot. A nil policy matches nothing.
func (p *Policy) Match(mxHost string) bool {
	if p == nil {
		return false
	}
	host := strings.ToLower(strings.TrimSuffix(mxHost, "."))
	if host == "" {
		return false
	}
	for _, pat := range p.MX {
		pat = strings.ToLower(strings.TrimSuffix(pat, "."))
		if suffix, ok := strings.CutPrefix(pat, "*"); ok && strings.HasPrefix(suffix, ".") {
			label, ok := strings.CutSuffix(host, suffix)
			if ok && label != "" && !strings.Contains(label, ".") {
				return true
			}
			continue
		}
		if host == pat {
			return true
		}
	}
	return false
}

// clone returns a copy of p that shares nothing with it.
func (p *Policy) clone() *Policy {
	c := *p
	c.MX = append([]string(nil), p.MX...)
	return &c
}

// errPolicy: the policy file is not valid (RFC 8461 section 3.2).
var errPolicy = errors.New("invalid policy")

// parsePolicy parses a policy file (RFC 8461 section 3.2): "key: value"
// lines ended by LF or CRLF (the last one may lack it), with version,
// mode and max_age required, and mx required unless the mode is none.
// Keys are case-sensitive, as are the values of version and mode. Empty
// lines are skipped. Unknown keys are ignored; of a repeated key other
// than mx, the first one counts. The result has no ID or Fetched.
func parsePolicy(b []byte) (*Policy, error) {
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("%w: not UTF-8", errPolicy)
	}
	p := &Policy{}
	seen := map[string]bool{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok || !validKey(key) {
			return nil, fmt.Errorf("%w: line %d: not \"key: value\"", errPolicy, i+1)
		}
		// sts-policy-field-delim = ":" *WSP; fields may end with *WSP.
		value = strings.Trim(value, " \t")
		if key != "mx" {
			if seen[key] {
				continue
			}
			seen[key] = true
		}
		if err := p.set(key, value); err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", errPolicy, i+1, err)
		}
	}
	for _, k := range []string{"version", "mode", "max_age"} {
		if !seen[k] {
			return nil, fmt.Errorf("%w: no %s", errPolicy, k)
		}
	}
	if len(p.MX) == 0 && p.Mode != ModeNone {
		return nil, fmt.Errorf("%w: no mx", errPolicy)
	}
	return p, nil
}

// set applies one field of a policy file to p.
func (p *Policy) set(key, value string) error {
	switch key {
	case "version":
		if value != "STSv1" {
			return fmt.Errorf("version %q", value)
		}
	case "mode":
		if p.Mode = Mode(value); !p.Mode.valid() {
			return fmt.Errorf("mode %q", value)
		}
	case "max_age":
		// sts-policy-max-age-value = 1*10(DIGIT)
		if value == "" || len(value) > 10 || strings.Trim(value, "0123456789") != "" {
			return fmt.Errorf("max_age %q", value)
		}
		n, _ := strconv.ParseUint(value, 10, 64) // at most 10 digits: fits
		if n > MaxMaxAge {
			return fmt.Errorf("max_age %d above %d", n, MaxMaxAge)
		}
		p.MaxAge = time.Duration(n) * time.Second
	case "mx":
		pat, ok := normalizePattern(value)
		if !ok {
			return fmt.Errorf("mx %q", value)
		}
		p.MX = append(p.MX, pat)
	}
	return nil // sts-policy-extension: ignored
}

// validKey reports whether k is a field name of a policy file or TXT
// record: (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".").
func validKey(k string) bool {
	if k == "" || len(k) > 32 || !isAlnum(k[0]) {
		return false
	}
	for i := 1; i < len(k); i++ {
		if c := k[i]; !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// normalizePattern checks an mx pattern, ["*."] Domain (RFC 8461 section
// 3.2, Domain of RFC 5321 section 4.1.2, so A-labels for IDNs), and
// returns it lowercase; a trailing dot is tolerated and dropped.
func normalizePattern(s string) (string, bool) {
	s = strings.ToLower(strings.TrimSuffix(s, "."))
	name := strings.TrimPrefix(s, "*.")
	return s, validDomain(name)
}

// validDomain reports whether s is a domain in LDH syntax, no trailing dot
// (domainname's normal form, A-labels only).
func validDomain(s string) bool {
	_, err := domainname.Normalize(s, domainname.Options{ASCII: true})
	return err == nil
}

// validate checks a policy read back from the cache file.
func (p *Policy) validate() error {
	switch {
	case !p.Mode.valid():
		return fmt.Errorf("mode %q", p.Mode)
	case p.MaxAge < 0 || p.MaxAge > MaxMaxAge*time.Second:
		return fmt.Errorf("max_age %v", p.MaxAge)
	case len(p.MX) == 0 && p.Mode != ModeNone:
		return errors.New("no mx")
	case !validID(p.ID):
		return fmt.Errorf("id %q", p.ID)
	}
	for _, mx := range p.MX {
		if n, ok := normalizePattern(mx); !ok || n != mx {
			return fmt.Errorf("mx %q", mx)
		}
	}
	return nil
}
