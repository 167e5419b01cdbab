package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Action per RFC 3464 section 2.3.3.
type Action string

// The actions this package reports.
const (
	Failed    Action = "failed"
	Delayed   Action = "delayed"
	Delivered Action = "delivered" // for NOTIFY=SUCCESS reports: delivered to the mailbox
	// Relayed: handed to a next hop that will not report further (RFC 3464
	// section 2.3.3); a NOTIFY=SUCCESS report of a relay. Reported like
	// Delivered.
	Relayed Action = "relayed"
)

// Recipient is one recipient's line in the report.
type Recipient struct {
	// FinalRecipient is the address as delivered to, without <>. It becomes
	// "Final-Recipient: rfc822; addr", or with non-ASCII characters
	// "Final-Recipient: utf-8; addr" (RFC 6533).
	FinalRecipient string
	// OriginalRecipient is the ORCPT value if the client gave one, in its
	// typed form ("rfc822;addr"), with the SMTP xtext encoding already
	// removed. It is emitted as "Original-Recipient:" only when set; a value
	// without a type gets "rfc822;". In a 7-bit report its non-ASCII
	// characters are written as RFC 6533 \x{HEX} escapes.
	OriginalRecipient string
	Action            Action
	// Status is the enhanced status code, "5.1.1" (RFC 3463). A value that
	// is not one is replaced by the action's generic code: 5.0.0, 4.0.0 or
	// 2.0.0.
	Status string
	// RemoteMTA is the host name of the next hop that answered, "" if none
	// (then no Remote-MTA field): "Remote-MTA: dns; host". It appears only
	// in the machine-readable part, not in the text for the sender.
	RemoteMTA string
	// DiagnosticCode is the full SMTP reply, "550 5.1.1 no such user", ""
	// if none: "Diagnostic-Code: smtp; ...". Line breaks and control
	// characters are replaced by spaces.
	DiagnosticCode string
	LastAttempt    time.Time // zero = omit "Last-Attempt-Date"
	WillRetryUntil time.Time // only for Delayed; zero = omit
}

// Report is everything needed to build one DSN.
type Report struct {
	// ReportingMTA is our host name: "Reporting-MTA: dns; host". Required.
	ReportingMTA string
	// From is the address of the From header, without display name or <>,
	// e.g. "MAILER-DAEMON@mx1.example.net"; it gets the display name "Mail
	// Delivery System". Empty means "MAILER-DAEMON@" + ReportingMTA.
	From string
	// To is the envelope sender of the original message, the DSN's
	// recipient. Required: a message with the null reverse-path is never
	// reported on (RFC 5321 section 4.5.5), and Write refuses an empty To.
	To string
	// EnvelopeID is the ENVID if given: "Original-Envelope-Id:".
	EnvelopeID string
	// QueueID is the original message's queue ID, reported as
	// "X-Mxedge-Queue-ID:" and named in the human-readable text.
	QueueID string
	// ArrivalDate is when the original arrived: "Arrival-Date:" (omitted
	// when zero).
	ArrivalDate time.Time
	// Date is the Date header of the DSN; zero means time.Now().
	Date time.Time
	// MessageID is the Message-ID of the DSN, without <>. If empty, one is
	// made from QueueID, Date (to the microsecond), the report's action and
	// ReportingMTA, "<QueueID.20240102150405.000000.failed@ReportingMTA>",
	// which is unique as long as one message does not get two reports of
	// the same kind in the same microsecond; no randomness is involved.
	MessageID  string
	Recipients []Recipient
	// Original is the original message (header section and body, CRLF line
	// endings). With ReturnFull, it is returned whole as message/rfc822 when
	// it is at most MaxFull octets; otherwise (or without ReturnFull) only its
	// header section, everything up to the first empty line, is returned as
	// text/rfc822-headers (RFC 6522). Write reads at most MaxFull+1 octets
	// plus a header section of at most 1 MiB from it, never the rest. Nil
	// means no third part.
	Original   io.Reader
	ReturnFull bool
	// MaxFull is the largest original returned whole; 0 (or negative) means
	// 1 MiB.
	MaxFull int64
	// SMTPUTF8 says the original needed SMTPUTF8: the report then uses
	// message/global-delivery-status and message/global or
	// message/global-headers (RFC 6533), and may carry UTF-8 in every part.
	// A To address with non-ASCII characters has the same effect, since the
	// report itself then needs SMTPUTF8 to be delivered.
	SMTPUTF8 bool
}

const (
	defaultMaxFull   = 1 << 20 // Report.MaxFull when 0
	maxHeaderSection = 1 << 20 // cap on a returned header section
)

// Write writes the DSN message to w: the header section (From, To, Subject,
// Date, Message-ID, MIME-Version, Auto-Submitted: auto-replied,
// Content-Type: multipart/report; report-type=delivery-status, and
// Content-Transfer-Encoding), then the parts:
//
//  1. text/plain: a human-readable explanation in the tradition of
//     Postfix's bounce messages, listing each recipient with its diagnostic
//     (or its status code when there is none), and nothing internal beyond
//     that.
//  2. message/delivery-status: the per-message fields, a blank line, then
//     one group of per-recipient fields per recipient, separated by blank
//     lines.
//  3. message/rfc822 (the full original) or text/rfc822-headers (its header
//     section); left out when Report.Original is nil.
//
// The Subject follows the most serious action among the recipients: failed,
// then delayed, then delivered. The parts (and so the original) are held in
// memory, bounded by MaxFull and the 1 MiB header cap, so that the boundary
// can be checked against them before anything is written.
//
// Write returns an error, without writing anything, when the report is
// unusable (nil, no ReportingMTA, no To or "<>", no recipients, an unknown
// action) or reading the original fails (wrapped), and a wrapped error when
// writing to w fails.
func Write(w io.Writer, r *Report) error {
	if w == nil {
		return errors.New("dsn: nil writer")
	}
	if err := check(r); err != nil {
		return err
	}
	m, err := build(r)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	if err := m.writeTo(bw); err != nil {
		return fmt.Errorf("dsn: write: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("dsn: write: %w", err)
	}
	return nil
}

// check refuses a report that cannot become a DSN.
func check(r *Report) error {
	if r == nil {
		return errors.New("dsn: nil report")
	}
	if strings.TrimSpace(r.ReportingMTA) == "" {
		return errors.New("dsn: no ReportingMTA")
	}
	if strings.Trim(strings.TrimSpace(r.To), "<>") == "" {
		return errors.New("dsn: no To: a message with the null sender is never reported on")
	}
	if len(r.Recipients) == 0 {
		return errors.New("dsn: no recipients")
	}
	for i, rc := range r.Recipients {
		switch rc.Action {
		case Failed, Delayed, Delivered, Relayed:
		default:
			return fmt.Errorf("dsn: recipient %d: unknown action %q", i, rc.Action)
		}
	}
	return nil
}

// part is one body part of the report, ready to write.
type part struct {
	header []string // complete header fields, each ending in CRLF
	body   []byte   // CRLF lines, each at most 998 octets
}

// message is the whole report, ready to write.
type message struct {
	header     []string // header fields without Content-Type, each ending in CRLF
	reportType string   // report-type of the multipart/report
	boundary   string
	eightBit   bool
	parts      []part
}

// returned is what Write returns of the original.
type returned struct {
	full bool
	data []byte // normalized: CRLF lines of at most 998 octets
}

// build reads the original and lays out the whole report.
func build(r *Report) (*message, error) {
	utf8ok := r.SMTPUTF8 || !isASCII(r.To)
	date := r.Date
	if date.IsZero() {
		date = time.Now()
	}
	main := mainAction(r.Recipients)

	orig, err := readOriginal(r)
	if err != nil {
		return nil, err
	}

	text := humanText(r, main, date, orig, utf8ok)
	status := statusBody(r, utf8ok)

	m := &message{}
	m.parts = append(m.parts, part{
		header: []string{
			field("Content-Description", "Notification"),
			field("Content-Type", "text/plain; charset="+charset(text)),
			field("Content-Transfer-Encoding", cte(text)),
		},
		body: text,
	})
	// RFC 6522 section 3: report-type is the subtype of the second part.
	m.reportType = "delivery-status"
	if utf8ok {
		m.reportType = "global-delivery-status"
	}
	statusType := "message/" + m.reportType
	m.parts = append(m.parts, part{
		header: []string{
			field("Content-Description", "Delivery report"),
			field("Content-Type", statusType),
			field("Content-Transfer-Encoding", cte(status)),
		},
		body: status,
	})
	if orig != nil {
		desc := map[Action]string{
			Failed:    "Undelivered Message",
			Delayed:   "Delayed Message",
			Delivered: "Delivered Message",
		}[main]
		var typ string
		switch {
		case orig.full && utf8ok:
			typ = "message/global"
		case orig.full:
			typ = "message/rfc822"
		case utf8ok:
			typ, desc = "message/global-headers", desc+" Headers"
		default:
			typ, desc = "text/rfc822-headers", desc+" Headers"
		}
		m.parts = append(m.parts, part{
			header: []string{
				field("Content-Description", desc),
				field("Content-Type", typ),
				field("Content-Transfer-Encoding", cte(orig.data)),
			},
			body: orig.data,
		})
	}

	bodies := make([][]byte, len(m.parts))
	for i, p := range m.parts {
		bodies[i] = p.body
		if !isASCII(string(p.body)) {
			m.eightBit = true
		}
	}
	m.boundary = chooseBoundary(r.QueueID, bodies)

	subject := map[Action]string{
		Failed:    "Undelivered Mail Returned to Sender",
		Delayed:   "Delayed Mail (still being retried)",
		Delivered: "Successful Mail Delivery Report",
	}[main]
	from := cleanText(r.From, utf8ok, false)
	if from == "" {
		from = "MAILER-DAEMON@" + cleanText(r.ReportingMTA, false, false)
	}
	m.header = []string{
		field("From", "Mail Delivery System <"+from+">"),
		field("To", cleanText(r.To, utf8ok, false)),
		field("Subject", subject),
		field("Date", date.Format(rfc5322Date)),
		field("Message-ID", "<"+messageID(r, main, date)+">"),
		field("MIME-Version", "1.0"),
		field("Auto-Submitted", "auto-replied"),
	}
	return m, nil
}

// writeTo writes the report.
func (m *message) writeTo(w *bufio.Writer) error {
	for _, h := range m.header {
		w.WriteString(h)
	}
	w.WriteString(field("Content-Type",
		"multipart/report; report-type="+m.reportType+"; boundary=\""+m.boundary+"\""))
	enc := "7bit"
	if m.eightBit {
		enc = "8bit"
	}
	w.WriteString(field("Content-Transfer-Encoding", enc))
	w.WriteString("\r\nThis is a MIME-encapsulated message.\r\n")
	for _, p := range m.parts {
		w.WriteString("\r\n--" + m.boundary + "\r\n")
		for _, h := range p.header {
			w.WriteString(h)
		}
		w.WriteString("\r\n")
		w.Write(p.body)
	}
	// bufio.Writer keeps the first error; Flush (in Write) reports it too.
	_, err := w.WriteString("\r\n--" + m.boundary + "--\r\n")
	return err
}

// mainAction is the action the report is named after: failed wins, then
// delayed.
func mainAction(rcpts []Recipient) Action {
	main := Delivered
	for _, rc := range rcpts {
		switch {
		case rc.Action == Failed:
			return Failed
		case rc.Action == Delayed:
			main = Delayed
		}
	}
	return main
}

// readOriginal reads what is returned of the original, nil without one.
func readOriginal(r *Report) (*returned, error) {
	if r.Original == nil {
		return nil, nil
	}
	src := r.Original
	if r.ReturnFull {
		max := r.MaxFull
		if max <= 0 {
			max = defaultMaxFull
		}
		max = min(max, math.MaxInt64-1)
		buf, err := io.ReadAll(io.LimitReader(src, max+1))
		if err != nil {
			return nil, fmt.Errorf("dsn: read original: %w", err)
		}
		if int64(len(buf)) <= max {
			return &returned{full: true, data: normalize(buf)}, nil
		}
		// Too large: return its header section, which starts in buf.
		src = io.MultiReader(bytes.NewReader(buf), src)
	}
	hdr, err := readHeaderSection(src, maxHeaderSection)
	if err != nil {
		return nil, fmt.Errorf("dsn: read original: %w", err)
	}
	return &returned{data: normalize(hdr)}, nil
}

// readHeaderSection reads src up to its first empty line (CRLF or bare LF),
// which it leaves out, or to its end, but never more than limit octets.
func readHeaderSection(src io.Reader, limit int64) ([]byte, error) {
	br := bufio.NewReader(io.LimitReader(src, limit))
	var out []byte
	lineStart := true
	for {
		chunk, err := br.ReadSlice('\n')
		if lineStart && (string(chunk) == "\n" || string(chunk) == "\r\n") {
			return out, nil
		}
		out = append(out, chunk...)
		switch err {
		case nil:
			lineStart = true
		case bufio.ErrBufferFull:
			lineStart = false
		case io.EOF:
			return out, nil
		default:
			return nil, err
		}
	}
}

// charset is the text part's charset parameter.
func charset(b []byte) string {
	if isASCII(string(b)) {
		return "us-ascii"
	}
	return "utf-8"
}

// cte is the Content-Transfer-Encoding of a part with body b.
func cte(b []byte) string {
	if isASCII(string(b)) {
		return "7bit"
	}
	return "8bit"
}

// messageID is the Message-ID of the report, without <>.
func messageID(r *Report, main Action, date time.Time) string {
	if id := strings.Trim(cleanText(r.MessageID, r.SMTPUTF8, false), "<>"); id != "" {
		return strings.ReplaceAll(id, " ", "")
	}
	host := dotAtom(r.ReportingMTA)
	if host == "" {
		host = "localhost"
	}
	left := date.UTC().Format("20060102150405.000000") + "." + string(main)
	if q := dotAtom(r.QueueID); q != "" {
		left = q + "." + left
	}
	return left + "@" + host
}
