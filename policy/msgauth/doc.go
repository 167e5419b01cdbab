// Package msgauth holds the message authentication checks of the MX
// chain: SPF at MAIL FROM, DKIM verification and DMARC at DATA, and the one
// Authentication-Results header field that reports them to the backend.
// Every lookup goes through the relay's resolver (policy.DNS), never the
// system's.
//
//   - SPF (RFC 7208) with blitiri.com.ar/go/spf: the HELO identity (section
//     2.3) and the MAIL FROM identity (section 2.4; postmaster@<HELO> for the
//     null sender, section 2.4), once per transaction at MAIL FROM; the
//     results are kept in the Txn for DMARC and Authentication-Results. The
//     actions of fail and temperror are the operator's (SPF.Fail,
//     SPF.TempError): by default a fail only feeds DMARC, since rejecting on
//     SPF alone refuses forwarded mail (RFC 7208 appendix D).
//   - DKIM (RFC 6376, RFC 8463 ed25519-sha256) with go-msgauth's dkim: the
//     data is piped into the verifier while it arrives (policy.Streamer),
//     never buffered whole; at most MaxSignatures signatures are verified
//     (the rest are neutral), each key lookup with its own deadline; RSA
//     keys under 1024 bits are refused (RFC 8301 section 3.2, reported as
//     policy). The key record is looked up for every signature; its parsed
//     form is kept by the record's exact text (keyCacheSize records), so a
//     replaced or revoked key counts from the next message. go-msgauth is
//     the pinned in-tree fork in third_party/go-msgauth (FORK.md).
//   - DMARC (RFC 7489) with go-msgauth's dmarc record parser, the
//     organisational domain (section 3.2) from golang.org/x/net/publicsuffix
//     for the fallback lookup (section 6.6.3) and relaxed alignment;
//     identifier alignment of SPF and DKIM with the RFC 5322.From domain
//     (section 3.1); a message with zero or several From addresses is
//     refused (section 6.6.1); p=reject (sp= for subdomains) refuses in the
//     session, pct honoured (section 6.6.4), quarantine accepted with the
//     verdict unless configured otherwise; a local exemption list.
//   - Authentication-Results (RFC 8601) through go-msgauth's authres: one
//     field with iprev, spf, dkim and dmarc; incoming fields that carry our
//     authserv-id are dropped before queueing (section 5).
package msgauth
