package mtasts

import (
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// Errors of the TXT record (RFC 8461 section 3.1). Either means: the
// domain has no available policy (unless one is cached).
var (
	errNoRecord = errors.New("no v=STSv1 TXT record")
	errRecord   = errors.New("invalid v=STSv1 TXT record")
)

// stsVersion begins every MTA-STS TXT record (sts-version, case-sensitive).
const stsVersion = "v=STSv1"

// selectRecord picks the MTA-STS record among the TXT records of
// "_mta-sts.<domain>" and returns its id (RFC 8461 section 3.1): the
// strings of each record are joined without spaces; records that do not
// begin with "v=STSv1;" are discarded; exactly one must remain, and be
// valid.
func selectRecord(rrs []dns.RR) (string, error) {
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
		return "", errNoRecord
	case 1:
		return parseRecord(found[0])
	default:
		return "", fmt.Errorf("%w: %d records", errRecord, len(found))
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
		return "", fmt.Errorf("%w: does not begin with %s", errRecord, stsVersion)
	}
	var id string
	for i, f := range fields[1:] {
		f = strings.Trim(f, " \t")
		if f == "" && i == len(fields)-2 {
			break // a trailing delimiter
		}
		name, value, ok := strings.Cut(f, "=")
		if !ok || !validKey(name) {
			return "", fmt.Errorf("%w: field %q", errRecord, f)
		}
		if name != "id" {
			if !validExtValue(value) {
				return "", fmt.Errorf("%w: field %q", errRecord, f)
			}
			continue
		}
		if id != "" {
			return "", fmt.Errorf("%w: two ids", errRecord)
		}
		if !validID(value) {
			return "", fmt.Errorf("%w: id %q", errRecord, value)
		}
		id = value
	}
	if id == "" {
		return "", fmt.Errorf("%w: no id", errRecord)
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
