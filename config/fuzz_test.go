package config

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse: Parse never panics; every error line names the file; what Parse
// accepts is valid and survives WriteTOML and Parse unchanged.
func FuzzParse(f *testing.F) {
	f.Add(readExample(f))
	var b bytes.Buffer
	if err := Default().WriteTOML(&b); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	for _, doc := range []string{
		valid,
		"relay_domian = []\n[bar]\n[[listener]]\nnme = 1\n",
		"timeouts = { command = \"3x\", reply = 4 }\nlistener = [{ address = 3 }]\n",
		"[limits]\nmessage_size = \"25MiB\"\nrecipients = \"x\"\n[timeouts]\ncommand = \"1d12h\"\n",
		"[listener]\n[limits.recipients]\n[[routes]]\n",
		"[[limits]]\nrecipients = 5\nhostname = 1\n[limits]\n",
		"relay_domains = [\"Bücher.example\", \"exa mple.org\", \"x.org.\"]\nroutes = { \"BÜCHER.example\" = \"[::1]:25\" }\n",
		"hostname = \"a\"\nhostname = \"b\"\n",
		"hostname = \n",
	} {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.toml", data)
		if err != nil {
			if c != nil {
				t.Fatal("Parse returned a Config with an error")
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fuzz.toml:") {
					t.Fatalf("error line without the file name: %q", line)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted an invalid configuration: %v", err)
		}
		var b bytes.Buffer
		if err := c.WriteTOML(&b); err != nil {
			t.Fatal(err)
		}
		c2, err := Parse("fuzz.toml", b.Bytes())
		if err != nil {
			t.Fatalf("Parse rejects what WriteTOML wrote: %v\n%s", err, b.String())
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip changed the configuration:\n got %+v\nwant %+v", *c2, *c)
		}
	})
}
