package config

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

const examplePath = "../examples/mxedge.toml"

func readExample(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// valid is the smallest file that passes validation.
const valid = `hostname = "mx1.example.net"
relay_domains = ["example.org"]
routes = { "example.org" = "[10.0.0.25]:25" }
`

func mustParse(t *testing.T, doc string) *Config {
	t.Helper()
	c, err := Parse("mxedge.toml", []byte(doc))
	if err != nil {
		t.Fatalf("Parse:\n%v\ndocument:\n%s", err, doc)
	}
	return c
}

// errorLines parses doc and returns the error, one line per problem.
func errorLines(t *testing.T, doc string) []string {
	t.Helper()
	c, err := Parse("mxedge.toml", []byte(doc))
	if err == nil {
		t.Fatalf("Parse accepted\n%s", doc)
	}
	if c != nil {
		t.Errorf("Parse returned a Config with an error")
	}
	return strings.Split(err.Error(), "\n")
}

func TestExample(t *testing.T) {
	c, err := Parse("mxedge.toml", readExample(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	// The example claims every key it does not mark is at its default.
	want := base()
	want.Hostname = "mx1.example.net"
	want.Listeners = []Listener{testListener("mx", "mx", "0.0.0.0:25")}
	want.RelayDomains = []string{"example.org"}
	want.CaseSensitiveDomains = []string{}
	want.Routes = map[string]string{"example.org": "[10.0.0.25]:25"}
	want.DKIMSign = []DKIMSign{{Domain: "example.org", Selector: "rsa2026", KeyFile: "/etc/mxedge/dkim/example.org.rsa2026.key"}}
	want.Milters = []Milter{{Name: "rspamd", Address: "inet:127.0.0.1:11332", Kinds: []string{"mx", "submission", "submissions"},
		ConnectTimeout: dur(t, "30s"), CommandTimeout: dur(t, "30s"), ContentTimeout: dur(t, "300s"), DefaultAction: "tempfail"}}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("example:\n got %+v\nwant %+v", *c, want)
	}
	// Leaving every default key out gives the same configuration.
	c.DKIMSign, c.Milters = []DKIMSign{}, []Milter{}
	if c2 := mustParse(t, valid); !reflect.DeepEqual(c2, c) {
		t.Errorf("defaults differ from the example:\n got %+v\nwant %+v", *c2, *c)
	}
}

// TestExampleDocumentsEveryKey fails when a key is added to Config but not to
// examples/mxedge.toml.
func TestExampleDocumentsEveryKey(t *testing.T) {
	example := string(readExample(t))
	var walk func(typ reflect.Type, table string)
	walk = func(typ reflect.Type, table string) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			key := f.Tag.Get("toml")
			switch {
			case f.Type.Kind() == reflect.Struct:
				walk(f.Type, "["+key+"]")
			case isTables(f.Type):
				walk(f.Type.Elem(), "[["+key+"]]")
			case f.Type.Kind() == reflect.Map:
				table = "[" + key + "]"
				if !strings.Contains(example, "\n"+table+"\n") {
					t.Errorf("example does not document %s", table)
				}
			default:
				section := example
				if table != "" {
					start := strings.Index(example, "\n"+table+"\n")
					if start < 0 {
						t.Errorf("example has no %s", table)
						continue
					}
					section = example[start:]
					if end := strings.Index(section[1:], "\n["); end >= 0 {
						section = section[:end+1]
					}
				}
				if !regexp.MustCompile(`(?m)^` + key + ` = `).MatchString(section) {
					t.Errorf("example does not set %s %s", table, key)
				}
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
}

func TestDefault(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := base()
	want.Hostname = "mx.example.test"
	want.DataDir = "./mxedge-data"
	want.Listeners = []Listener{testListener("mx", "mx", "127.0.0.1:2525")}
	// The demo has no DNS it can rely on: the checks that ask it are off.
	l := &want.Listeners[0]
	l.ClientNoPTR, l.ClientPTRMismatch, l.HeloUnknown, l.SenderUnknownDomain = "off", "off", "off", "off"
	l.HeloInvalid = "log"
	want.SPF.Enabled, want.DKIMVerify.Enabled, want.DMARC.Enabled = false, false, false
	want.RelayDomains = []string{"example.test"}
	want.CaseSensitiveDomains = []string{}
	want.Routes = map[string]string{"example.test": "127.0.0.1:2526"}
	// The demo shows its metrics (README, Quick start).
	want.Admin.HTTP = "127.0.0.1:9325"
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("Default:\n got %+v\nwant %+v", *c, want)
	}
	// Each call returns a fresh value.
	c.Routes["x.test"] = "x"
	c.RelayDomains[0] = "x"
	if d := Default(); d.Routes["x.test"] != "" || d.RelayDomains[0] != "example.test" {
		t.Error("Default shares state between calls")
	}
}

func TestDefaultsFilledIn(t *testing.T) {
	c := mustParse(t, `relay_domains = []`)
	host, err := os.Hostname()
	if err == nil && checkHostname(host) == nil && c.Hostname != host {
		t.Errorf("hostname = %q, want os.Hostname() %q", c.Hostname, host)
	}
	if c.DataDir != "/var/lib/mxedge" {
		t.Errorf("data_dir = %q", c.DataDir)
	}
	want := []Listener{testListener("mx", "mx", "0.0.0.0:25")}
	if !reflect.DeepEqual(c.Listeners, want) {
		t.Errorf("listeners = %+v, want %+v", c.Listeners, want)
	}
	if !reflect.DeepEqual(c.Limits, Limits{MessageSize: 10240000, Recipients: 1000}) {
		t.Errorf("limits = %+v", c.Limits)
	}
	wantT := Timeouts{Command: dur(t, "5m"), DataBlock: dur(t, "3m"), Connect: dur(t, "30s"), Reply: dur(t, "5m"), DataDone: dur(t, "10m"), Shutdown: dur(t, "30s")}
	if c.Timeouts != wantT {
		t.Errorf("timeouts = %+v, want %+v", c.Timeouts, wantT)
	}
	if c.Queue != (Queue{MinBackoff: dur(t, "300s"), MaxBackoff: dur(t, "4000s"), Concurrency: 20, MaxLifetime: dur(t, "3d"), BounceLifetime: dur(t, "1d")}) {
		t.Errorf("queue = %+v", c.Queue)
	}

	// A listener's name defaults to its kind, the kind to "mx"; the rest
	// to the kind's defaults.
	c = mustParse(t, valid+`
[[listener]]
address = ":25"
[[listener]]
name = "inside"
address = "127.0.0.1:2525"
bare_line_endings = "normalize"
[[listener]]
kind = "submission"
address = ":587"
tls_cert = ["/etc/mxedge/sub.pem"]
tls_key = ["/etc/mxedge/sub.key"]
`)
	want = []Listener{testListener("mx", "mx", ":25"), testListener("inside", "mx", "127.0.0.1:2525"), testListener("submission", "submission", ":587")}
	want[1].BareLineEndings = "normalize"
	want[2].TLSCert, want[2].TLSKey = []string{"/etc/mxedge/sub.pem"}, []string{"/etc/mxedge/sub.key"}
	if !reflect.DeepEqual(c.Listeners, want) {
		t.Errorf("listeners = %+v, want %+v", c.Listeners, want)
	}
}

// testListener is a listener of kind with every default filled in.
func testListener(name, kind, addr string) Listener {
	l := kindDefaults[kind]
	l.Name, l.Kind, l.Address = name, kind, addr
	l.TLSCert, l.TLSKey = []string{}, []string{}
	return l
}

func dur(t *testing.T, s string) Duration {
	t.Helper()
	var d Duration
	if err := d.UnmarshalText([]byte(s)); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestExplicitZero: a value written in the file is never replaced by the
// default, so 0 is reported instead of silently becoming 5m.
func TestExplicitZero(t *testing.T) {
	got := errorLines(t, valid+"[timeouts]\ncommand = \"0s\"\n[queue]\nconcurrency = 0\n")
	want := []string{
		`mxedge.toml:5:1: timeouts.command "0s": must be greater than 0`,
		`mxedge.toml:7:1: queue.concurrency 0: must be at least 1`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestRoundTrip(t *testing.T) {
	for name, doc := range map[string]string{
		"example": string(readExample(t)),
		"minimal": "hostname = \"mx.example.net\"\n",
		"everything": `hostname = "MX-2.example.net"
data_dir = "/srv/mx edge/\"quoted\""
relay_domains = ["Bücher.Example", "example.org", "b.example"]
[routes]
"bücher.example" = "[2001:db8::25]:2525"
"example.org" = "backend.example.org:25"
"b.example" = "[backend.example.org]:25"
"unused.example" = "10.0.0.1:25"
[[listener]]
name = "public"
address = "[::]:25"
[[listener]]
name = "inside"
address = "localhost:2525"
bare_line_endings = "normalize"
[limits]
message_size = "25MiB"
recipients = 1
[timeouts]
command = "1d12h"
data_block = "1.5s"
connect = "250ms"
reply = "3d"
data_done = "1h6m40s"
shutdown = "1ns"
[queue]
min_backoff = "1s"
max_backoff = "1s"
concurrency = 1
`,
		"default": func() string {
			var b bytes.Buffer
			if err := Default().WriteTOML(&b); err != nil {
				t.Fatal(err)
			}
			return b.String()
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			c := mustParse(t, doc)
			var b bytes.Buffer
			if err := c.WriteTOML(&b); err != nil {
				t.Fatal(err)
			}
			c2 := mustParse(t, b.String())
			if !reflect.DeepEqual(c, c2) {
				t.Errorf("round trip changed the configuration\nwritten:\n%s\n got %+v\nwant %+v", b.String(), *c2, *c)
			}
		})
	}
	// Default itself survives the trip.
	var b bytes.Buffer
	if err := Default().WriteTOML(&b); err != nil {
		t.Fatal(err)
	}
	if c := mustParse(t, b.String()); !reflect.DeepEqual(c, Default()) {
		t.Errorf("Default round trip: got %+v", *c)
	}
}

func TestNormalization(t *testing.T) {
	c := mustParse(t, `hostname = "mx1.example.net"
relay_domains = ["bücher.example", "EXAMPLE.Org", "xn--caf-dma.example", "ＦＵＬＬ.example"]
[routes]
"Bücher.EXAMPLE" = "10.0.0.1:25"
"example.ORG" = "10.0.0.2:25"
"café.example" = "10.0.0.3:25"
"full.example" = "10.0.0.4:25"
`)
	wantDomains := []string{"xn--bcher-kva.example", "example.org", "xn--caf-dma.example", "full.example"}
	if !reflect.DeepEqual(c.RelayDomains, wantDomains) {
		t.Errorf("relay_domains = %q, want %q", c.RelayDomains, wantDomains)
	}
	wantRoutes := map[string]string{
		"xn--bcher-kva.example": "10.0.0.1:25",
		"example.org":           "10.0.0.2:25",
		"xn--caf-dma.example":   "10.0.0.3:25",
		"full.example":          "10.0.0.4:25",
	}
	if !reflect.DeepEqual(c.Routes, wantRoutes) {
		t.Errorf("routes = %q, want %q", c.Routes, wantRoutes)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		want []string
	}{
		{"unknown key", `hostname = "mx1.example.net"
relay_domian = ["example.org"]
`, []string{
			`mxedge.toml:2:1: key "relay_domian": unknown key`,
		}},
		{"all unknown keys", `hostname = "mx1.example.net"
relay_domian = ["example.org"]
[limits]
recipients = 10
mesage_size = "10MB"
[[listener]]
address = ":25"
bare_lf = "reject"
[timeout]
command = "5m"
`, []string{
			`mxedge.toml:2:1: key "relay_domian": unknown key`,
			`mxedge.toml:5:1: key "limits.mesage_size": unknown key`,
			`mxedge.toml:8:1: key "listener[0].bare_lf": unknown key`,
			`mxedge.toml:9:2: key "timeout": unknown table`,
		}},
		{"unknown key in inline table", `timeouts = { command = "5m", comand = "5m" }`, []string{
			`mxedge.toml:1:30: key "timeouts.comand": unknown key`,
		}},
		{"wrong types", `hostname = 42
relay_domains = ["example.org", 3]
[[listener]]
address = 25
[limits]
recipients = "10"
message_size = 1.5
[timeouts]
command = 300
reply = true
[queue]
concurrency = "20"
`, []string{
			`mxedge.toml:1:12: key "hostname": expected string, got integer`,
			`mxedge.toml:2:33: key "relay_domains[1]": expected string, got integer`,
			`mxedge.toml:4:11: key "listener[0].address": expected string, got integer`,
			`mxedge.toml:6:14: key "limits.recipients": expected integer, got string`,
			`mxedge.toml:7:16: key "limits.message_size": expected a size (integer, or string such as "25MiB"), got float`,
			`mxedge.toml:9:11: key "timeouts.command": expected a duration string such as "5m" or "3d", got integer`,
			`mxedge.toml:10:9: key "timeouts.reply": expected a duration string such as "5m" or "3d", got boolean`,
			`mxedge.toml:12:15: key "queue.concurrency": expected integer, got string`,
		}},
		{"wrong structure", `relay_domains = "example.org"
routes = ["example.org"]
[listener]
address = ":25"
[limits.recipients]
`, []string{
			`mxedge.toml:1:17: key "relay_domains": expected array of strings, got string`,
			`mxedge.toml:2:1: key "routes": expected table of strings, got array`,
			`mxedge.toml:3:2: key "listener": expected array of tables, got table (write [[listener]])`,
			`mxedge.toml:5:2: key "limits.recipients": expected integer, got table`,
		}},
		{"array of tables for a table", "[[limits]]\nrecipients = 5\n[[routes]]\n", []string{
			`mxedge.toml:1:3: key "limits": expected table, got array of tables (write [limits])`,
			`mxedge.toml:3:3: key "routes": expected table of strings, got array of tables (write [routes])`,
		}},
		{"unquoted domain in routes", `[routes]
example.org = "[10.0.0.25]:25"
[routes.example.net]
`, []string{
			`mxedge.toml:2:1: key "routes.example.org": expected string, got table (a key with dots needs quotes: "example.org")`,
			`mxedge.toml:3:2: key "routes.example.net": expected string, got table (a key with dots needs quotes: "example.net")`,
		}},
		{"table where a value belongs", `hostname.x = "y"
[[listener]]
[listener.address]
`, []string{
			`mxedge.toml:1:1: key "hostname.x": expected string, got table`,
			`mxedge.toml:3:2: key "listener[0].address": expected string, got table`,
		}},
		{"inline tables", `listener = [{ address = ":25" }, { address = 26 }]
routes = { "example.org" = 25 }
`, []string{
			`mxedge.toml:1:46: key "listener[1].address": expected string, got integer`,
			`mxedge.toml:2:28: key "routes.example.org": expected string, got integer`,
		}},
		{"bad duration and size", `[limits]
message_size = "10mb"
[timeouts]
command = "3x"
data_done = "1.5d"
[queue]
max_backoff = "99999999d"
`, []string{
			`mxedge.toml:2:16: key "limits.message_size": invalid size "10mb": want a byte count such as "10240000", "10MB" or "25MiB" (units B, KB, MB, GB, KiB, MiB, GiB)`,
			`mxedge.toml:4:11: key "timeouts.command": invalid duration "3x" (examples: "300s", "5m", "1h30m", "3d", "1d12h")`,
			`mxedge.toml:5:13: key "timeouts.data_done": invalid duration "1.5d" (examples: "300s", "5m", "1h30m", "3d", "1d12h")`,
			`mxedge.toml:7:15: key "queue.max_backoff": duration "99999999d" is too large`,
		}},
		{"bad duration, dotted key", `timeouts.shutdown = "soon"`, []string{
			`mxedge.toml:1:21: key "timeouts.shutdown": invalid duration "soon" (examples: "300s", "5m", "1h30m", "3d", "1d12h")`,
		}},
		{"syntax error", "hostname = \"mx1.example.net\"\ndata_dir = \n", []string{
			`mxedge.toml:2:12: unexpected character U+000A at start of value`,
		}},
		{"type error before syntax error", "hostname = 1\n[limits\n", []string{
			`mxedge.toml:1:12: key "hostname": expected string, got integer`,
			`mxedge.toml:2:8: expected ']' to close table name`,
		}},
		{"duplicate key", "hostname = \"a.example\"\n\nhostname = \"b.example\"\n", []string{
			`mxedge.toml:3:1: key "hostname": key hostname is already defined`,
		}},
		{"integer overflow", "[limits]\nrecipients = 99999999999999999999\n", []string{
			`mxedge.toml:2:14: key "limits.recipients": decimal number is too large to fit in a 64-bit signed integer`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := errorLines(t, tc.doc)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestSizeAsInteger(t *testing.T) {
	for doc, want := range map[string]Size{
		"message_size = 25":        25,
		"message_size = 0x10":      16, // a TOML integer, unlike the string "0x10"
		"message_size = 1_000_000": 1000000,
		`message_size = "25MiB"`:   25 << 20,
		`message_size = "1000"`:    1000,
	} {
		c := mustParse(t, valid+"[limits]\n"+doc+"\n")
		if c.Limits.MessageSize != want {
			t.Errorf("%s: message_size = %d, want %d", doc, c.Limits.MessageSize, want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mxedge.toml")
	if err := os.WriteFile(path, []byte(valid+"relay_domian = []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if want := path + `:4:1: key "relay_domian": unknown key`; err == nil || err.Error() != want {
		t.Errorf("Load = %v, want %s", err, want)
	}
	if err := os.WriteFile(path, []byte(valid), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := Load(path); err != nil || c.Hostname != "mx1.example.net" {
		t.Errorf("Load = %+v, %v", c, err)
	}
	if _, err := Load(filepath.Join(dir, "missing.toml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want a not-exist error", err)
	}
}

// TestValidationLines: every validation error names its file:line, a
// listener without address the line of its [[listener]] header, all in
// one run.
func TestValidationLines(t *testing.T) {
	got := errorLines(t, `hostname = "mx1.example.org"
data_dir = "/var/lib/mxedge"
relay_domains = ["example.org"]

[[listener]]
name = "mx"

[routes]
"example.org" = "127.0.0.1:2526"

[limits]
recipients = -3
`)
	want := []string{
		`mxedge.toml:5:3: listener[0].address "": not "host:port" or "[host]:port": missing port in address`,
		`mxedge.toml:12:1: limits.recipients -3: must be at least 1`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestAllProblemsInOneRun: a type error does not hide the unknown keys and
// validation problems of the rest of the file; all come in one run, in
// the order of the file.
func TestAllProblemsInOneRun(t *testing.T) {
	got := errorLines(t, `hostname = "mx1.example.net"
relay_domains = ["example.org"]
relay_domian = ["example.net"]
[routes]
"example.org" = "[10.0.0.25]:25"
[limits]
recipients = "10"
message_size = 0
[[listener]]
name = "in"
[queue]
concurrency = 0
hostname = "x"
`)
	want := []string{
		`mxedge.toml:3:1: key "relay_domian": unknown key`,
		`mxedge.toml:7:14: key "limits.recipients": expected integer, got string`,
		`mxedge.toml:8:1: limits.message_size 0: must be greater than 0`,
		`mxedge.toml:9:3: listener[0].address "": not "host:port" or "[host]:port": missing port in address`,
		`mxedge.toml:12:1: queue.concurrency 0: must be at least 1`,
		`mxedge.toml:13:1: key "queue.hostname": unknown key`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestSkippedKeyConsequences: a key with an error is skipped, and what
// validation would say only because it is missing is not reported; other
// problems still are.
func TestSkippedKeyConsequences(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		want []string
	}{
		{"listener address of the wrong type", `hostname = "mx1.example.net"
[[listener]]
address = 25
`, []string{
			`mxedge.toml:3:11: key "listener[0].address": expected string, got integer`,
		}},
		{"listener header of the wrong type", `hostname = "mx1.example.net"
[[listener]]
[listener.address]
[[listener]]
address = ":25"
bare_line_endings = "drop"
`, []string{
			`mxedge.toml:3:2: key "listener[0].address": expected string, got table`,
			`mxedge.toml:6:1: listener[1].bare_line_endings "drop": must be "reject" or "normalize"`,
		}},
		{"relay domains skipped", `hostname = "mx1.example.net"
relay_domains = ["example.org", 3]
case_sensitive_domains = ["example.org"]
routes = { "example.org" = "[10.0.0.25]:25" }
`, []string{
			`mxedge.toml:2:33: key "relay_domains[1]": expected string, got integer`,
		}},
		{"route skipped", `hostname = "mx1.example.net"
relay_domains = ["example.org"]
[routes]
"example.org" = 25
`, []string{
			`mxedge.toml:4:17: key "routes.example.org": expected string, got integer`,
		}},
		{"submission certificate skipped", `hostname = "mx1.example.net"
[[listener]]
kind = "submission"
address = ":587"
tls_cert = "/etc/mxedge/cert.pem"
tls_key = ["/etc/mxedge/key.pem"]
max_sessions = -1
`, []string{
			`mxedge.toml:5:12: key "listener[0].tls_cert": expected array of strings, got string`,
			`mxedge.toml:7:1: listener[0].max_sessions -1: must be at least 1 (0 or absent: the kind's default)`,
		}},
		{"backoff skipped", `hostname = "mx1.example.net"
[queue]
min_backoff = 300
max_backoff = "1m"
concurrency = 0
`, []string{
			`mxedge.toml:3:15: key "queue.min_backoff": expected a duration string such as "5m" or "3d", got integer`,
			`mxedge.toml:5:1: queue.concurrency 0: must be at least 1`,
		}},
		// Which of the two was meant is open: the first is not validated.
		{"duplicate key skipped", `hostname = "mx1.example.net"
[limits]
recipients = 0
recipients = 5
[timeouts]
command = "0s"
`, []string{
			`mxedge.toml:4:1: key "limits.recipients": key recipients is already defined`,
			`mxedge.toml:6:1: timeouts.command "0s": must be greater than 0`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := errorLines(t, tc.doc)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
