package doctor

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/dane"
)

// dane checks the TLSA records of our MX listeners, _25._tcp.<hostname>
// (RFC 7672), against the certificate chains they serve (every MX
// listener that offers STARTTLS: a sender may reach any of them), with
// package dane's lookup (only DNSSEC-authenticated records count, RFC 7672
// section 2.1.1) and matching (usages DANE-TA(2) and DANE-EE(3)). No
// records: DANE is not published, which is fine. Published records must
// be satisfied by every chain a listener may serve, or a DANE sender
// that gets that chain defers our mail.
func (c *run) dane() {
	h := strings.TrimSuffix(c.in.Hostname, ".")
	name := "_25._tcp." + h
	const check = "DANE TLSA matches our certificate"
	recs, err := dane.Lookup(c.ctx, c.d, h, 25)
	if err != nil {
		c.add(check, name, false, err.Error(),
			"make the TLSA lookup answer (records, NODATA or NXDOMAIN): DANE senders defer mail while it fails")
		return
	}
	if recs == nil {
		if raw, _, _ := c.d.LookupTLSA(c.ctx, 25, "tcp", h); len(raw) > 0 {
			c.warn(check, name, "TLSA records without DNSSEC (AD bit clear): senders ignore them: "+tlsaList(raw),
				"sign the zone of "+h+" with DNSSEC, or remove the records")
			return
		}
		c.add(check, name, true, "not published (DANE is optional)", "")
		return
	}
	if len(c.in.Chains) == 0 {
		c.add(check, name, false, "TLSA records published but no tls_cert to serve: "+tlsaList(recs),
			"set tls_cert/tls_key of the MX listener, or remove the TLSA records")
		return
	}
	usable := dane.Usable(recs)
	if len(usable) == 0 {
		c.add(check, name, false, "no record usable for SMTP (usage 2 or 3, selector 0 or 1, matching 0, 1 or 2): "+tlsaList(recs),
			c.tlsaFix(name))
		return
	}
	names := []string{h}
	for _, ch := range c.in.Chains {
		err := dane.Verify(tls.ConnectionState{PeerCertificates: ch.Certs}, recs, names)
		found := tlsaList(recs)
		if err != nil {
			found = err.Error() + "; published: " + found
		}
		c.add(check, name+c.chainLabel(ch), err == nil, found, c.tlsaFix(name))
	}
	// A record that none of our chains satisfies is either the next key
	// of a rollover (RFC 7671 section 8.1: publish it before the new
	// certificate) or stale.
	for _, r := range usable {
		matched := slices.ContainsFunc(c.in.Chains, func(ch Chain) bool {
			return dane.Verify(tls.ConnectionState{PeerCertificates: ch.Certs}, []*dns.TLSA{r}, names) == nil
		})
		if !matched {
			c.warn("TLSA record matches a served certificate", name, tlsaString(r),
				"keep it only as the next key of a rollover; remove it once stale")
		}
	}
}

// tlsaFix is the record to publish: "3 1 1" (DANE-EE, SPKI, SHA2-256) of
// every served leaf, which survives renewals that keep the key.
func (c *run) tlsaFix(name string) string {
	var recs []string
	for _, ch := range c.in.Chains {
		recs = append(recs, fmt.Sprintf("%s. TLSA 3 1 1 %s", name, spkiSHA256(ch.Certs[0])))
	}
	return "publish (DNSSEC-signed) " + strings.Join(recs, "; ")
}

func spkiSHA256(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return fmt.Sprintf("%x", sum)
}

// tlsaString is a record's fields: "3 1 1 ab12...".
func tlsaString(r *dns.TLSA) string {
	return fmt.Sprintf("%d %d %d %s", r.Usage, r.Selector, r.MatchingType, strings.ToLower(r.Certificate))
}

func tlsaList(rs []*dns.TLSA) string { return strings.Join(mapf(rs, tlsaString), ", ") }
