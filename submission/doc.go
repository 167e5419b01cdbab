// Package submission is mail submission for desktop clients (RFC 6409 on
// port 587 with STARTTLS, RFC 8314 on port 465 with implicit TLS): the
// listener profile, its policy checks, its per-user limits, and DKIM
// signing of what it accepted, after the queue.
//
// # One SMTP session implementation
//
// A submission listener is an smtpd.Server: package smtpd serves every
// listener kind, and this package gives it the submission profile
// (Profile: AUTH through package auth, required before MAIL with 530
// 5.7.0, offered only after TLS; implicit TLS for "submissions") and the
// submission chain (Chain). So the gate (session limit, its own
// goroutine/connection budget per listener: max_sessions), the session
// code (DATA streaming, Received, bare CR/LF, hop count, queue Commit) and
// every fix to them exist once; what differs per kind is options and
// checks, as in Postfix's master.cf where submission is smtpd with other
// -o options. A flood on the MX listener takes its own session slots and
// goroutines, not those of 587 (integration test and benchmark).
//
// # The checks (Chain)
//
//   - Sender (MAIL): the envelope sender must be owned by the login
//     (Postfix reject_sender_login_mismatch), else 553 5.7.1.
//   - RateLimit (MAIL, RCPT, DATA): messages and recipients per user per
//     hour and day, 450 4.7.1 when over (Store: counters in bbolt,
//     surviving a restart; "mxedge user show NAME").
//   - Header (DATA, streaming): RFC 6409 section 8 fixes (Date, Message-ID
//     added when missing), 8-bit header bytes without SMTPUTF8 refused
//     with 554 5.6.7, the From: addresses owned by the login (553 5.7.1).
//
// Authenticated clients may send to any domain: no relay-domain check and
// no recipient verification here (they are the MX chain's).
//
// # After the queue
//
// Signer is the queue's Signer: DKIM (RFC 6376; rsa-sha256 and, when the
// domain also has an Ed25519 key, ed25519-sha256, RFC 8463)
// relaxed/relaxed, once per message before its first attempt, for mail
// from these listeners and for the relay's own reports. Keys: Key,
// "mxedge dkim keygen|show". Received says "with ESMTPSA" (RFC 3848), and
// can leave the client's address out (hide_client_ip).
package submission
