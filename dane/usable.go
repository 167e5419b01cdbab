package dane

import (
	"encoding/hex"

	"github.com/miekg/dns"
)

// TLSA field values (RFC 6698 section 7, RFC 7218 acronyms).
const (
	UsagePKIXTA = 0 // not usable for SMTP
	UsagePKIXEE = 1 // not usable for SMTP
	UsageDANETA = 2
	UsageDANEEE = 3

	SelectorCert = 0 // the full certificate
	SelectorSPKI = 1 // its SubjectPublicKeyInfo

	MatchFull   = 0 // the data itself
	MatchSHA256 = 1
	MatchSHA512 = 2
)

// Usable returns the records usable for SMTP (RFC 7672 section 3.1.3):
// usage DANE-TA(2) or DANE-EE(3), selector Cert(0) or SPKI(1), matching
// type Full(0), SHA2-256(1) or SHA2-512(2), with association data that is
// hex of the right length (32 bytes for SHA2-256, 64 for SHA2-512, not
// empty for Full). The others are ignored: PKIX-TA(0) and PKIX-EE(1)
// depend on the Web PKI, which an SMTP client cannot know the server
// relies on. If records exist but none is usable, DANE authentication
// does not apply (see the package documentation for what delivery then
// does). The result is nil if none is usable; it shares records' elements.
func Usable(records []*dns.TLSA) []*dns.TLSA {
	var out []*dns.TLSA
	for _, r := range records {
		if usable(r) {
			out = append(out, r)
		}
	}
	return out
}

func usable(r *dns.TLSA) bool {
	if r == nil || r.Usage != UsageDANETA && r.Usage != UsageDANEEE {
		return false
	}
	if r.Selector != SelectorCert && r.Selector != SelectorSPKI {
		return false
	}
	data, err := hex.DecodeString(r.Certificate)
	if err != nil {
		return false
	}
	switch r.MatchingType {
	case MatchFull:
		return len(data) > 0
	case MatchSHA256:
		return len(data) == 32
	case MatchSHA512:
		return len(data) == 64
	}
	return false
}

// strongest drops the SHA2-256 records of each usage and selector for
// which SHA2-512 records exist (RFC 7671 section 9, digest algorithm
// agility): an attacker who could forge SHA2-256 must not be able to pick
// the weaker digest. Full(0) records are kept.
func strongest(records []*dns.TLSA) []*dns.TLSA {
	type combo struct{ usage, selector uint8 }
	has512 := map[combo]bool{}
	for _, r := range records {
		if r.MatchingType == MatchSHA512 {
			has512[combo{r.Usage, r.Selector}] = true
		}
	}
	var out []*dns.TLSA
	for _, r := range records {
		if r.MatchingType == MatchSHA256 && has512[combo{r.Usage, r.Selector}] {
			continue
		}
		out = append(out, r)
	}
	return out
}
