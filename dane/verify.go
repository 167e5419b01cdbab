package dane

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// Verification failures; Verify's errors wrap one of them.
var (
	// ErrNoUsableRecords: none of the records given is usable for SMTP.
	ErrNoUsableRecords = errors.New("dane: no usable TLSA records")
	// ErrNoMatch: the server's certificates match no usable record.
	ErrNoMatch = errors.New("dane: certificate does not match the TLSA records")
)

// Verify checks the certificates of a TLS connection against TLSA
// records, as a tls.Config.VerifyConnection callback (see Config); only
// the Usable records count. It succeeds if one record is satisfied:
//
//   - DANE-EE(3) (RFC 7672 section 3.1.1): the leaf certificate, or its
//     public key, matches. Nothing else is checked: not the names, not the
//     expiry, not the rest of the chain.
//   - DANE-TA(2) (RFC 7672 section 3.1.2): a certificate of the presented
//     chain matches (for a "2 1 0" record, also: the record's public key
//     signed one of them), and from that trust anchor the leaf validates
//     (signatures, validity periods, CA constraints), and the leaf is
//     valid for one of names, the reference identifiers (section 3.2.2:
//     the TLSA base domain, the MX host name).
//
// Otherwise the error wraps ErrNoUsableRecords or ErrNoMatch and says what
// the server presented, so that an operator can compare it with DNS.
func Verify(cs tls.ConnectionState, records []*dns.TLSA, names []string) error {
	chain := cs.PeerCertificates
	if len(chain) == 0 {
		return fmt.Errorf("%w: the server presented no certificate", ErrNoMatch)
	}
	records = strongest(Usable(records))
	if len(records) == 0 {
		return ErrNoUsableRecords
	}
	leaf := chain[0]
	var taErrs []error
	for _, r := range records {
		if r.Usage == UsageDANEEE && matches(r, leaf) {
			return nil
		}
	}
	for _, r := range records {
		if r.Usage != UsageDANETA {
			continue
		}
		anchor := findAnchor(r, chain)
		if anchor == nil {
			continue
		}
		err := verifyFromAnchor(anchor, chain, names)
		if err == nil {
			return nil
		}
		taErrs = append(taErrs, fmt.Errorf("trust anchor %q (%s): %w", anchor.Subject.String(), recordString(r), err))
	}
	err := fmt.Errorf("%w: server presented %s", ErrNoMatch, describe(leaf))
	if len(taErrs) > 0 {
		err = fmt.Errorf("%w; %w", err, errors.Join(taErrs...))
	}
	return err
}

// matches reports whether cert matches record r's selector, matching type
// and data (RFC 6698 section 2.1). r is usable.
func matches(r *dns.TLSA, cert *x509.Certificate) bool {
	want, err := hex.DecodeString(r.Certificate)
	if err != nil {
		return false
	}
	data := cert.Raw
	if r.Selector == SelectorSPKI {
		data = cert.RawSubjectPublicKeyInfo
	}
	switch r.MatchingType {
	case MatchSHA256:
		sum := sha256.Sum256(data)
		data = sum[:]
	case MatchSHA512:
		sum := sha512.Sum512(data)
		data = sum[:]
	}
	return bytes.Equal(data, want)
}

// findAnchor returns the certificate of chain that DANE-TA record r makes
// the trust anchor: the first one that matches r, else, for a record
// holding a full public key ("2 1 0"), the first one signed by that key —
// the server need not send a trust anchor whose public key is published
// in full in DNS (RFC 7671 section 5.2). nil if none.
func findAnchor(r *dns.TLSA, chain []*x509.Certificate) *x509.Certificate {
	for _, c := range chain {
		if matches(r, c) {
			return c
		}
	}
	if r.Selector != SelectorSPKI || r.MatchingType != MatchFull {
		return nil
	}
	der, _ := hex.DecodeString(r.Certificate)
	key, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil
	}
	signer := &x509.Certificate{PublicKey: key}
	for _, c := range chain {
		if signer.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil {
			return c
		}
	}
	return nil
}

// verifyFromAnchor validates the leaf, chain[0], up to anchor with the
// rest of chain as intermediates, at the current time, and checks that
// the leaf is valid for one of names.
func verifyFromAnchor(anchor *x509.Certificate, chain []*x509.Certificate, names []string) error {
	roots := x509.NewCertPool()
	roots.AddCert(anchor)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	leaf := chain[0]
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		// RFC 7672 does not require the serverAuth extended key usage.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return errors.New("no reference identifier to check the certificate's names against")
	}
	for _, n := range names {
		if leaf.VerifyHostname(strings.TrimSuffix(n, ".")) == nil {
			return nil
		}
	}
	return fmt.Errorf("certificate is valid for %s, not for %s", certNames(leaf), strings.Join(names, ", "))
}

// describe says what a leaf certificate is, with the data of the "3 1 1"
// record that would match it.
func describe(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return fmt.Sprintf("a certificate for %s issued by %q (SPKI SHA2-256 %x)", certNames(c), c.Issuer.String(), sum)
}

func certNames(c *x509.Certificate) string {
	if len(c.DNSNames) > 0 {
		return strings.Join(c.DNSNames, ", ")
	}
	return fmt.Sprintf("%q", c.Subject.String())
}

// recordString shows a record's fields without its name: "2 0 1 ab12...".
func recordString(r *dns.TLSA) string {
	data := r.Certificate
	if len(data) > 16 {
		data = data[:16] + "..."
	}
	return fmt.Sprintf("%d %d %d %s", r.Usage, r.Selector, r.MatchingType, strings.ToLower(data))
}
