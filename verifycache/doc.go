// Package verifycache is mxedge's recipient verification: it tells the MX
// listener at RCPT time whether a recipient of a relay domain exists, by
// asking the domain's next hop with an SMTP probe and caching the answer.
// It is Postfix's verify(8) daemon with reject_unverified_recipient, and it
// exists because of two field rules (shared/PRINCIPLES.md): the first relay
// must know the recipients (accepting mail for a nonexistent address means
// bouncing it later: backscatter), and it must keep accepting mail for real
// users while the backend is down.
//
// # Probe (probe.go)
//
// The probe takes the route delivery takes: Router maps the domain to its
// next hops. The daemon uses MXRoutes: the fixed "host:port" of [routes]
// (every relay domain has one: its MX is this relay), else the domain's MX
// hosts in preference order (mxroute), walked as delivery walks them.
// The dialogue (RFC 5321 sections 3.3, 4.1.1):
//
//	EHLO <hostname>
//	MAIL FROM:<probe sender>      (double-bounce@<hostname> by default, or <>)
//	RCPT TO:<address>
//	RSET                          (connection kept for the next probe) or QUIT
//
// never DATA. The reply to RCPT decides: 2xx = the address exists, 5xx = it
// does not (unless its enhanced status is X.3.X or X.5.X, a system or
// protocol refusal that says nothing about the address). Anything else is
// temporary: a 4xx, a refused connection, a timeout, a TLS failure, and
// also a 5xx to the greeting, EHLO or MAIL (that refuses the probe, not the
// recipient: typically a backend that rejects the probe sender; logged as a
// warning). Every step has a deadline: the probe's context (probe_timeout)
// closes the connection, and each command also has its own reply timeout.
// Probes per next hop are limited in concurrency and rate (limit.go).
//
// # Cache (cache.go, entry.go)
//
// Results live in a bbolt file of their own, <data_dir>/verify.db, keyed by
// the address in the wire form smtpd hands over: local part as received
// (its case kept, RFC 5321 section 2.4), domain lowercased, IDNs as
// A-labels (Normalize does the same for admin input).
//
//   - exists: valid for PositiveTTL (30 days) from the last successful
//     probe; used after RefreshAfter (7 days) it is probed again in the
//     background while the RCPT is accepted at once. A refresh that fails,
//     temporarily or with a 5xx, never overwrites a still valid positive
//     entry: an outage or a misconfigured backend must not turn known users
//     away. Only Forget ("mxedge verify forget") removes one deliberately.
//   - unknown: valid for NegativeTTL (3 hours), then probed again at the
//     next use.
//   - tempfail: held in memory only, for TempfailTTL (about a minute), so
//     that RCPTs during an outage do not each start a probe.
//
// A periodic pass deletes expired entries (Maintain). Every duration is
// measured with Options.Now, so tests jump to day 29 or day 31 without
// sleeping; rate limits and latencies use the real clock.
//
// # At RCPT (verifier.go)
//
// Verify answers from the cache; on a miss it starts a probe and waits up
// to InlineWait (8 s) for it; concurrent lookups of one address share one
// probe (flight.go), and a probe that outlives the wait still fills the
// cache for the sender's retry. Internal errors (the cache file) are a
// deferral, never a rejection.
//
// # Dictionary attacks (guard.go)
//
// Per client IP (IPv6: per /64), unknown recipients are counted within
// DictWindow. From
// DictLimit on, the client starts no more probes (an address not in the
// cache is deferred at once) and each refusal is delayed by DictDelay; at
// DictDisconnect the session ends, but not before its transaction: that
// RCPT and the rest of the transaction's are deferred with 450 4.7.1 (no
// probes), the message goes on for the recipients already accepted (a
// defense must never make accepted mail undeliverable), and the next MAIL
// gets 421. Until the window ends only addresses known to exist are
// accepted from the client. 500 random recipients thus cost the backend
// DictLimit probes.
//
// # Next hop extensions (extensions.go)
//
// A probe's connection is greeted with EHLO, so each probe notes whether
// the domain's next hop announces SMTPUTF8. The MX listener's verify
// check (policy.Verify) refuses a recipient with 553 5.6.7 when its
// message needs SMTPUTF8 (SMTPUTF8 given, and the sender or that
// recipient not ASCII: RFC 6531 section 3.4 allows no downgrade) and the
// next hop is known to lack it, instead of accepting and bouncing later.
// For MX destinations (domains that are not probed) nothing is known at
// RCPT: delivery sends a message whose envelope and header section are
// ASCII without SMTPUTF8, and returns the others with 5.6.7.
//
// Probes reuse delivery's connections, at most 5 probes per connection
// (servers such as Exim count RSET as a command without mail and drop
// the connection after 10), then QUIT and a new connection.
//
// # Catch-all detection (catchall.go)
//
// Each probed domain in use gets a probe for a random nonexistent local
// part: right after its first RCPT probe since the start, then every
// CatchAllInterval. A backend that accepts it accepts everything:
// verification is useless there. That is logged as a warning and reported
// in Stats.
//
// # Static lists (list.go)
//
// A domain whose backend cannot be probed can use a recipient list file
// instead (mode "list"): one local part or address per line.
package verifycache
