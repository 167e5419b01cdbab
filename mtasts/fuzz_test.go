package mtasts

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzParsePolicy: a policy file (fetched from the network) either fails
// to parse or yields a policy that is valid by every rule, and that reads
// back the same when written out again.
func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n"))
	f.Add([]byte("version: STSv1\nmode: none\nmax_age: 0"))
	f.Add([]byte("version: STSv1\nmode: testing\nmx: A.B.\nmax_age: 0000000001\nx: \xc3\xa9\n\n"))
	f.Add([]byte("mode: enforce\nmode: none\n:\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parsePolicy(b)
		if err != nil {
			return
		}
		p.ID = "x"
		if err := p.validate(); err != nil {
			t.Fatalf("%q: parsed to an invalid policy %+v: %v", b, p, err)
		}
		if p.MaxAge < 0 || p.MaxAge > MaxMaxAge*time.Second || p.MaxAge%time.Second != 0 {
			t.Fatalf("max_age %v", p.MaxAge)
		}
		for _, mx := range p.MX {
			if mx != strings.ToLower(mx) || strings.HasSuffix(mx, ".") {
				t.Fatalf("mx %q not normalized", mx)
			}
			if !strings.HasPrefix(mx, "*.") && !p.Match(mx) {
				t.Fatalf("policy does not match its own mx %q", mx)
			}
		}
		q, err := parsePolicy([]byte(formatPolicy(p)))
		if err != nil {
			t.Fatalf("round trip of %+v: %v", p, err)
		}
		if q.Mode != p.Mode || q.MaxAge != p.MaxAge || !slices.Equal(q.MX, p.MX) {
			t.Fatalf("round trip: %+v, want %+v", q, p)
		}
	})
}

// FuzzParseRecord: a TXT record (from DNS) either fails to parse or gives
// an id of 1 to 32 letters and digits that reads back the same.
func FuzzParseRecord(f *testing.F) {
	f.Add("v=STSv1; id=20160831085700Z;")
	f.Add("v=STSv1 ;id=1; ext=a-b.c")
	f.Add("v=STSv1;;")
	f.Add("v=STSv1; id=1; id=2")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseRecord(s)
		if err != nil {
			return
		}
		if !validID(id) {
			t.Fatalf("%q: id %q", s, id)
		}
		if !isSTSRecord(s) {
			t.Fatalf("%q parsed but would not be selected", s)
		}
		if again, err := parseRecord("v=STSv1; id=" + id); err != nil || again != id {
			t.Fatalf("round trip of %q: %q, %v", id, again, err)
		}
	})
}
