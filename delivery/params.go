package delivery

import (
	"github.com/emersion/go-smtp"

	"github.com/mxedge/mxedge/queue"
)

// mailOptions are the MAIL parameters of msg for the next hop: SIZE,
// SMTPUTF8, and BODY as received (RFC 6152 section 2: BODY=8BITMIME only
// for a message received with it, BODY=7BIT otherwise; the client sends
// BODY only to a server with 8BITMIME).
func mailOptions(msg *queue.Message) *smtp.MailOptions {
	o := &smtp.MailOptions{Size: msg.Size, UTF8: msg.UTF8, Body: smtp.Body7Bit}
	if msg.Body == "8BITMIME" {
		o.Body = smtp.Body8BitMIME
	}
	return o
}
