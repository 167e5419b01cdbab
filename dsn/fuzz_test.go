package dsn

import (
	"bytes"
	"testing"
)

// FuzzWrite checks that whatever the original and the diagnostic, the
// report parses as a three-part multipart/report whose status part holds
// one recipient group, and has only CRLF lines of at most 998 octets.
func FuzzWrite(f *testing.F) {
	f.Add([]byte(smallOriginal), "550 5.1.1 no such user", true, false)
	f.Add([]byte("Subject: x\n\nbare\rcr\n--=_mxedge_01HQ3K5V7W9X2Y4Z_0_=\n"), "550-a\r\n550 b", false, false)
	f.Add([]byte("\r\n\r\n"), "", true, true)
	f.Add([]byte("Subject: Grüße\r\n\r\n\xff\xfe\x00"), "550 ünïcödé \xff", true, true)
	f.Add(bytes.Repeat([]byte("x"), 3000), string(bytes.Repeat([]byte("y"), 3000)), true, false)
	f.Fuzz(func(t *testing.T, original []byte, diag string, full, utf8 bool) {
		r := baseReport()
		r.Original = bytes.NewReader(original)
		r.ReturnFull = full
		r.MaxFull = 4096
		r.SMTPUTF8 = utf8
		r.Recipients[0].DiagnosticCode = diag
		r.Recipients[0].RemoteMTA = diag
		var buf bytes.Buffer
		if err := Write(&buf, r); err != nil {
			t.Fatal(err)
		}
		raw := buf.Bytes()
		if err := linesErr(raw); err != nil {
			t.Fatalf("%v\n%q", err, raw)
		}
		p, err := parseErr(raw)
		if err != nil {
			t.Fatalf("%v\n%q", err, raw)
		}
		if len(p.parts) != 3 {
			t.Fatalf("%d parts\n%q", len(p.parts), raw)
		}
		if len(p.perRecipient) != 1 || p.perRecipient[0].Get("Action") != "failed" {
			t.Fatalf("recipient groups %v\n%q", p.perRecipient, raw)
		}
	})
}
