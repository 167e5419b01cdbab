package verifycache

import (
	"strings"
	"testing"

	"github.com/mxedge/mxedge/internal/address"
)

// FuzzDialogueLog: the bytes of a probe connection (the next hop's replies
// are network input) become transcript lines that are printable, bounded,
// and tagged by direction, whatever arrives and however it is split.
func FuzzDialogueLog(f *testing.F) {
	f.Add([]byte("220 hi\r\nEHLO x\r\n250-a\r\n250 b\r\n"), 3)
	f.Add([]byte("550 5.1.1 \x1b[31mno\r\n"), 1)
	f.Add([]byte("\n\n\r\r\n999"), 2)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		d := &dialogueLog{keep: true}
		if split <= 0 || split > len(b) {
			split = len(b)
		}
		for len(b) > 0 {
			n := min(split, len(b))
			d.Write(b[:n])
			b = b[n:]
		}
		if len(d.lines) > maxTranscript {
			t.Fatalf("%d lines", len(d.lines))
		}
		for _, l := range append(d.lines, d.last) {
			if len(l) > maxReply+3 {
				t.Fatalf("line of %d bytes", len(l))
			}
			for i := 0; i < len(l); i++ {
				if l[i] < 0x20 || l[i] >= 0x7f {
					t.Fatalf("unprintable byte in %q", l)
				}
			}
		}
		for _, l := range d.lines {
			if !strings.HasPrefix(l, "C: ") && !strings.HasPrefix(l, "S: ") {
				t.Fatalf("untagged line %q", l)
			}
		}
	})
}

// FuzzNormalize: admin input from the control socket. A normalized
// address normalizes to itself.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"Alice@Example.ORG", `"john doe"@x.test`, "<a@b>", "a\\b@c", `"\"@x`, "ü@Bücher.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Normalize(s)
		if err != nil {
			return
		}
		if n2, err := Normalize(n); err != nil || n2 != n {
			t.Fatalf("Normalize(%q) = %q, again %q, %v", s, n, n2, err)
		}
	})
}

// FuzzCacheKeyAgreesWithListener: the cache key of an address the MX
// listener accepted (address.Parse of what go-smtp hands over, written with
// Wire) is that wire form itself, so an operator's "mxedge verify show" of
// the address finds the entry the RCPT made.
func FuzzCacheKeyAgreesWithListener(f *testing.F) {
	for _, s := range []string{"Alice@Example.ORG", "john doe@x.test", "a\"b@c.test", "jörg@bücher.example", ".lead@x.test"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := address.Parse(s, true)
		if err != nil || strings.HasPrefix(m.Domain, "[") {
			return
		}
		w := m.Wire()
		if n, err := Normalize(w); err != nil || n != w {
			t.Fatalf("listener form %q of %q: Normalize gives %q, %v", w, s, n, err)
		}
	})
}
