// Package mtasts is mxedge's MTA-STS (RFC 8461) policy cache: it tells
// delivery which TLS policy a recipient domain publishes, so that mail to
// a domain in "enforce" mode goes only to the MX hosts the policy names,
// over TLS with a certificate valid for the MX host name.
//
// # What it implements
//
//   - RFC 8461 section 3.1 (record.go): the "_mta-sts.<domain>" TXT
//     record, "v=STSv1; id=...". CNAMEs are followed (by the resolver).
//     Records that do not begin with "v=STSv1" are discarded; if not
//     exactly one remains, or it is invalid, the domain has no available
//     policy. The strings of one record are joined without spaces.
//   - RFC 8461 section 3.2 (policy.go): the policy file, "key: value"
//     lines ended by CRLF or LF: version STSv1, mode enforce / testing /
//     none, max_age at most 31557600 seconds, at least one mx line unless
//     the mode is none. Unknown keys are ignored; of a repeated key other
//     than mx the first one counts. Anything else invalidates the policy.
//   - RFC 8461 section 3.3 (fetch.go): the policy is fetched from
//     https://mta-sts.<domain>/.well-known/mta-sts.txt, with the
//     certificate verified for that name against the system roots, no
//     redirects followed, no HTTP cache, status 200 and media type
//     text/plain required, at most 64 KiB of body, and one minute at most.
//     The default client (NewClient) resolves mta-sts.<domain> through
//     Options.Resolver (the resolver every stage uses), not the system
//     resolver; ClientOptions give it other root CAs and another port
//     (tests serve the policy with ststest, an HTTPS server with their
//     own CA). A failed fetch is not retried for the same domain and id
//     for five minutes (section 3.3's suggestion, to spare a struggling
//     policy host).
//   - RFC 8461 section 3.4: a policy applies to exactly the domain it was
//     fetched for; a subdomain never inherits its parent's.
//   - RFC 8461 section 4.1 (Policy.Match): MX host names are matched
//     against the mx patterns, exactly or with a "*." wildcard standing
//     for one leftmost label, case-insensitively, trailing dots ignored.
//   - RFC 8461 sections 3.3 and 5.1 (cache.go): a policy is cached for its
//     max_age from the time it was fetched; it is fetched again when the
//     TXT id changes or the cached copy has expired. While a cached policy
//     is valid it stays in force whatever happens to DNS or HTTPS (no TXT
//     record, a lookup failure, a failed fetch). Refresh refetches cached
//     policies before they expire ("refresh before expiry") and logs a
//     failure as a warning unless the cached mode is none.
//   - Persistence (store.go): with Options.Dir, the cache is kept in
//     <Dir>/mtasts.json, rewritten atomically (temporary file, fsync,
//     rename, directory fsync) after every change, so policies survive a
//     restart: the point of MTA-STS is that a policy seen once protects
//     the next deliveries even if an attacker then blocks DNS or HTTPS.
//
// # Contract of Get (for delivery)
//
// Cache.Get(ctx, domain) returns (p, err):
//
//   - err != nil: the policy in force is unknown now — the TXT lookup
//     failed temporarily (SERVFAIL, timeout) and no valid policy is
//     cached, or ctx ended. The error wraps the resolver's error
//     (resolver.IsTemporary is true). Delivery should defer the domain,
//     not guess "no policy". (A domain that is not a host name gives an
//     error wrapping resolver.ErrInvalid instead: permanent.)
//   - p == nil, err == nil: the domain has no MTA-STS policy in force:
//     no TXT record, an invalid record, or a policy that could not be
//     fetched or was invalid (RFC 8461 section 3.3: then deliver "as though
//     the domain has not implemented MTA-STS"; the failure is logged).
//   - p != nil: the policy in force. Mode ModeEnforce: deliver only to MX
//     hosts for which p.Match is true, only over TLS with a certificate
//     valid (Web PKI, RFC 8461 section 4.2) for the MX host name, SNI set
//     to it (section 7.1), TLS 1.2 or later (section 7.2); otherwise the
//     attempt fails temporarily. ModeTesting: deliver as without a policy,
//     but log what enforce would have refused. ModeNone: as p == nil.
//
// p is the caller's copy. Get may take up to a minute when it has to
// fetch; concurrent Gets for one domain share one fetch. RFC 8461 section
// 5.1: a delivery must not fail permanently before the sender has checked
// for a new policy — calling Get again before bouncing does that, since
// Get always asks DNS for the current id. DANE, where it applies, takes
// precedence (RFC 8461 section 2): MTA-STS never overrides a failed DANE
// check.
//
// # Why hand-written
//
// Go MTA-STS code exists, but none fits: chasquid's is an internal package;
// mox's (github.com/mjl-/mox/mtasts) is part of the whole mox module and
// speaks mox's own DNS and logging types; github.com/foxcpp/go-mtasts
// (extracted from maddy) is untagged, marked unstable, and has its own
// resolver and store interfaces; newer single-author modules have no track
// record. The protocol is small (a record parser, a policy parser, an HTTPS
// GET and a cache), and written here it uses mxedge's resolver — one test
// DNS server drives it like every other stage — and needs no new module.
//
// # Without the cache
//
// LookupRecord (the TXT record) and Fetch (the policy, with a client of
// NewClient) are the two steps of Get without the cache and without its
// forgiveness: they say exactly what is wrong. "mxedge doctor" checks the
// relay's own domains with them.
//
// There is no package-level mutable state: two caches in one process (two
// relays in a test) share nothing.
package mtasts
