package policy

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

// replyTooManyUnknown: the client collected too many unknown recipients
// (verify.dictionary_disconnect); it may come back after the window.
func replyTooManyUnknown() *Reply {
	return &Reply{Code: 421, Enhanced: [3]int{4, 7, 0}, Text: "Too many unknown recipients, closing connection"}
}
