package domainname

import "testing"

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"example.org", "example.org"},
		{"EXAMPLE.Org", "example.org"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"XN--BCHER-KVA.example", "xn--bcher-kva.example"},
		{"a-b.example", "a-b.example"},
		{"example.org.", ""},
		{"", ""},
		{"ex..ample", ""},
		{".example", ""},
		{"-a.example", ""},
		{"a-.example", ""},
		{"under_score.example", ""},
		{"[192.0.2.1]", ""},
		{"xn--zn7c.example", ""}, // punycode of U+FFFD: refused by IDNA
	} {
		got, err := Normalize(tc.in)
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("Normalize(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	f.Add("bücher.example")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Normalize(s)
		if err != nil {
			return
		}
		// Idempotent: the normal form is its own normal form.
		if again, err := Normalize(n); err != nil || again != n {
			t.Fatalf("%q -> %q -> %q, %v", s, n, again, err)
		}
	})
}
