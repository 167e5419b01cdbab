// Package dane authenticates SMTP servers with DANE (RFC 7672, on RFC 6698
// and RFC 7671): TLSA records, published under DNSSEC at
// _25._tcp.<MX host>, say which certificate or key the MX host presents;
// delivery checks the TLS handshake against them instead of the Web PKI.
//
// # How delivery uses it
//
// For an MX host whose MX and address records were DNSSEC-validated (RFC
// 7672 section 2.2: otherwise DANE does not apply):
//
//  1. Lookup(ctx, r, host, 25). An error means the TLSA records could not
//     be looked up (SERVFAIL, timeout): RFC 7672 section 2.1.1 — the host
//     must not be used without them (no downgrade): try the next MX host,
//     defer if none is left.
//  2. No records (nil, nil): no TLSA record, or an answer that was not
//     authenticated (AD bit clear, RFC 7672 section 2.1.1): DANE does not
//     apply; MTA-STS or opportunistic TLS as usual.
//  3. Usable(records) empty: TLSA records exist but none can be used for
//     SMTP (RFC 7672 section 3.1.3). DANE authentication does not apply;
//     RFC 7672 section 2.2 still says the server announced TLS, so, like
//     Postfix's "dane" level, use TLS without authentication and do not
//     fall back to plaintext.
//  4. Otherwise STARTTLS is mandatory, with Config(base, usable, names):
//     a missing STARTTLS or a failed handshake or verification fails the
//     attempt with this host temporarily (try the next MX host). DANE
//     takes precedence over MTA-STS (RFC 8461 section 2).
//
// The TLSA base domain is the MX host name, or its CNAME-expanded name if
// the expansion was secure (RFC 7672 section 2.2.3); Config sends it as
// SNI, as RFC 7672 requires. names are the reference identifiers a DANE-TA(2)
// certificate is checked against (section 3.2.2): the TLSA base domain
// and, if different, the MX host name as found in the MX record.
//
// # What Verify checks
//
//   - RFC 7672 section 3.1.3: only DANE-TA(2) and DANE-EE(3) records with
//     selector Cert(0) or SPKI(1) and matching type Full(0), SHA2-256(1)
//     or SHA2-512(2), with data of the right length, are usable; others
//     are ignored.
//   - RFC 7671 section 9 (digest algorithm agility): of the records with
//     the same usage and selector, SHA2-256 ones are ignored when SHA2-512
//     ones are present, so that a weak digest cannot be preferred by an
//     attacker.
//   - RFC 7672 section 3.1.1: DANE-EE(3) matches the leaf certificate (or
//     its public key); names, expiry and the rest of the chain are not
//     looked at.
//   - RFC 7672 section 3.1.2: DANE-TA(2) matches a certificate of the
//     chain the server presented (or, for "2 1 0" records, a public key
//     that signed one, so the server need not send the trust anchor);
//     that certificate is the trust anchor from which the leaf must
//     validate (signatures, expiry, CA constraints; no EKU requirement),
//     and the leaf must carry one of names (section 3.2.2; wildcards in
//     the leftmost label as RFC 6125).
//
// # Why hand-written
//
// Go DANE code exists but none fits: mox's package
// (github.com/mjl-/mox/dane) is tied to mox's own DNS resolver types and
// module; github.com/shuque/dane brings its own resolver and falls back to
// PKIX; smtpdane is a command, not a library. What SMTP needs is small
// (two usages, a match and a chain check with crypto/x509), and here it
// uses mxedge's resolver and adds no module.
//
// There is no package-level mutable state.
package dane
