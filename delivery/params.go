package delivery

import (
	"slices"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/mxedge/mxedge/queue"
)

// mailOptions are the MAIL parameters of msg for the next hop: SIZE,
// SMTPUTF8 when utf8 (see needsUTF8), and BODY as received (RFC 6152 section 2: BODY=8BITMIME only
// for a message received with it, BODY=7BIT otherwise; the client sends
// BODY only to a server with 8BITMIME).
func mailOptions(msg *queue.Message, utf8 bool) *smtp.MailOptions {
	o := &smtp.MailOptions{Size: msg.Size, UTF8: utf8, Body: smtp.Body7Bit}
	if msg.Body == "8BITMIME" {
		o.Body = smtp.Body8BitMIME
	}
	return withDSN(o, msg)
}

// withDSN adds the DSN parameters of MAIL (RFC 3461 sections 4.3, 4.4)
// to o; go-smtp sends them only to a next hop that announces DSN.
func withDSN(o *smtp.MailOptions, msg *queue.Message) *smtp.MailOptions {
	switch msg.Ret {
	case "FULL":
		o.Return = smtp.DSNReturnFull
	case "HDRS":
		o.Return = smtp.DSNReturnHeaders
	}
	if printableASCII(msg.EnvID) {
		o.EnvelopeID = msg.EnvID
	}
	return o
}

// rcptOptions are the DSN parameters of rcpt (RFC 3461 sections 4.1,
// 4.2) for its RCPT, nil if it gave none; go-smtp sends them only to a
// next hop that announces DSN. A value the client could not encode is
// left out rather than failing the recipient.
func rcptOptions(msg *queue.Message, rcpt string) *smtp.RcptOptions {
	p, ok := msg.Params[rcpt]
	if !ok {
		return nil
	}
	o := &smtp.RcptOptions{}
	for _, n := range p.Notify {
		for _, k := range strings.Split(n, ",") {
			switch k = strings.ToUpper(strings.TrimSpace(k)); smtp.DSNNotify(k) {
			case smtp.DSNNotifyNever, smtp.DSNNotifyDelayed, smtp.DSNNotifyFailure, smtp.DSNNotifySuccess:
				o.Notify = append(o.Notify, smtp.DSNNotify(k))
			}
		}
	}
	if slices.Contains(o.Notify, smtp.DSNNotifyNever) {
		o.Notify = []smtp.DSNNotify{smtp.DSNNotifyNever} // NEVER only alone
	}
	if typ, addr, ok := strings.Cut(p.ORcpt, ";"); ok && addr != "" {
		switch smtp.DSNAddressType(strings.ToUpper(typ)) {
		case smtp.DSNAddressTypeRFC822:
			if printableASCII(addr) {
				o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressTypeRFC822, addr
			}
		case smtp.DSNAddressTypeUTF8:
			o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressTypeUTF8, addr
		}
	}
	if len(o.Notify) == 0 && o.OriginalRecipient == "" {
		return nil
	}
	return o
}

// hasDSN reports whether the session's next hop announced DSN, so that
// the parameters were passed on.
func hasDSN(c *smtp.Client) bool {
	ok, _ := c.Extension("DSN")
	return ok
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
