package dsn

import (
	"strconv"
	"strings"
	"time"
)

// textWidth is where the human-readable text is wrapped.
const textWidth = 72

// humanText returns the first part: the explanation for the sender. It says
// nothing about the relay beyond its host name, the queue ID and what each
// recipient's diagnostic says.
func humanText(r *Report, main Action, date time.Time, orig *returned, utf8ok bool) []byte {
	var b []byte
	para := func(s string) {
		b = appendWrapped(b, s, textWidth, "")
		b = append(b, "\r\n"...)
	}
	host := cleanText(r.ReportingMTA, utf8ok, true)
	queueID := cleanText(r.QueueID, false, true)
	para("This is the mail system at host " + host + ".")

	attached := ""
	switch {
	case orig == nil:
	case orig.full:
		attached = " It's attached below."
	default:
		attached = " Its header section is attached below."
	}
	hasDelayed := false
	for _, rc := range r.Recipients {
		hasDelayed = hasDelayed || rc.Action == Delayed
	}

	switch main {
	case Failed:
		para("I'm sorry to have to inform you that your message could not be delivered to one or more recipients." + attached)
		if hasDelayed {
			para("Delivery to the recipients listed as delayed below is still being tried. " + delaySentence(r, date))
		}
	case Delayed:
		b = append(b, "####################################################################\r\n"...)
		b = append(b, "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n"...)
		b = append(b, "####################################################################\r\n\r\n"...)
		para(delaySentence(r, date) + attached)
	case Delivered:
		para("Your message was successfully delivered to the destination(s) listed below. If the message was delivered to a mailbox you will receive no further notifications. Otherwise you may still receive notifications of mail delivery errors from other systems." + attached)
	}

	if main == Delivered {
		if queueID != "" {
			para("Your message had the queue ID " + queueID + " at this host.")
		}
	} else {
		help := "For further assistance, please send mail to postmaster. If you do so, please include this problem report"
		if queueID != "" {
			help += " (your message had the queue ID " + queueID + " at this host)"
		}
		help += "."
		if orig != nil && orig.full {
			help += " You can delete your own text from the attached returned message."
		}
		para(help)
	}

	b = append(b, "                   The mail system\r\n"...)

	// The recipients, grouped by action when the actions differ.
	mixed := false
	for _, rc := range r.Recipients {
		mixed = mixed || rc.Action != r.Recipients[0].Action
	}
	for _, a := range []Action{Failed, Delayed, Delivered, Relayed} {
		first := true
		for _, rc := range r.Recipients {
			if rc.Action != a {
				continue
			}
			if first && mixed {
				b = append(b, "\r\n"...)
				b = appendWrapped(b, map[Action]string{
					Failed:    "Delivery failed permanently:",
					Delayed:   "Delivery delayed, still being tried:",
					Delivered: "Delivered:",
					Relayed:   "Relayed:",
				}[a], textWidth, "")
			}
			first = false
			b = append(b, "\r\n"...)
			b = appendWrapped(b, recipientLine(rc, utf8ok), textWidth, "    ")
		}
	}
	return b
}

// delaySentence says how long the message has waited and until when it will
// be retried, as far as the report knows.
func delaySentence(r *Report, date time.Time) string {
	s := "Your message could not yet be delivered."
	if !r.ArrivalDate.IsZero() && !date.Before(r.ArrivalDate) {
		switch h := int64(date.Sub(r.ArrivalDate).Hours()); h {
		case 0:
			s = "Your message could not be delivered for less than an hour."
		case 1:
			s = "Your message could not be delivered for 1 hour."
		default:
			s = "Your message could not be delivered for " + strconv.FormatInt(h, 10) + " hours."
		}
	}
	var until time.Time
	for _, rc := range r.Recipients {
		if rc.Action == Delayed && rc.WillRetryUntil.After(until) {
			until = rc.WillRetryUntil
		}
	}
	if !until.IsZero() {
		s += " It will be retried until " + until.Format(rfc5322Date) + "."
	}
	return s
}

// recipientLine is a recipient's entry in the text: its address and the
// diagnostic, or the status code when there is no diagnostic.
func recipientLine(rc Recipient, utf8ok bool) string {
	addr := cleanText(rc.FinalRecipient, true, false)
	if !utf8ok && !isASCII(addr) {
		addr = utf8AddrXtext(addr)
	}
	diag := cleanText(rc.DiagnosticCode, utf8ok, true)
	status := statusCode(rc)
	switch {
	case (rc.Action == Delivered || rc.Action == Relayed) && diag != "":
		return "<" + addr + ">: " + string(rc.Action) + " (" + diag + ")"
	case rc.Action == Delivered || rc.Action == Relayed:
		return "<" + addr + ">: " + string(rc.Action) + " (status " + status + ")"
	case diag != "":
		return "<" + addr + ">: " + diag
	case rc.Action == Delayed:
		return "<" + addr + ">: delivery delayed (status " + status + ")"
	default:
		return "<" + addr + ">: delivery failed (status " + status + ")"
	}
}

// statusBody returns the second part, the message/delivery-status (or
// message/global-delivery-status) body of RFC 3464 section 2.
func statusBody(r *Report, utf8ok bool) []byte {
	var b strings.Builder
	// Per-message fields (section 2.2; their order is free).
	b.WriteString(field("Reporting-MTA", "dns; "+cleanText(r.ReportingMTA, false, true)))
	if q := cleanText(r.QueueID, false, true); q != "" {
		b.WriteString(field("X-Mxedge-Queue-ID", q))
	}
	if id := cleanText(r.EnvelopeID, false, false); id != "" {
		b.WriteString(field("Original-Envelope-Id", id))
	}
	if !r.ArrivalDate.IsZero() {
		b.WriteString(field("Arrival-Date", r.ArrivalDate.Format(rfc5322Date)))
	}
	// Per-recipient fields (section 2.3), one group each.
	for _, rc := range r.Recipients {
		b.WriteString("\r\n")
		if o := originalRecipient(rc.OriginalRecipient, utf8ok); o != "" {
			b.WriteString(field("Original-Recipient", o))
		}
		b.WriteString(field("Final-Recipient", typedAddress(rc.FinalRecipient, utf8ok)))
		b.WriteString(field("Action", string(rc.Action)))
		b.WriteString(field("Status", statusCode(rc)))
		if mta := cleanText(rc.RemoteMTA, false, true); mta != "" {
			b.WriteString(field("Remote-MTA", "dns; "+mta))
		}
		if d := cleanText(rc.DiagnosticCode, utf8ok, true); d != "" {
			b.WriteString(field("Diagnostic-Code", "smtp; "+d))
		}
		if !rc.LastAttempt.IsZero() {
			b.WriteString(field("Last-Attempt-Date", rc.LastAttempt.Format(rfc5322Date)))
		}
		if rc.Action == Delayed && !rc.WillRetryUntil.IsZero() {
			b.WriteString(field("Will-Retry-Until", rc.WillRetryUntil.Format(rfc5322Date)))
		}
	}
	return []byte(b.String())
}

// originalRecipient returns the value of the Original-Recipient field, ""
// for none: the ORCPT as given, "rfc822;" prefixed when it has no type, and
// with non-ASCII characters escaped in a 7-bit report.
func originalRecipient(orcpt string, utf8ok bool) string {
	o := cleanText(orcpt, true, false)
	if o == "" {
		return ""
	}
	// RFC 3464 section 2.1.2: address-type is an atom.
	typ, addr, ok := strings.Cut(o, ";")
	if typ = strings.TrimSpace(typ); !ok || typ == "" || dotAtom(typ) != typ || strings.Contains(typ, ".") {
		typ, addr = "rfc822", o
		if !isASCII(o) {
			typ = "utf-8"
		}
	}
	o = typ + ";" + addr
	if !utf8ok {
		o = escapeNonASCII(o)
	}
	return o
}

// statusCode returns the recipient's status if it is an RFC 3463 enhanced
// status code (class "." subject "." detail, with class 2, 4 or 5 and one to
// three digits without leading zeros each after), else the action's generic
// code.
func statusCode(rc Recipient) string {
	if validStatus(rc.Status) {
		return rc.Status
	}
	switch rc.Action {
	case Failed:
		return "5.0.0"
	case Delayed:
		return "4.0.0"
	default:
		return "2.0.0"
	}
}

func validStatus(s string) bool {
	class, rest, ok := strings.Cut(s, ".")
	if !ok || class != "2" && class != "4" && class != "5" {
		return false
	}
	subject, detail, ok := strings.Cut(rest, ".")
	return ok && statusNumber(subject) && statusNumber(detail)
}

func statusNumber(s string) bool {
	if len(s) == 0 || len(s) > 3 || len(s) > 1 && s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
