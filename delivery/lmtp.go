package delivery

import (
	"errors"
	"strings"

	"github.com/emersion/go-smtp"
)

// LMTP next hops (RFC 2033): a route "lmtp:host:port" or
// "lmtp:unix:/path/to/socket" delivers to a mailbox store (Dovecot,
// Cyrus) over LMTP instead of SMTP. The dialogue is SMTP's with LHLO for
// EHLO, and after the final "." one reply per accepted recipient, in RCPT
// order (RFC 2033 section 4.2): each recipient is delivered, deferred or
// failed on its own. Everything else is as for an SMTP route: TLS policy
// (STARTTLS when offered, over TCP; none over a unix socket), connection
// reuse, dead-hop state, and recipient verification probes
// (LHLO/MAIL/RCPT/RSET).

// lmtpPrefix starts an LMTP route.
const lmtpPrefix = "lmtp:"

// parseLMTPRoute returns the network ("tcp" or "unix") and address of an
// LMTP route, ok false if route is not one.
func parseLMTPRoute(route string) (network, addr string, ok bool) {
	rest, ok := strings.CutPrefix(route, lmtpPrefix)
	if !ok {
		return "", "", false
	}
	if p, ok := strings.CutPrefix(rest, "unix:"); ok {
		return "unix", p, true
	}
	return "tcp", rest, true
}

// IsLMTPRoute reports whether route names an LMTP next hop.
func IsLMTPRoute(route string) bool {
	_, _, ok := parseLMTPRoute(route)
	return ok
}

// lmtpReply is one recipient's reply to the final "." over LMTP.
type lmtpReply struct {
	code      int
	enh, text string
}

// closeLMTP ends an LMTP DATA and returns each recipient's reply (RFC
// 2033 section 4.2), the reply of the recipients without one (the
// connection failed before every reply arrived) and what becomes of the
// session.
func closeLMTP(w *smtp.DataCommand) (map[string]lmtpReply, lmtpReply, next) {
	resp, err := w.CloseWithLMTPResponse()
	per := make(map[string]lmtpReply, len(resp))
	for rcpt, r := range resp {
		enh, text := splitEnhanced(r.StatusText)
		per[rcpt] = lmtpReply{code: 250, enh: enh, text: text}
	}
	var le smtp.LMTPDataError
	if errors.As(err, &le) {
		for rcpt, se := range le {
			code, enh, text := describe(se)
			per[rcpt] = lmtpReply{code: code, enh: enh, text: text}
		}
	}
	if err == nil || !lostConnection(err) {
		return per, lmtpReply{code: 0, enh: "4.4.2", text: "no LMTP reply for this recipient"}, keep
	}
	// A network error (maybe joined with the replies read before it): the
	// recipients without a reply get it.
	return per, lmtpReply{code: 0, enh: "4.4.2", text: "lost connection after the final dot: " + netReason(err)}, drop
}

// lostConnection reports whether err holds more than per-recipient
// replies (go-smtp joins a network error with them).
func lostConnection(err error) bool {
	if _, ok := err.(smtp.LMTPDataError); ok {
		return false // only replies
	}
	return true
}
