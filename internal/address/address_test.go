package address

import "testing"

func TestWireQuoting(t *testing.T) {
	tests := []struct{ local, want string }{
		{"user", "user@d.test"},
		{"first.last", "first.last@d.test"},
		{"john doe", `"john doe"@d.test`},
		{`a"b`, `"a\"b"@d.test`},
		{`a\b`, `"a\\b"@d.test`},
		{".lead", `".lead"@d.test`},
		{"a..b", `"a..b"@d.test`},
	}
	for _, tt := range tests {
		if got := (Mailbox{Local: tt.local, Domain: "d.test"}).Wire(); got != tt.want {
			t.Errorf("wire(%q) = %s, want %s", tt.local, got, tt.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"user@relay.test", "a%b@c", "x@[1.2.3.4]", "jörg@bücher.test", "@", "a@b."} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, utf8 bool) {
		m, err := Parse(s, utf8)
		if err != nil {
			return
		}
		w := m.Wire()
		// The wire form must parse back to the same mailbox.
		u, err := Unquote(w)
		if err != nil {
			t.Fatalf("%q -> %q: %v", s, w, err)
		}
		back, err := Parse(u, utf8)
		if err != nil || back != m {
			t.Fatalf("%q -> %q -> %+v, %v; want %+v", s, w, back, err, m)
		}
	})
}
