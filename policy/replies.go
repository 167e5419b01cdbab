package policy

import (
	"net/netip"
	"strconv"
)

// The replies of the checks in this package, and the one every internal
// error becomes. Enhanced status codes per RFC 3463 / RFC 5248; texts in
// Postfix's wording where operators grep for it.

// TempLocal is the reply to a check's internal error: a 4xx, so the
// client retries, with no internal detail.
func TempLocal() *Reply {
	return &Reply{Code: 451, Enhanced: [3]int{4, 3, 0}, Text: "Temporary local problem, try again later"}
}

func replyRelayDenied(rcpt string) *Reply {
	// Postfix reject_unauth_destination.
	return &Reply{Code: 554, Enhanced: [3]int{5, 7, 1}, Text: "<" + rcpt + ">: Relay access denied"}
}

// replyUnknownRcpt is Postfix's reject_unverified_recipient refusal; reply
// is the next hop's reason (made printable and bounded by verifycache),
// "" for a recipient list.
func replyUnknownRcpt(rcpt, reply string) *Reply {
	msg := "<" + rcpt + ">: Recipient address rejected: "
	if reply == "" {
		msg += "User unknown in relay recipient table"
	} else {
		msg += "undeliverable address: " + reply
	}
	return &Reply{Code: 550, Enhanced: [3]int{5, 1, 1}, Text: msg}
}

func replyUnverified(rcpt string) *Reply {
	return &Reply{Code: 450, Enhanced: [3]int{4, 1, 1}, Text: "<" + rcpt + ">: Recipient address rejected: unverified address: try again later"}
}

// replyNextHopNoUTF8: the message needs SMTPUTF8 and the recipient's
// backend does not support it (RFC 6531 section 3.4, RFC 3463 5.6.7).
func replyNextHopNoUTF8(rcpt string) *Reply {
	return &Reply{Code: 553, Enhanced: [3]int{5, 6, 7}, Text: "<" + printable(rcpt, 256) + ">: Recipient address rejected: the mailbox server does not support SMTPUTF8, which this message needs"}
}

// replyTooManyUnknown: the client collected too many unknown recipients
// (verify.dictionary_disconnect): this RCPT and the rest of the
// transaction are deferred (the sender retries them later), the session
// ends after the transaction.
func replyTooManyUnknown() *Reply {
	return &Reply{Code: 450, Enhanced: [3]int{4, 7, 1}, Text: "Too many unknown recipients, try the rest later"}
}

// replyClientAccess is an access file's REJECT (554) or DEFER (450) of the
// client, in Postfix's wording; text "" is the default.
func replyClientAccess(code int, text string, ip netip.Addr) *Reply {
	if text == "" {
		text = "Access denied"
	}
	return &Reply{Code: code, Enhanced: [3]int{code / 100, 7, 1}, Text: "Client host [" + ip.String() + "] rejected: " + text}
}

func replySenderAccess(code int, text, from string) *Reply {
	if text == "" {
		text = "Access denied"
	}
	return &Reply{Code: code, Enhanced: [3]int{code / 100, 7, 1}, Text: "<" + printable(from, 256) + ">: Sender address rejected: " + text}
}

func itoa(n int) string { return strconv.Itoa(n) }

// The per-client limits (Postfix anvil wording); the client may come
// back later.
func replyTooManyConnections(ip netip.Addr) *Reply {
	return &Reply{Code: 421, Enhanced: [3]int{4, 7, 0}, Text: "Error: too many connections from " + ip.String()}
}

func replyConnectionRate(ip netip.Addr) *Reply {
	return &Reply{Code: 421, Enhanced: [3]int{4, 7, 0}, Text: "Error: too many connection attempts from " + ip.String()}
}

func replyMessageRate(ip netip.Addr) *Reply {
	return &Reply{Code: 421, Enhanced: [3]int{4, 7, 0}, Text: "Error: too much mail from " + ip.String()}
}

func replyRecipientRate(ip netip.Addr) *Reply {
	return &Reply{Code: 421, Enhanced: [3]int{4, 7, 0}, Text: "Error: too many recipients from " + ip.String()}
}

// Iprev refusals, Postfix's texts for reject_unknown_reverse_client_hostname
// and reject_unknown_client_hostname, RFC 7372's codes (X.7.25: reverse
// DNS validation failed).
func replyNoPTR(code int, ip netip.Addr) *Reply {
	return &Reply{Code: code, Enhanced: [3]int{code / 100, 7, 25}, Text: "Client host rejected: cannot find your reverse hostname, [" + ip.String() + "]"}
}

func replyNotConfirmed(code int, ip netip.Addr) *Reply {
	return &Reply{Code: code, Enhanced: [3]int{code / 100, 7, 25}, Text: "Client host rejected: cannot find your hostname, [" + ip.String() + "]"}
}

// replyDNSBL is postscreen's refusal of a client over the DNSBL threshold.
func replyDNSBL(ip netip.Addr, list string) *Reply {
	return &Reply{Code: 554, Enhanced: [3]int{5, 7, 1}, Text: "Service unavailable; client [" + ip.String() + "] blocked using " + list}
}

func replyHelo(code int, enh [3]int, helo, why string) *Reply {
	return &Reply{Code: code, Enhanced: enh, Text: "<" + helo + ">: Helo command rejected: " + why}
}

func replyHeloIsUs(code int, helo string) *Reply {
	return &Reply{Code: code, Enhanced: [3]int{code / 100, 7, 1}, Text: "<" + helo + ">: Helo command rejected: you are not me"}
}

// Postfix reject_unknown_sender_domain; RFC 7505 section 4.3 for a null
// MX sender.
func replyUnknownSenderDomain(code int, from string) *Reply {
	return &Reply{Code: code, Enhanced: [3]int{code / 100, 1, 8}, Text: "<" + printable(from, 256) + ">: Sender address rejected: Domain not found"}
}

func replyNullMXSender(from string) *Reply {
	return &Reply{Code: 550, Enhanced: [3]int{5, 7, 27}, Text: "<" + printable(from, 256) + ">: Sender address rejected: Domain does not accept mail (nullMX)"}
}
