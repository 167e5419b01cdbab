package mtasts

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/resolver"
)

// Errors of the TXT record (RFC 8461 section 3.1). Either means: the
// domain has no available policy (unless one is cached).
var (
	// ErrNoRecord: no TXT record begins with "v=STSv1;" (the domain
	// does not publish MTA-STS).
	ErrNoRecord = errors.New("no v=STSv1 TXT record")
	// ErrInvalidRecord: more than one such record, or one that does not
	// parse.
	ErrInvalidRecord = errors.New("invalid v=STSv1 TXT record")
)

// LookupRecord looks up the TXT records of "_mta-sts.<domain>" and returns
// the MTA-STS record's id and text (RFC 8461 section 3.1). Errors: one
// wrapping ErrNoRecord (also for NXDOMAIN and NODATA, wrapping the
// resolver's error then too), one wrapping ErrInvalidRecord (the record
// text is returned if there was exactly one), or the resolver's error (a
// temporary failure). domain is normalized as Get does it; one that is
// not a domain name is an error wrapping resolver.ErrInvalid.
func LookupRecord(ctx context.Context, r Resolver, domain string) (id, record string, err error) {
	domain, err = normalizeDomain(domain)
	if err != nil {
		return "", "", err
	}
	return lookupRecord(ctx, r, domain)
}

// lookupRecord is LookupRecord with a normalized domain.
func lookupRecord(ctx context.Context, r Resolver, domain string) (id, record string, err error) {
	rrs, _, err := r.Lookup(ctx, "_mta-sts."+domain+".", dns.TypeTXT)
	if resolver.IsNotFound(err) {
		return "", "", fmt.Errorf("%w: %w", ErrNoRecord, err)
	}
	if err != nil {
		return "", "", err
	}
	return selectRecord(rrs)
}

// stsVersion begins every MTA-STS TXT record (sts-version, case-sensitive).
const stsVersion = "v=STSv1"

// selectRecord picks the MTA-STS record among the TXT records of
// "_mta-sts.<domain>" and returns its id (RFC 8461 section 3.1): the
// strings of each record are joined without spaces; records that do not
// begin with "v=STSv1;" are discarded; exactly one must remain, and be
// valid. The record's text is returned with its id.
func selectRecord(rrs []dns.RR) (id, record string, err error) {
	var found []string
	for _, rr := range rrs {
		txt, ok := rr.(*dns.TXT)
		if !ok {
			continue
		}
		s := strings.Join(txt.Txt, "")
		if isSTSRecord(s) {
			found = append(found, s)
		}
	}
	switch len(found) {
	case 0:
		return "", "", ErrNoRecord
	case 1:
		id, err := parseRecord(found[0])
		return id, found[0], err
	default:
		return "", "", fmt.Errorf("%w: %d records: %s", ErrInvalidRecord, len(found), strings.Join(found, " | "))
	}
}

// isSTSRecord reports whether s begins with the version field followed by
// a field delimiter (*WSP ";").
func isSTSRecord(s string) bool {
	rest, ok := strings.CutPrefix(s, stsVersion)
	return ok && strings.HasPrefix(strings.TrimLeft(rest, " \t"), ";")
}

// parseRecord parses an MTA-STS TXT record and returns its id (RFC 8461
// section 3.1):
//
//	sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim]
//	sts-field-delim = *WSP ";" *WSP
//	sts-id          = %s"id=" 1*32(ALPHA / DIGIT)
//	sts-extension   = sts-ext-name "=" sts-ext-value
//
// Extensions must be well-formed and are otherwise ignored; the id must
// appear exactly once.
func parseRecord(s string) (string, error) {
	fields := strings.Split(s, ";")
	if strings.TrimRight(fields[0], " \t") != stsVersion {
		return "", fmt.Errorf("%w: does not begin with %s", ErrInvalidRecord, stsVersion)
	}
	var id string
	for i, f := range fields[1:] {
		f = strings.Trim(f, " \t")
		if f == "" && i == len(fields)-2 {
			break // a trailing delimiter
		}
		name, value, ok := strings.Cut(f, "=")
		if !ok || !validKey(name) {
			return "", fmt.Errorf("%w: field %q", ErrInvalidRecord, f)
		}
		if name != "id" {
			if !validExtValue(value) {
				return "", fmt.Errorf("%w: field %q", ErrInvalidRecord, f)
			}
			continue
		}
		if id != "" {
			return "", fmt.Errorf("%w: two ids", ErrInvalidRecord)
		}
		if !validID(value) {
			return "", fmt.Errorf("%w: id %q", ErrInvalidRecord, value)
		}
		id = value
	}
	if id == "" {
		return "", fmt.Errorf("%w: no id", ErrInvalidRecord)
	}
	return id, nil
}

// validID reports whether s is an sts-id value: 1*32(ALPHA / DIGIT).
func validID(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) {
			return false
		}
	}
	return true
}

// validExtValue reports whether s is an sts-ext-value: 1*(%x21-3A / %x3C /
// %x3E-7E), printable ASCII other than "=" and ";".
func validExtValue(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '=' || c == ';' {
			return false
		}
	}
	return true
}
