// Package auth is SASL authentication for mxedge's submission listeners
// (587, 465): the mechanisms, the password backends, and the brute force
// guard.
//
// # Mechanisms
//
// PLAIN (RFC 4616; go-sasl's server) and LOGIN
// (draft-murchison-sasl-login: "Username:", "Password:"; go-sasl has no
// LOGIN server, so mech.go has a small one, with its tests). No mechanism
// is offered before TLS: go-smtp offers AUTH only on a TLS connection and
// answers an AUTH before it with 538 5.7.11 (RFC 4954 section 6; the
// in-tree go-smtp fork, FORK.md section 13). A PLAIN authorization
// identity other than the user is refused.
//
// # Backends
//
//   - File: mxedge's users file (userfile.go), in Dovecot's passwd-file
//     line format, managed with "mxedge user add|passwd|del|list|show";
//     new passwords are {ARGON2ID} (golang.org/x/crypto/argon2, Dovecot's
//     parameters); {BLF-CRYPT}, {SHA512-CRYPT} (shacrypt.go), {SSHA512} and
//     {CRYPT} of those are accepted, so an existing Dovecot file works.
//     Re-read when it changes; errors name file and line.
//   - Dovecot: Dovecot's authentication socket (dovecot.go), the protocol
//     of Postfix's smtpd_sasl_type = dovecot, with a login map for the
//     sender rules (loginmap.go).
//
// Comparisons are constant-time, and an unknown user is checked against a
// decoy hash of the same scheme and cost as a real one, so it costs the
// same time as a wrong password. Password checks in flight are bounded
// (Options.Concurrency): a flood of AUTH cannot take all memory with
// argon2id.
//
// # Brute force (guard.go)
//
// Failures are counted per client network (IPv4 address, IPv6 /64) within
// 15 minutes: after 5 every AUTH reply is delayed, at 10 the client gets
// "421 4.7.0 Too many authentication failures" and is locked out of AUTH
// for 15 minutes. A user name that fails from many networks is slowed
// down, never locked out, and not slowed at all on a network from which
// it authenticated successfully within 30 days.
//
// Every failure is one log line, for fail2ban:
//
//	level=WARN msg="auth failed" listener=submission client_ip=192.0.2.7 user=alice mech=PLAIN failures=3 locked=false
//
// with the filter
//
//	[Definition]
//	failregex = msg="auth failed" listener=\S+ client_ip=<HOST>
//
// (a lockout is the line with locked=true; "auth refused" lines are
// clients still locked out).
//
// Sender rules (Senders) are the addresses a login may use as envelope
// sender and in From:; package submission enforces them.
package auth
