// Package dsn builds delivery status notifications (bounces, delay warnings
// and success reports) as raw RFC 5322 messages, ready for the relay to
// queue with the null reverse-path to the original message's envelope
// sender.
//
// What is implemented:
//
//   - RFC 3464 section 2: the message/delivery-status body, with the
//     per-message fields of section 2.2 (Original-Envelope-Id,
//     Reporting-MTA, Arrival-Date, plus the extension field
//     X-Mxedge-Queue-ID) and the per-recipient fields of section 2.3
//     (Original-Recipient, Final-Recipient, Action, Status, Remote-MTA,
//     Diagnostic-Code, Last-Attempt-Date, Will-Retry-Until).
//   - RFC 3461 section 4.1 (NOTIFY, see NotifyWants), section 4.2 (ORCPT,
//     reported as Original-Recipient), section 4.3 (RET, Report.ReturnFull)
//     and section 4.4 (ENVID, reported as Original-Envelope-Id).
//   - RFC 6522 (which obsoletes RFC 3462): the multipart/report container
//     with a human-readable part, the machine-readable part and the returned
//     message (message/rfc822) or its header section (text/rfc822-headers).
//   - RFC 3834 section 5: "Auto-Submitted: auto-replied", so that
//     autoresponders do not answer the report.
//   - RFC 6533 for messages that needed SMTPUTF8: the "utf-8" address type
//     (in its \x{HEX} escaped form inside a 7-bit message/delivery-status,
//     raw UTF-8 inside message/global-delivery-status), and the
//     message/global-delivery-status, message/global and
//     message/global-headers media types.
//
// Why it is written by hand: there is no standalone, maintained Go library
// for composing RFC 3464 reports. The Go code that does it lives inside
// mail servers: maddy's internal/dsn cannot be imported at all, and mox's
// dsn package is built on mox's own smtp, message and logging packages and
// would bring the whole mox module with it. The format is small and fully
// specified, so this package implements it with the standard library only.
//
// The output is always well formed whatever the input: every line ends in
// CRLF, no line is longer than 998 octets (header fields are folded, overlong
// lines of the returned message are broken with CRLF SP as Postfix does),
// text from outside (diagnostics, addresses) has its control characters
// removed, and the MIME boundary is chosen so that it occurs in none of the
// parts. The package has no state: Write depends only on its Report.
package dsn
