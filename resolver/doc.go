// Package resolver is mxedge's DNS stub resolver: the one resolver that
// every stage asks (delivery's MX walk, recipient verification, and later
// DNSBL, SPF, DKIM, DMARC, MTA-STS and DANE), so one in-process test DNS
// server (package dnstest) drives them all.
//
// It is written around github.com/miekg/dns rather than Go's net.Resolver,
// because net.Resolver cannot report the AD bit (needed for DANE), cannot
// look up TLSA records, does not reliably tell "no such name" (NXDOMAIN)
// from "no records of that type" (NODATA) — a distinction the MX walk
// depends on — and cannot be pointed at a test server per instance.
//
// # What it implements
//
//   - RFC 1035 section 4.2.1 and RFC 7766 section 5: queries go over UDP;
//     an answer with the TC bit is asked again over TCP.
//   - RFC 6891: every query carries an EDNS0 OPT record (UDP payload
//     1232 bytes, the DNS flag day 2020 value) with the DO bit set, so a
//     validating upstream sets AD on answers it validated.
//   - RFC 4035 section 3.2.3: Result.Authentic is the AD bit of the
//     response. A stub resolver cannot check it: it is only as good as the
//     path to the configured server. Use a validating resolver on the same
//     host (127.0.0.1) or over a trusted network before relying on it.
//   - RFC 1034 section 3.6.2 and RFC 2181 section 10.1: CNAME chains in an
//     answer are followed, at most 8 deep; a longer chain (or a loop) is a
//     temporary failure.
//   - RFC 2308: answers are cached for their TTL (at most a day); negative
//     answers (NXDOMAIN, NODATA) for min(SOA TTL, SOA MINIMUM) (section 5),
//     at most 3 hours, and not at all without an SOA. The cache is bounded
//     (least recently used entries go first). Temporary failures are not
//     cached.
//   - Identical concurrent queries are sent once and share the answer.
//
// # Servers, timeouts, retries
//
// The servers come from Config.Servers, else from /etc/resolv.conf, else
// 127.0.0.1:53. Each query tries every server in turn, Config.Attempts
// rounds: a timeout, a network error, an unusable response or an rcode
// other than NOERROR and NXDOMAIN (SERVFAIL, REFUSED, ...) moves to the
// next server. Every network exchange has a deadline: the earlier of the
// caller's context and Config.Timeout. At most Config.MaxInFlight exchanges
// (sockets) are in flight at once; more wait for a slot.
//
// # Error contract
//
// Every lookup error is a *Error whose Kind is one of:
//
//   - ErrNotExist: NXDOMAIN, the name does not exist (for any type).
//     Permanent.
//   - ErrNoRecords: NODATA, the name exists but has no records of the type
//     asked. Permanent.
//   - ErrInvalid: the name cannot be a domain name. Permanent.
//   - ErrTemporary: SERVFAIL, REFUSED, timeout, network failure, cancelled
//     context, CNAME chain too long. The answer is unknown: try again
//     later, never treat it as "no records".
//
// Test with errors.Is(err, ErrNotExist) and so on, or with the helpers
// IsNotFound and IsTemporary, which also classify errors that are not a
// *Error (from a fake resolver): anything not known to be permanent is
// temporary.
//
// A Resolver has no package-level state: two relays in one process (an
// MX-10 pair in a test) each have their own servers and cache.
package resolver
