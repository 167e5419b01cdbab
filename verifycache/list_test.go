package verifycache

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseList(t *testing.T) {
	const file = `# users of example.org
alice
Bob@Example.ORG     # the boss
carol@example.org
  dave.e+tag	# indented, tab before the comment
"john doe"
"x\"y"@example.org
a#b
`
	l, err := ParseList("example.org.users", strings.NewReader(file), "example.org")
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"alice@example.org", "ALICE@example.org", "bob@example.org", "Carol@example.org",
		"dave.e+tag@example.org", `"john doe"@example.org`, `"JOHN DOE"@example.org`, `"x\"y"@example.org`, "a#b@example.org"} {
		if !l.Has(addr) {
			t.Errorf("%s not listed", addr)
		}
	}
	for _, addr := range []string{"eve@example.org", "dave.e@example.org", "#@example.org", "users@example.org"} {
		if l.Has(addr) {
			t.Errorf("%s listed", addr)
		}
	}
	// The domain of an address is compared in normal form.
	l, err = ParseList("idn", strings.NewReader("info@Bücher.Example\n"), "xn--bcher-kva.example")
	if err != nil || !l.Has("info@xn--bcher-kva.example") {
		t.Errorf("IDN: %v, %v", l, err)
	}
}

func TestParseListErrors(t *testing.T) {
	file := "alice\n" +
		"bob smith\n" +
		"carol@other.example\n" +
		"@example.org\n" +
		"\"open quote\n" +
		"ok\n" +
		strings.Repeat("x", 65) + "\n" +
		"bad\x01ctl\n" +
		"\xff\xfe\n" +
		"\"q\"trailing\n" +
		"dave@exa mple.org\n"
	_, err := ParseList("users.txt", strings.NewReader(file), "example.org")
	if err == nil {
		t.Fatal("no error")
	}
	want := []string{
		`users.txt:2: "bob smith": one address or local part per line`,
		`users.txt:3: "carol@other.example": address of another domain (this list is for example.org)`,
		`users.txt:4: "@example.org": empty local part`,
		`users.txt:5: "\"open quote": quoted local part without its closing quote`,
		`users.txt:7: "` + strings.Repeat("x", 65) + `": local part longer than 64 octets`,
		`users.txt:8: "bad\x01ctl": control character`,
		`users.txt:9: not valid UTF-8`,
		`users.txt:10: "\"q\"trailing": text after the quoted local part`,
		`users.txt:11: "dave@exa mple.org": one address or local part per line`,
	}
	if got := strings.Split(err.Error(), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	_, err = ParseList("long.txt", strings.NewReader("a\n"+strings.Repeat("y", 5000)+"\n"), "example.org")
	if err == nil || err.Error() != "long.txt:2: line longer than 4096 bytes" {
		t.Errorf("long line: %v", err)
	}
	_, err = ParseList("many.txt", strings.NewReader(strings.Repeat("a b\n", 100)), "example.org")
	if lines := strings.Split(err.Error(), "\n"); len(lines) != maxListErrors+1 || lines[maxListErrors] != "many.txt: too many errors" {
		t.Errorf("many errors: %d lines, last %q", len(lines), lines[len(lines)-1])
	}
}

func TestLoadList(t *testing.T) {
	path := filepath.Join(t.TempDir(), "example.org.users")
	os.WriteFile(path, []byte("alice\n"), 0o600)
	l, err := LoadList(path, "example.org")
	if err != nil || !l.Has("alice@example.org") {
		t.Errorf("LoadList: %v, %v", l, err)
	}
	if _, err := LoadList(path+".missing", "example.org"); err == nil || !strings.Contains(err.Error(), "recipient list of example.org") {
		t.Errorf("missing file: %v", err)
	}
}

// FuzzParseList: any file is parsed or refused with file:line errors,
// without panics, and whatever it accepts is found again by Has.
func FuzzParseList(f *testing.F) {
	for _, s := range []string{"alice\nbob@example.org # x\n", "\"a b\"@example.org\n", "#only\n\n", "\xff", "a\"b\n", "\"\\\n", "@\n", "x@\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseList("f", strings.NewReader(s), "example.org")
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "f:") {
					t.Fatalf("error line without file name: %q", line)
				}
			}
			return
		}
		for local := range l {
			if !l.Has(local + "@example.org") {
				t.Fatalf("%q listed but not found", local)
			}
		}
	})
}

func TestEntryEncoding(t *testing.T) {
	now := time.Date(2026, 3, 4, 10, 0, 0, 123, time.UTC)
	for _, e := range []Entry{
		{Addr: "a@b", State: StateExists, Reply: "250 2.1.5 Ok", Route: "10.0.0.25:25", Verified: now, Expires: now.Add(30 * day), LastProbe: now},
		{Addr: "a@b", State: StateUnknown, Reply: strings.Repeat("r", 300), Verified: now, Expires: now.Add(3 * time.Hour),
			LastProbe: now.Add(time.Hour), LastResult: "tempfail: x"},
		{Addr: "a@b", State: StateExists},
	} {
		got, err := decodeEntry("a@b", e.encode())
		if err != nil || got != e {
			t.Errorf("round trip:\n got %+v, %v\nwant %+v", got, err, e)
		}
	}
}

// FuzzDecodeEntry: verify.db is read back from disk; a damaged record is
// an error, never a panic, and what decodes encodes to the same bytes.
func FuzzDecodeEntry(f *testing.F) {
	now := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	e := Entry{State: StateUnknown, Reply: "550 5.1.1 no", Route: "h:25", Verified: now, Expires: now, LastProbe: now}
	f.Add(e.encode())
	f.Add([]byte{1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry("x@y", b)
		if err != nil {
			return
		}
		if _, ok := expiresAt(b); !ok {
			t.Fatal("decoded, but expiresAt refuses it")
		}
		if e2, err := decodeEntry("x@y", e.encode()); err != nil || e2 != e {
			t.Fatalf("re-encoding changed %+v to %+v (%v)", e, e2, err)
		}
	})
}

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.org":         "alice@example.org",
		"Alice@Example.ORG":         "Alice@example.org",
		"<Alice@Example.ORG>":       "Alice@example.org",
		" bob@example.org ":         "bob@example.org",
		`"john doe"@example.org`:    `"john doe"@example.org`,
		`"john"@example.org`:        "john@example.org",
		`john doe@example.org`:      `"john doe"@example.org`,
		`"a\"b"@example.org`:        `"a\"b"@example.org`,
		"info@Bücher.Example":       "info@xn--bcher-kva.example",
		"user@sub.domain.example":   "user@sub.domain.example",
		"o'brien+tag@example.org":   "o'brien+tag@example.org",
		"a..b@example.org":          `"a..b"@example.org`,
		"x@[192.0.2.1]":             "",
		"no-at":                     "",
		"@example.org":              "",
		"a@":                        "",
		"a@example.org.":            "",
		"a\x01@example.org":         "",
		"\"\\\"@example.org":        "",
		"a@exa\xffmple.org":         "",
		"<>":                        "",
		"postmaster@EXAMPLE.TEST":   "postmaster@example.test",
		"User.Name@Mixed.Case.Test": "User.Name@mixed.case.test",
	} {
		got, err := Normalize(in)
		if want == "" {
			if err == nil {
				t.Errorf("Normalize(%q) = %q, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
