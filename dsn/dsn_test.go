package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"os/exec"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

var t0 = time.Date(2024, 1, 2, 10, 0, 0, 0, time.UTC)

const smallOriginal = "From: alice@example.org\r\nTo: bob@example.com\r\nSubject: hello\r\nMessage-ID: <m1@example.org>\r\n\r\nHello Bob,\r\n\r\nsee you.\r\n"

// baseReport returns a one-recipient bounce with a small original.
func baseReport() *Report {
	return &Report{
		ReportingMTA: "mx1.example.net",
		From:         "MAILER-DAEMON@mx1.example.net",
		To:           "alice@example.org",
		QueueID:      "01HQ3K5V7W9X2Y4Z",
		ArrivalDate:  t0,
		Date:         t0.Add(5 * time.Hour),
		Recipients: []Recipient{{
			FinalRecipient: "bob@example.com",
			Action:         Failed,
			Status:         "5.1.1",
			RemoteMTA:      "backend.example.com",
			DiagnosticCode: "550 5.1.1 no such user",
			LastAttempt:    t0.Add(time.Hour),
		}},
		Original:   strings.NewReader(smallOriginal),
		ReturnFull: true,
	}
}

// parsed is a DSN taken apart with the standard library.
type parsed struct {
	raw       []byte
	header    mail.Header
	mediaType string
	params    map[string]string
	parts     []parsedPart
	// perMessage and perRecipient are the header groups of the status part.
	perMessage   textproto.MIMEHeader
	perRecipient []textproto.MIMEHeader
}

type parsedPart struct {
	header    textproto.MIMEHeader
	mediaType string
	params    map[string]string
	body      []byte
}

func write(t testing.TB, r *Report) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, r); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes()
}

// parse takes raw apart with net/mail, mime/multipart and net/textproto,
// failing t on any error.
func parse(t testing.TB, raw []byte) *parsed {
	t.Helper()
	p, err := parseErr(raw)
	if err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	return p
}

func parseErr(raw []byte) (*parsed, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("mail.ReadMessage: %v", err)
	}
	p := &parsed{raw: raw, header: msg.Header}
	p.mediaType, p.params, err = mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		return nil, fmt.Errorf("top-level Content-Type: %v", err)
	}
	if p.params["boundary"] == "" {
		return nil, errors.New("no boundary")
	}
	mr := multipart.NewReader(msg.Body, p.params["boundary"])
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("NextRawPart: %v", err)
		}
		body, err := io.ReadAll(part)
		if err != nil {
			return nil, fmt.Errorf("reading part: %v", err)
		}
		pp := parsedPart{header: part.Header, body: body}
		pp.mediaType, pp.params, err = mime.ParseMediaType(part.Header.Get("Content-Type"))
		if err != nil {
			return nil, fmt.Errorf("part Content-Type: %v", err)
		}
		p.parts = append(p.parts, pp)
	}
	if len(p.parts) < 2 {
		return nil, fmt.Errorf("%d parts", len(p.parts))
	}
	groups, err := headerGroups(p.parts[1].body)
	if err != nil {
		return nil, fmt.Errorf("status part: %v", err)
	}
	if len(groups) < 2 {
		return nil, fmt.Errorf("status part has %d groups", len(groups))
	}
	p.perMessage, p.perRecipient = groups[0], groups[1:]
	return p, nil
}

// headerGroups reads body as successive blocks of header fields separated
// by blank lines.
func headerGroups(body []byte) ([]textproto.MIMEHeader, error) {
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(body)))
	var groups []textproto.MIMEHeader
	for {
		h, err := tp.ReadMIMEHeader()
		if len(h) > 0 {
			groups = append(groups, h)
		}
		if err == io.EOF {
			return groups, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// checkLines fails t unless every line of raw ends in CRLF and is at most
// 998 octets long.
func checkLines(t testing.TB, raw []byte) {
	t.Helper()
	if err := linesErr(raw); err != nil {
		t.Fatal(err)
	}
}

func linesErr(raw []byte) error {
	if len(raw) == 0 || !bytes.HasSuffix(raw, []byte("\r\n")) {
		return errors.New("output does not end in CRLF")
	}
	for i, line := range bytes.Split(raw[:len(raw)-2], []byte("\r\n")) {
		if j := bytes.IndexAny(line, "\r\n"); j >= 0 {
			return fmt.Errorf("line %d: bare %q at %d: %q", i+1, line[j], j, line)
		}
		if len(line) > 998 {
			return fmt.Errorf("line %d is %d octets long", i+1, len(line))
		}
	}
	return nil
}

func TestWriteStructure(t *testing.T) {
	tests := []struct {
		name    string
		actions []Action
		subject string
		desc    string
	}{
		{"failed", []Action{Failed}, "Undelivered Mail Returned to Sender", "Undelivered Message"},
		{"delayed", []Action{Delayed}, "Delayed Mail (still being retried)", "Delayed Message"},
		{"delivered", []Action{Delivered}, "Successful Mail Delivery Report", "Delivered Message"},
		{"failed wins", []Action{Delivered, Delayed, Failed}, "Undelivered Mail Returned to Sender", "Undelivered Message"},
		{"delayed wins over delivered", []Action{Delivered, Delayed}, "Delayed Mail (still being retried)", "Delayed Message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := baseReport()
			r.Recipients = nil
			for i, a := range tt.actions {
				r.Recipients = append(r.Recipients, Recipient{
					FinalRecipient: fmt.Sprintf("rcpt%d@example.com", i),
					Action:         a,
					Status:         map[Action]string{Failed: "5.1.1", Delayed: "4.4.1", Delivered: "2.0.0"}[a],
				})
			}
			raw := write(t, r)
			checkLines(t, raw)
			p := parse(t, raw)

			if p.mediaType != "multipart/report" || p.params["report-type"] != "delivery-status" {
				t.Errorf("Content-Type %q %v", p.mediaType, p.params)
			}
			if got := p.header.Get("Subject"); got != tt.subject {
				t.Errorf("Subject %q, want %q", got, tt.subject)
			}
			if got := p.header.Get("Auto-Submitted"); got != "auto-replied" {
				t.Errorf("Auto-Submitted %q", got)
			}
			if got := p.header.Get("MIME-Version"); got != "1.0" {
				t.Errorf("MIME-Version %q", got)
			}
			from, err := mail.ParseAddress(p.header.Get("From"))
			if err != nil || from.Name != "Mail Delivery System" || from.Address != "MAILER-DAEMON@mx1.example.net" {
				t.Errorf("From %q: %v %v", p.header.Get("From"), from, err)
			}
			to, err := p.header.AddressList("To")
			if err != nil || len(to) != 1 || to[0].Address != "alice@example.org" {
				t.Errorf("To %q: %v", p.header.Get("To"), err)
			}
			if d, err := p.header.Date(); err != nil || !d.Equal(r.Date) {
				t.Errorf("Date %q: %v", p.header.Get("Date"), err)
			}
			wantID := "<01HQ3K5V7W9X2Y4Z.20240102150000.000000." + string(mainAction(r.Recipients)) + "@mx1.example.net>"
			if got := p.header.Get("Message-ID"); got != wantID {
				t.Errorf("Message-ID %q, want %q", got, wantID)
			}

			wantTypes := []string{"text/plain", "message/delivery-status", "message/rfc822"}
			if len(p.parts) != 3 {
				t.Fatalf("%d parts, want 3", len(p.parts))
			}
			for i, want := range wantTypes {
				if p.parts[i].mediaType != want {
					t.Errorf("part %d: %q, want %q", i+1, p.parts[i].mediaType, want)
				}
			}
			if cs := p.parts[0].params["charset"]; cs != "us-ascii" {
				t.Errorf("charset %q", cs)
			}
			if got := p.parts[2].header.Get("Content-Description"); got != tt.desc {
				t.Errorf("Content-Description %q, want %q", got, tt.desc)
			}
			if len(p.perRecipient) != len(tt.actions) {
				t.Fatalf("%d recipient groups, want %d", len(p.perRecipient), len(tt.actions))
			}
			for i, a := range tt.actions {
				if got := p.perRecipient[i].Get("Action"); got != string(a) {
					t.Errorf("recipient %d: Action %q, want %q", i, got, a)
				}
			}
		})
	}
}

func TestStatusFields(t *testing.T) {
	r := baseReport()
	r.EnvelopeID = "QQ314159"
	r.Recipients = []Recipient{
		{
			FinalRecipient:    "bob@example.com",
			OriginalRecipient: "rfc822;Bob@Example.COM",
			Action:            Failed,
			Status:            "5.1.1",
			RemoteMTA:         "backend.example.com",
			DiagnosticCode:    "550 5.1.1 <bob@example.com>: Recipient address rejected",
			LastAttempt:       t0.Add(time.Hour),
		},
		{
			FinalRecipient: "carol@example.com",
			Action:         Delayed,
			Status:         "4.4.1",
			DiagnosticCode: "451 4.4.1 try again later",
			LastAttempt:    t0.Add(2 * time.Hour),
			WillRetryUntil: t0.Add(120 * time.Hour),
		},
		{
			FinalRecipient: "dave@example.com",
			Action:         Failed,
			Status:         "5.4.7",
			WillRetryUntil: t0.Add(120 * time.Hour), // ignored: not delayed
		},
	}
	p := parse(t, write(t, r))

	pm := p.perMessage
	for k, want := range map[string]string{
		"Reporting-MTA":        "dns; mx1.example.net",
		"X-Mxedge-Queue-ID":    "01HQ3K5V7W9X2Y4Z",
		"Original-Envelope-Id": "QQ314159",
		"Arrival-Date":         "Tue, 02 Jan 2024 10:00:00 +0000",
	} {
		if got := pm.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}

	type fields map[string]string // "" = must be absent
	want := []fields{
		{
			"Original-Recipient": "rfc822;Bob@Example.COM",
			"Final-Recipient":    "rfc822; bob@example.com",
			"Action":             "failed",
			"Status":             "5.1.1",
			"Remote-MTA":         "dns; backend.example.com",
			"Diagnostic-Code":    "smtp; 550 5.1.1 <bob@example.com>: Recipient address rejected",
			"Last-Attempt-Date":  "Tue, 02 Jan 2024 11:00:00 +0000",
			"Will-Retry-Until":   "",
		},
		{
			"Original-Recipient": "",
			"Final-Recipient":    "rfc822; carol@example.com",
			"Action":             "delayed",
			"Status":             "4.4.1",
			"Remote-MTA":         "",
			"Diagnostic-Code":    "smtp; 451 4.4.1 try again later",
			"Last-Attempt-Date":  "Tue, 02 Jan 2024 12:00:00 +0000",
			"Will-Retry-Until":   "Sun, 07 Jan 2024 10:00:00 +0000",
		},
		{
			"Original-Recipient": "",
			"Final-Recipient":    "rfc822; dave@example.com",
			"Action":             "failed",
			"Status":             "5.4.7",
			"Remote-MTA":         "",
			"Diagnostic-Code":    "",
			"Last-Attempt-Date":  "",
			"Will-Retry-Until":   "",
		},
	}
	if len(p.perRecipient) != len(want) {
		t.Fatalf("%d recipient groups, want %d", len(p.perRecipient), len(want))
	}
	for i, w := range want {
		g := p.perRecipient[i]
		for k, v := range w {
			if _, present := g[textproto.CanonicalMIMEHeaderKey(k)]; v == "" && present {
				t.Errorf("recipient %d: %s present: %q", i, k, g.Get(k))
			} else if got := g.Get(k); v != "" && got != v {
				t.Errorf("recipient %d: %s %q, want %q", i, k, got, v)
			}
		}
	}

	// Without EnvelopeID, QueueID and ArrivalDate their fields are absent.
	r = baseReport()
	r.QueueID, r.ArrivalDate = "", time.Time{}
	p = parse(t, write(t, r))
	for _, k := range []string{"Original-Envelope-Id", "X-Mxedge-Queue-ID", "Arrival-Date"} {
		if _, present := p.perMessage[textproto.CanonicalMIMEHeaderKey(k)]; present {
			t.Errorf("%s present without a value to report", k)
		}
	}
}

func TestStatusCode(t *testing.T) {
	tests := []struct {
		status string
		action Action
		want   string
	}{
		{"5.1.1", Failed, "5.1.1"},
		{"4.7.999", Delayed, "4.7.999"},
		{"4.4.1", Failed, "4.4.1"}, // expired after temporary errors: kept
		{"", Failed, "5.0.0"},
		{"", Delayed, "4.0.0"},
		{"", Delivered, "2.0.0"},
		{"550", Failed, "5.0.0"},
		{"5.01.1", Failed, "5.0.0"},
		{"3.1.1", Failed, "5.0.0"},
		{"5.1.1 (no such user)", Failed, "5.0.0"},
		{"5.1.1\r\nX-Evil: 1", Failed, "5.0.0"},
		{"5.1000.1", Failed, "5.0.0"},
	}
	for _, tt := range tests {
		r := baseReport()
		r.Recipients[0].Status, r.Recipients[0].Action = tt.status, tt.action
		p := parse(t, write(t, r))
		if got := p.perRecipient[0].Get("Status"); got != tt.want {
			t.Errorf("Status %q (%s): got %q, want %q", tt.status, tt.action, got, tt.want)
		}
	}
}

// infiniteHeaders is an original whose header section never ends.
type infiniteHeaders struct{ n int64 }

func (r *infiniteHeaders) Read(p []byte) (int, error) {
	const line = "X-Filler: 0123456789abcdef\r\n"
	for i := range p {
		p[i] = line[r.n%int64(len(line))]
		r.n++
	}
	return len(p), nil
}

func TestReturnedOriginal(t *testing.T) {
	big := "From: alice@example.org\r\nSubject: big\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 4096) // 72 KiB body
	tests := []struct {
		name       string
		original   string
		returnFull bool
		maxFull    int64
		wantType   string
		want       string // the returned part's body
	}{
		{"small full", smallOriginal, true, 0, "message/rfc822", smallOriginal},
		{"small headers only", smallOriginal, false, 0, "text/rfc822-headers",
			"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: hello\r\nMessage-ID: <m1@example.org>\r\n"},
		{"large full", big, true, 64 << 10, "text/rfc822-headers", "From: alice@example.org\r\nSubject: big\r\n"},
		{"exactly MaxFull", smallOriginal, true, int64(len(smallOriginal)), "message/rfc822", smallOriginal},
		{"one over MaxFull", smallOriginal, true, int64(len(smallOriginal)) - 1, "text/rfc822-headers",
			"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: hello\r\nMessage-ID: <m1@example.org>\r\n"},
		{"default MaxFull 1 MiB", big, true, 0, "message/rfc822", big},
		{"bare LF and CR normalized", "Subject: x\nX-A: a\rb\n\nbody\nend", true, 0, "message/rfc822",
			"Subject: x\r\nX-A: a b\r\n\r\nbody\r\nend\r\n"},
		{"bare LF header section", "Subject: x\nX-A: y\n\nbody\n", false, 0, "text/rfc822-headers",
			"Subject: x\r\nX-A: y\r\n"},
		{"no body", "Subject: x\r\n", false, 0, "text/rfc822-headers", "Subject: x\r\n"},
		{"no header", "\r\nbody\r\n", false, 0, "text/rfc822-headers", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := baseReport()
			r.Original, r.ReturnFull, r.MaxFull = strings.NewReader(tt.original), tt.returnFull, tt.maxFull
			raw := write(t, r)
			checkLines(t, raw)
			p := parse(t, raw)
			if len(p.parts) != 3 {
				t.Fatalf("%d parts", len(p.parts))
			}
			if got := p.parts[2].mediaType; got != tt.wantType {
				t.Errorf("returned part is %q, want %q", got, tt.wantType)
			}
			if got := string(p.parts[2].body); got != tt.want {
				t.Errorf("returned part:\n%q\nwant\n%q", got, tt.want)
			}
			wantText := map[bool]string{true: "It's attached below.", false: "Its header section is attached below."}[tt.wantType == "message/rfc822"]
			if !bytes.Contains(p.parts[0].body, []byte(wantText)) {
				t.Errorf("text does not say %q:\n%s", wantText, p.parts[0].body)
			}
		})
	}

	t.Run("no original", func(t *testing.T) {
		r := baseReport()
		r.Original = nil
		p := parse(t, write(t, r))
		if len(p.parts) != 2 {
			t.Errorf("%d parts, want 2", len(p.parts))
		}
	})

	// An original whose header section never ends: Write reads a bounded
	// amount and returns at most 1 MiB of it.
	for _, full := range []bool{false, true} {
		t.Run(fmt.Sprintf("endless header full=%v", full), func(t *testing.T) {
			src := &infiniteHeaders{}
			r := baseReport()
			r.Original, r.ReturnFull, r.MaxFull = src, full, 256<<10
			raw := write(t, r)
			checkLines(t, raw)
			p := parse(t, raw)
			if got := p.parts[2].mediaType; got != "text/rfc822-headers" {
				t.Errorf("returned part is %q", got)
			}
			if n := len(p.parts[2].body); n > maxHeaderSection+2 || n < maxHeaderSection-64 {
				t.Errorf("returned header section is %d octets, want about 1 MiB", n)
			}
			if limit := int64(maxHeaderSection + 256<<10 + 1 + 64<<10); src.n > limit {
				t.Errorf("read %d octets of the original, more than %d", src.n, limit)
			}
		})
	}
}

func TestLinesAndDiagnostics(t *testing.T) {
	words := strings.Repeat("word ", 1000) // 5000 characters
	tests := []struct {
		name string
		diag string
		want string // unfolded Diagnostic-Code value
	}{
		{"5000 characters with spaces", "550 " + words[:4996], "smtp; 550 " + strings.TrimSpace(words[:4996])},
		{"5000 characters without spaces", "550 " + strings.Repeat("x", 4996), ""},
		{"multi-line reply", "550-5.1.1 first\r\n550 5.1.1 second\r\n", "smtp; 550-5.1.1 first 550 5.1.1 second"},
		{"header injection", "550 x\r\nX-Injected: 1\nY: 2\r", "smtp; 550 x X-Injected: 1 Y: 2"},
		{"controls", "550\x00 a\tb\x1b[31m c\x7f", "smtp; 550 a b [31m c"},
		{"non-ASCII in a 7-bit report", "550 Benutzer unbekannt: jürgen", "smtp; 550 Benutzer unbekannt: j?rgen"},
		{"invalid UTF-8", "550 \xff\xfe", "smtp; 550 ??"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := baseReport()
			r.Recipients[0].DiagnosticCode = tt.diag
			r.Original = strings.NewReader("Subject: " + strings.Repeat("s", 3000) + "\r\n\r\n" + strings.Repeat("b", 5000) + "\nlast\r")
			raw := write(t, r)
			checkLines(t, raw)
			p := parse(t, raw)
			got := p.perRecipient[0].Get("Diagnostic-Code")
			if tt.want != "" && got != tt.want {
				t.Errorf("Diagnostic-Code\n%q\nwant\n%q", got, tt.want)
			}
			if !strings.HasPrefix(got, "smtp; 550") {
				t.Errorf("Diagnostic-Code %q", got)
			}
			if len(p.perRecipient) != 1 || p.perRecipient[0].Get("X-Injected") != "" {
				t.Errorf("diagnostic text escaped its field: %v", p.perRecipient)
			}
			if !isASCII(string(p.parts[0].body)) || !isASCII(string(p.parts[1].body)) {
				t.Error("non-ASCII in a 7-bit report")
			}
		})
	}
}

func TestBoundaryNotInOriginal(t *testing.T) {
	r := baseReport()
	// The original carries the boundaries Write would try first, in full and
	// in part, and with leading zeros.
	var orig strings.Builder
	orig.WriteString("Subject: boundaries\r\n\r\n")
	for n := 0; n < 50; n++ {
		fmt.Fprintf(&orig, "--=_mxedge_01HQ3K5V7W9X2Y4Z_%d_=\r\n", n)
	}
	orig.WriteString("--=_mxedge_01HQ3K5V7W9X2Y4Z_051_=\r\n--=_mxedge_01HQ3K5V7W9X2Y4Z_52\r\n")
	r.Original = strings.NewReader(orig.String())
	// The diagnostic carries one too.
	r.Recipients[0].DiagnosticCode = "550 =_mxedge_01HQ3K5V7W9X2Y4Z_50_="
	raw := write(t, r)
	p := parse(t, raw)
	b := p.params["boundary"]
	if b != "=_mxedge_01HQ3K5V7W9X2Y4Z_52_=" {
		t.Errorf("boundary %q", b)
	}
	if strings.Contains(orig.String(), b) || strings.Contains(r.Recipients[0].DiagnosticCode, b) {
		t.Errorf("boundary %q occurs in the content", b)
	}
	if got := string(p.parts[2].body); got != orig.String() {
		t.Errorf("original changed:\n%q", got)
	}
	if len(b) > 70 {
		t.Errorf("boundary is %d characters", len(b))
	}

	// A long queue ID is cut, so the boundary stays within 70 characters.
	r = baseReport()
	r.QueueID = strings.Repeat("Q", 500) + "\r\n"
	p = parse(t, write(t, r))
	if b := p.params["boundary"]; len(b) > 70 {
		t.Errorf("boundary %q is %d characters", b, len(b))
	}
}

func TestSMTPUTF8(t *testing.T) {
	r := baseReport()
	r.SMTPUTF8 = true
	r.To = "jürgen@exämple.org"
	r.Recipients[0].FinalRecipient = "用户@example.net"
	r.Recipients[0].OriginalRecipient = "utf-8;用户@example.net"
	r.Recipients[0].DiagnosticCode = "550 5.1.1 用户不存在"
	r.Original = strings.NewReader("From: jürgen@exämple.org\r\nSubject: Grüße\r\n\r\nHallo\r\n")
	raw := write(t, r)
	checkLines(t, raw)
	p := parse(t, raw)
	if p.params["report-type"] != "global-delivery-status" {
		t.Errorf("report-type %q", p.params["report-type"])
	}
	want := []string{"text/plain", "message/global-delivery-status", "message/global"}
	for i, w := range want {
		if p.parts[i].mediaType != w {
			t.Errorf("part %d: %q, want %q", i+1, p.parts[i].mediaType, w)
		}
		if got := p.parts[i].header.Get("Content-Transfer-Encoding"); got != "8bit" {
			t.Errorf("part %d: Content-Transfer-Encoding %q", i+1, got)
		}
	}
	if got := p.header.Get("Content-Transfer-Encoding"); got != "8bit" {
		t.Errorf("Content-Transfer-Encoding %q", got)
	}
	if cs := p.parts[0].params["charset"]; cs != "utf-8" {
		t.Errorf("charset %q", cs)
	}
	g := p.perRecipient[0]
	for k, w := range map[string]string{
		"Final-Recipient":    "utf-8; 用户@example.net",
		"Original-Recipient": "utf-8;用户@example.net",
		"Diagnostic-Code":    "smtp; 550 5.1.1 用户不存在",
	} {
		if got := g.Get(k); got != w {
			t.Errorf("%s %q, want %q", k, got, w)
		}
	}
	if !bytes.Contains(p.parts[0].body, []byte("<用户@example.net>: 550 5.1.1 用户不存在")) {
		t.Errorf("text:\n%s", p.parts[0].body)
	}

	// Headers only: message/global-headers.
	r.Original, r.ReturnFull = strings.NewReader("Subject: Grüße\r\n\r\nHallo\r\n"), false
	p = parse(t, write(t, r))
	if p.parts[2].mediaType != "message/global-headers" || string(p.parts[2].body) != "Subject: Grüße\r\n" {
		t.Errorf("returned part %q: %q", p.parts[2].mediaType, p.parts[2].body)
	}

	// Not SMTPUTF8: a non-ASCII recipient (from a downgraded ORCPT, say) is
	// written in the 7-bit utf-8-addr-xtext form, and the report is 7-bit.
	r = baseReport()
	r.Recipients[0].FinalRecipient = "dörte+x=y\\z@example.com"
	r.Recipients[0].OriginalRecipient = "utf-8;dörte@example.com"
	raw = write(t, r)
	p = parse(t, raw)
	if !isASCII(string(raw)) {
		t.Error("non-ASCII in a 7-bit report")
	}
	if got, w := p.perRecipient[0].Get("Final-Recipient"), `utf-8; d\x{F6}rte\x{2B}x\x{3D}y\x{5C}z@example.com`; got != w {
		t.Errorf("Final-Recipient %q, want %q", got, w)
	}
	if got, w := p.perRecipient[0].Get("Original-Recipient"), `utf-8;d\x{F6}rte@example.com`; got != w {
		t.Errorf("Original-Recipient %q, want %q", got, w)
	}
	if p.parts[1].mediaType != "message/delivery-status" {
		t.Errorf("status part %q", p.parts[1].mediaType)
	}
}

func TestHumanText(t *testing.T) {
	r := baseReport()
	r.Recipients = []Recipient{
		{FinalRecipient: "bob@example.com", Action: Failed, Status: "5.1.1", RemoteMTA: "backend.internal.example",
			DiagnosticCode: "550 5.1.1 no such user"},
		{FinalRecipient: "carol@example.com", Action: Delayed, Status: "4.4.1", RemoteMTA: "backend.internal.example",
			WillRetryUntil: t0.Add(120 * time.Hour)},
	}
	text := string(parse(t, write(t, r)).parts[0].body)
	for _, want := range []string{
		"This is the mail system at host mx1.example.net.",
		"could not be delivered to one or more recipients.",
		"01HQ3K5V7W9X2Y4Z",
		"<bob@example.com>: 550 5.1.1 no such user",
		"<carol@example.com>: delivery delayed (status 4.4.1)",
		"could not be delivered for 5 hours.",
		"Sun, 07 Jan 2024 10:00:00 +0000",
	} {
		if !strings.Contains(strings.ReplaceAll(text, "\r\n", " "), want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "backend.internal.example") {
		t.Errorf("text names the next hop:\n%s", text)
	}

	// A delay warning says so.
	r.Recipients = r.Recipients[1:]
	r.Date = t0.Add(90 * time.Minute)
	text = strings.ReplaceAll(string(parse(t, write(t, r)).parts[0].body), "\r\n", " ")
	for _, want := range []string{
		"THIS IS A WARNING ONLY",
		"Your message could not be delivered for 1 hour. It will be retried until Sun, 07 Jan 2024 10:00:00 +0000.",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
}

func TestMessageID(t *testing.T) {
	r := baseReport()
	r.MessageID = "<given@example.net>"
	p := parse(t, write(t, r))
	if got := p.header.Get("Message-ID"); got != "<given@example.net>" {
		t.Errorf("Message-ID %q", got)
	}
	// Generated IDs differ by action and time.
	seen := map[string]bool{}
	for _, a := range []Action{Failed, Delayed, Delivered} {
		for _, d := range []time.Duration{0, time.Microsecond} {
			r := baseReport()
			r.Recipients[0].Action, r.Date = a, t0.Add(d)
			id := parse(t, write(t, r)).header.Get("Message-ID")
			if seen[id] {
				t.Errorf("Message-ID %q twice", id)
			}
			seen[id] = true
		}
	}
}

func TestOriginalRecipient(t *testing.T) {
	tests := []struct {
		orcpt  string
		utf8ok bool
		want   string
	}{
		{"", false, ""},
		{"rfc822;bob@example.com", false, "rfc822;bob@example.com"},
		{"RFC822; bob@example.com", false, "RFC822; bob@example.com"},
		{"bob@example.com", false, "rfc822;bob@example.com"},
		{"x400;/C=US/ADMD=x/", false, "x400;/C=US/ADMD=x/"},
		{"\"a;b\"@example.com", false, "rfc822;\"a;b\"@example.com"},
		{"utf-8;dörte@example.com", true, "utf-8;dörte@example.com"},
		{"utf-8;dörte@example.com", false, `utf-8;d\x{F6}rte@example.com`},
		{"dörte@example.com", false, `utf-8;d\x{F6}rte@example.com`},
		{"rfc822;bob@example.com\r\nX-Evil: 1", false, "rfc822;bob@example.com  X-Evil: 1"},
	}
	for _, tt := range tests {
		if got := originalRecipient(tt.orcpt, tt.utf8ok); got != tt.want {
			t.Errorf("originalRecipient(%q, %v) = %q, want %q", tt.orcpt, tt.utf8ok, got, tt.want)
		}
	}
}

type failWriter struct{ err error }

func (w failWriter) Write(p []byte) (int, error) { return 0, w.err }

func TestWriteErrors(t *testing.T) {
	bad := []struct {
		name   string
		change func(r *Report)
	}{
		{"no To", func(r *Report) { r.To = "" }},
		{"To <>", func(r *Report) { r.To = "<>" }},
		{"no ReportingMTA", func(r *Report) { r.ReportingMTA = " " }},
		{"no recipients", func(r *Report) { r.Recipients = nil }},
		{"unknown action", func(r *Report) { r.Recipients[0].Action = "expanded" }},
	}
	for _, tt := range bad {
		r := baseReport()
		tt.change(r)
		var buf bytes.Buffer
		if err := Write(&buf, r); err == nil || buf.Len() > 0 {
			t.Errorf("%s: err %v, wrote %d octets", tt.name, err, buf.Len())
		}
	}
	if err := Write(io.Discard, nil); err == nil {
		t.Error("nil report: no error")
	}

	readErr := errors.New("disk on fire")
	for _, full := range []bool{false, true} {
		r := baseReport()
		r.Original, r.ReturnFull = iotest.ErrReader(readErr), full
		if err := Write(io.Discard, r); !errors.Is(err, readErr) {
			t.Errorf("read error (full=%v): %v", full, err)
		}
	}

	writeErr := errors.New("connection reset")
	if err := Write(failWriter{writeErr}, baseReport()); !errors.Is(err, writeErr) {
		t.Errorf("write error: %v", err)
	}
}

func TestNotifyWants(t *testing.T) {
	all := []Action{Failed, Delayed, Delivered}
	tests := []struct {
		notify []string
		want   []bool // for Failed, Delayed, Delivered
	}{
		{nil, []bool{true, true, false}},
		{[]string{}, []bool{true, true, false}},
		{[]string{""}, []bool{true, true, false}},
		{[]string{"NEVER"}, []bool{false, false, false}},
		{[]string{"never"}, []bool{false, false, false}},
		{[]string{"SUCCESS"}, []bool{false, false, true}},
		{[]string{"FAILURE"}, []bool{true, false, false}},
		{[]string{"DELAY"}, []bool{false, true, false}},
		{[]string{"FAILURE", "DELAY"}, []bool{true, true, false}},
		{[]string{"failure", "Delay"}, []bool{true, true, false}},
		{[]string{"SUCCESS", "FAILURE", "DELAY"}, []bool{true, true, true}},
		{[]string{"SUCCESS,FAILURE"}, []bool{true, false, true}},
		{[]string{" success , delay "}, []bool{false, true, true}},
		{[]string{"NEVER", "FAILURE"}, []bool{false, false, false}},
		{[]string{"BOGUS"}, []bool{true, true, false}},
		{[]string{"ſuccess"}, []bool{true, true, false}}, // no Unicode folding
	}
	for _, tt := range tests {
		for i, a := range all {
			if got := NotifyWants(tt.notify, a); got != tt.want[i] {
				t.Errorf("NotifyWants(%q, %s) = %v, want %v", tt.notify, a, got, tt.want[i])
			}
		}
	}
	if NotifyWants(nil, "expanded") {
		t.Error("unknown action wanted")
	}
}

// TestPythonParses feeds reports to Python's email package, an independent
// MIME parser, and checks that it finds no defects.
func TestPythonParses(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil || exec.Command(python, "-c", "import email").Run() != nil {
		t.Skip("python3 with the email package not available")
	}
	const script = `
import sys, email, email.policy
msg = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)
assert msg.get_content_type() == 'multipart/report', msg.get_content_type()
assert msg.get_param('report-type') == sys.argv[1], msg.get_param('report-type')
parts = msg.get_payload()
assert [p.get_content_type() for p in parts] == sys.argv[2].split(','), [p.get_content_type() for p in parts]
status = parts[1]
if status.get_content_type() == 'message/delivery-status':
    groups = status.get_payload()
    assert len(groups) == 1 + int(sys.argv[3]), len(groups)
    assert groups[0]['Reporting-MTA'] == 'dns; mx1.example.net', groups[0]['Reporting-MTA']
    assert groups[1]['Action'] == 'failed', groups[1]['Action']
    assert groups[1]['Status'] == '5.1.1', groups[1]['Status']
    assert str(groups[1]['Diagnostic-Code']).startswith('smtp; 550 5.1.1'), groups[1]['Diagnostic-Code']
assert 'multipart/report' in str(msg['Content-Type'])
assert str(msg['Subject']) == 'Undelivered Mail Returned to Sender'
for p in msg.walk():
    assert not p.defects, (p.get_content_type(), p.defects)
print('ok')
`
	long := baseReport()
	long.Recipients[0].DiagnosticCode = "550 5.1.1 " + strings.Repeat("long diagnostic ", 300)
	long.Recipients = append(long.Recipients, Recipient{FinalRecipient: "carol@example.com", Action: Delayed})
	headers := baseReport()
	headers.ReturnFull = false
	utf := baseReport()
	utf.SMTPUTF8 = true
	utf.Recipients[0].FinalRecipient = "用户@example.net"
	tests := []struct {
		name  string
		r     *Report
		rtype string
		types string
	}{
		{"full", baseReport(), "delivery-status", "text/plain,message/delivery-status,message/rfc822"},
		{"headers", headers, "delivery-status", "text/plain,message/delivery-status,text/rfc822-headers"},
		{"long diagnostic", long, "delivery-status", "text/plain,message/delivery-status,message/rfc822"},
		{"smtputf8", utf, "global-delivery-status", "text/plain,message/global-delivery-status,message/global"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := write(t, tt.r)
			cmd := exec.Command(python, "-c", script, tt.rtype, tt.types, fmt.Sprint(len(tt.r.Recipients)))
			cmd.Stdin = bytes.NewReader(raw)
			out, err := cmd.CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "ok" {
				t.Fatalf("python3: %v\n%s\n%s", err, out, raw)
			}
		})
	}
}
