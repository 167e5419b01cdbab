package submission

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/mail"
	"strings"
	"time"

	"github.com/mxedge/mxedge/auth"
	"github.com/mxedge/mxedge/policy"
)

// Header is the DATA check of what the submission service fixes or
// refuses in a message's header section (RFC 6409 section 8, shared/
// PRINCIPLES.md "Message hygiene"). It reads the header section while the
// data streams in (policy.Streamer; at most maxHeader bytes are kept, the
// body is not looked at) and then:
//
//   - refuses raw 8-bit bytes in the header without SMTPUTF8 (554 5.6.7:
//     RFC 6532 needs SMTPUTF8, else RFC 2047 encoded words);
//   - refuses a message without a From: field (554 5.6.0) and one whose
//     From: addresses are not all owned by the login (553 5.7.1, as the
//     envelope sender at MAIL);
//   - adds Date (section 8.2) and Message-ID (section 8.3) when missing.
type Header struct {
	Map      auth.SenderMap
	Hostname string           // right side of generated Message-IDs
	Now      func() time.Time // [time.Now]
}

// maxHeader bounds the header section kept while reading it.
const maxHeader = 256 << 10

func (Header) Name() string { return "header" }

type headerKey struct{}

// headerScan collects the header section from the stream.
type headerScan struct {
	buf  []byte
	done bool // the empty line was seen (or the limit reached)
	big  bool
}

func (h *headerScan) Write(p []byte) (int, error) {
	if h.done {
		return len(p), nil
	}
	start := max(len(h.buf)-3, 0)
	h.buf = append(h.buf, p...)
	if bytes.HasPrefix(h.buf, []byte("\r\n")) {
		h.buf, h.done = h.buf[:0], true // no header section at all
		return len(p), nil
	}
	if i := bytes.Index(h.buf[start:], []byte("\r\n\r\n")); i >= 0 {
		h.buf, h.done = h.buf[:start+i+2], true
	} else if len(h.buf) > maxHeader {
		h.done, h.big = true, true
	}
	return len(p), nil
}

func (h *headerScan) Close() error { return nil }

func (c Header) Stream(_ context.Context, _ *policy.Conn, t *policy.Txn) io.WriteCloser {
	h := &headerScan{}
	t.SetValue(headerKey{}, h)
	return h
}

var (
	replyHeader8bit = &policy.Reply{Code: 554, Enhanced: [3]int{5, 6, 7}, Text: "Header contains 8-bit characters without SMTPUTF8; use MIME encoded words"}
	replyNoFrom     = &policy.Reply{Code: 554, Enhanced: [3]int{5, 6, 0}, Text: "Message has no valid From: header"}
	replyFromOwned  = &policy.Reply{Code: 553, Enhanced: [3]int{5, 7, 1}, Text: "From: address not owned by user"}
	replyBigHeader  = &policy.Reply{Code: 552, Enhanced: [3]int{5, 3, 4}, Text: "Header section too large"}
)

func (c Header) CheckData(_ context.Context, pc *policy.Conn, t *policy.Txn, _ policy.Message) policy.Result {
	h, _ := t.Value(headerKey{}).(*headerScan)
	if h == nil {
		return policy.Result{}
	}
	if h.big {
		return policy.Result{Reply: replyBigHeader}
	}
	fields := parseFields(h.buf)
	if !t.Mail.UTF8 && hasHighBit(h.buf) {
		return policy.Result{Reply: replyHeader8bit}
	}
	var from []string
	hasDate, hasID := false, false
	for _, f := range fields {
		switch strings.ToLower(f.name) {
		case "from":
			list, err := mail.ParseAddressList(f.value)
			if err != nil {
				return policy.Result{Reply: replyNoFrom, Reason: "From: " + err.Error()}
			}
			for _, a := range list {
				from = append(from, a.Address)
			}
		case "date":
			hasDate = true
		case "message-id":
			hasID = true
		}
	}
	if len(from) == 0 {
		return policy.Result{Reply: replyNoFrom}
	}
	if pc.AuthUser != "" {
		rules, ok := c.Map.Senders(pc.AuthUser)
		for _, a := range from {
			if !ok || !rules.Owns(a) {
				return policy.Result{Reply: replyFromOwned, Reason: "login " + pc.AuthUser + " From " + a}
			}
		}
	}
	var add []string
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	if !hasDate {
		add = append(add, "Date: "+now().Format(time.RFC1123Z)+"\r\n")
	}
	if !hasID {
		var r [8]byte
		_, _ = rand.Read(r[:])
		add = append(add, "Message-ID: <"+t.QueueID+"."+hex.EncodeToString(r[:])+"@"+c.Hostname+">\r\n")
	}
	return policy.Result{Headers: add}
}

type field struct{ name, value string }

// parseFields splits a header section (CRLF lines) into unfolded fields;
// lines that are not fields are skipped.
func parseFields(b []byte) []field {
	var out []field
	for _, line := range strings.Split(string(b), "\r\n") {
		if line == "" {
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && len(out) > 0 {
			out[len(out)-1].value += line
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || strings.ContainsAny(name, " \t") {
			continue
		}
		out = append(out, field{name, strings.TrimSpace(value)})
	}
	return out
}

func hasHighBit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}
