package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestValidate changes one thing in the valid Default configuration and
// expects exactly one problem, naming the key.
func TestValidate(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	for _, tc := range []struct {
		name   string
		change func(c *Config)
		want   string // "" when the change is valid
	}{
		{"default", func(c *Config) {}, ""},

		{"hostname empty", func(c *Config) { c.Hostname = "" }, `hostname "": not a valid host name: empty`},
		{"hostname space", func(c *Config) { c.Hostname = "mx 1.example.net" }, `hostname "mx 1.example.net": not a valid host name: label "mx 1" contains " "; only letters, digits and hyphens are allowed`},
		{"hostname underscore", func(c *Config) { c.Hostname = "mx_1.example.net" }, `hostname "mx_1.example.net": not a valid host name: label "mx_1" contains "_"`},
		{"hostname IDN", func(c *Config) { c.Hostname = "mx.bücher.example" }, `hostname "mx.bücher.example": not a valid host name: label "bücher" contains "ü"`},
		{"hostname trailing dot", func(c *Config) { c.Hostname = "mx1.example.net." }, `hostname "mx1.example.net.": not a valid host name: trailing dot not allowed (write "mx1.example.net")`},
		{"hostname IPv4", func(c *Config) { c.Hostname = "192.0.2.1" }, `hostname "192.0.2.1": not a valid host name: an IP address, not a name`},
		{"hostname IPv6", func(c *Config) { c.Hostname = "2001:db8::1" }, `hostname "2001:db8::1": not a valid host name: an IP address, not a name`},
		{"hostname numeric TLD", func(c *Config) { c.Hostname = "mx.123" }, `hostname "mx.123": not a valid host name: last label is numeric`},
		{"hostname empty label", func(c *Config) { c.Hostname = "mx..example.net" }, `not a valid host name: empty label`},
		{"hostname leading hyphen", func(c *Config) { c.Hostname = "-mx.example.net" }, `label "-mx" starts or ends with a hyphen`},
		{"hostname trailing hyphen", func(c *Config) { c.Hostname = "mx-.example.net" }, `label "mx-" starts or ends with a hyphen`},
		{"hostname label 63", func(c *Config) { c.Hostname = long63 + ".example.net" }, ""},
		{"hostname label 64", func(c *Config) { c.Hostname = long63 + "a.example.net" }, `has 64 characters, at most 63 allowed`},
		{"hostname 253", func(c *Config) { c.Hostname = strings.Repeat(long63+".", 3) + strings.Repeat("a", 61) }, ""},
		{"hostname 254", func(c *Config) { c.Hostname = strings.Repeat(long63+".", 3) + strings.Repeat("a", 62) }, `not a valid host name: 254 characters, at most 253 allowed`},
		{"hostname single label", func(c *Config) { c.Hostname = "mx1" }, ""},
		{"hostname uppercase", func(c *Config) { c.Hostname = "MX1.Example.NET" }, ""},

		{"data_dir empty", func(c *Config) { c.DataDir = "" }, `data_dir "": must not be empty`},

		{"no listener", func(c *Config) { c.Listeners = nil }, `listener: at least one [[listener]] is needed`},
		{"listener kind submission", func(c *Config) {
			c.Listeners[0].Kind = "submission"
			c.Listeners[0].TLSCert, c.Listeners[0].TLSKey = []string{"c.pem"}, []string{"c.key"}
		}, ""},
		{"submission without TLS", func(c *Config) { c.Listeners[0].Kind = "submissions" }, `listener[0]: kind "submissions" needs tls_cert and tls_key (AUTH is offered only over TLS)`},
		{"hide_client_ip on mx", func(c *Config) { c.Listeners[0].HideClientIP = true }, `listener[0].hide_client_ip: only for the submission kinds (an MX records where mail came from)`},
		{"auth backend", func(c *Config) { c.Auth.Backend = "ldap" }, `auth.backend "ldap": must be "file" or "dovecot"`},
		{"dovecot without socket", func(c *Config) { c.Auth.Backend = "dovecot" }, `auth.dovecot_socket "": the "dovecot" backend needs Dovecot's auth-client socket`},
		{"lockout before slow", func(c *Config) { c.Auth.FailuresLockout = 5 }, `auth.failures_lockout 5: must be greater than auth.failures_slow (5)`},
		{"over_limit", func(c *Config) { c.Submission.OverLimit = "drop" }, `submission.over_limit "drop": must be "defer" or "hold"`},
		{"negative limit", func(c *Config) { c.Submission.RecipientsPerDay = -1 }, `submission.recipients_per_day -1: must be 0 (no limit) or positive`},
		{"dkim selector", func(c *Config) {
			c.DKIMSign = []DKIMSign{{Domain: "example.org", Selector: "a b", KeyFile: "k"}}
		}, `dkim_sign[0].selector "a b": must be a DNS label (or dot-separated labels)`},
		{"milter address", func(c *Config) {
			c.Milters = []Milter{{Name: "m", Address: "127.0.0.1:11332", Kinds: []string{"submission"}, ConnectTimeout: 1, CommandTimeout: 1, ContentTimeout: 1, DefaultAction: "tempfail"}}
		}, `milter[0].address "127.0.0.1:11332": must be "inet:host:port", "inet6:[addr]:port" or "unix:/path"`},
		{"milter kind", func(c *Config) {
			c.Milters = []Milter{{Name: "m", Address: "unix:/run/m.sock", Kinds: []string{"mx", "smtp"}, ConnectTimeout: 1, CommandTimeout: 1, ContentTimeout: 1, DefaultAction: "tempfail"}}
		}, `milter[0].kinds: "smtp" is not a listener kind ("mx", "submission", "submissions")`},
		{"milter action", func(c *Config) {
			c.Milters = []Milter{{Name: "m", Address: "unix:/run/m.sock", Kinds: []string{"submission"}, ConnectTimeout: 1, CommandTimeout: 1, ContentTimeout: 1, DefaultAction: "discard"}}
		}, `milter[0].default_action "discard": must be "tempfail", "accept" or "reject"`},
		{"dkim twice", func(c *Config) {
			c.DKIMSign = []DKIMSign{{Domain: "example.org", Selector: "s", KeyFile: "k"}, {Domain: "example.org", Selector: "s", KeyFile: "k2"}}
		}, `dkim_sign[1]: domain "example.org" selector "s" as dkim_sign[0]`},
		{"listener kind", func(c *Config) { c.Listeners[0].Kind = "lmtp" }, `listener[0].kind "lmtp": must be "mx", "submission" or "submissions"`},
		{"listener kind empty", func(c *Config) { c.Listeners[0].Kind = "" }, `listener[0].kind "": must be "mx"`},
		{"listener max_sessions", func(c *Config) { c.Listeners[0].MaxSessions = -1 }, `listener[0].max_sessions -1: must be at least 1`},
		{"bare_line_endings", func(c *Config) { c.Listeners[0].BareLineEndings = "drop" }, `listener[0].bare_line_endings "drop": must be "reject" or "normalize"`},
		{"bare_line_endings normalize", func(c *Config) { c.Listeners[0].BareLineEndings = "normalize" }, ""},
		{"address no port", func(c *Config) { c.Listeners[0].Address = "127.0.0.1" }, `listener[0].address "127.0.0.1": not "host:port" or "[host]:port": missing port in address`},
		{"address empty", func(c *Config) { c.Listeners[0].Address = "" }, `listener[0].address "": not "host:port"`},
		{"address port 0", func(c *Config) { c.Listeners[0].Address = "127.0.0.1:0" }, `listener[0].address "127.0.0.1:0": port "0": must be a number from 1 to 65535`},
		{"address port 65536", func(c *Config) { c.Listeners[0].Address = "127.0.0.1:65536" }, `port "65536": must be a number from 1 to 65535`},
		{"address port name", func(c *Config) { c.Listeners[0].Address = "127.0.0.1:smtp" }, `port "smtp": must be a number from 1 to 65535`},
		{"address port sign", func(c *Config) { c.Listeners[0].Address = "127.0.0.1:+25" }, `port "+25": must be a number from 1 to 65535`},
		{"address bad host", func(c *Config) { c.Listeners[0].Address = "no_such:25" }, `listener[0].address "no_such:25": host "no_such": neither an IP address nor a host name`},
		{"address unbracketed IPv6", func(c *Config) { c.Listeners[0].Address = "::1:25" }, `listener[0].address "::1:25": not "host:port" or "[host]:port": too many colons in address`},
		{"address all", func(c *Config) { c.Listeners[0].Address = ":25" }, ""},
		{"address IPv6", func(c *Config) { c.Listeners[0].Address = "[::1]:65535" }, ""},
		{"address zone", func(c *Config) { c.Listeners[0].Address = "[fe80::1%eth0]:25" }, ""},
		{"address host name", func(c *Config) { c.Listeners[0].Address = "localhost:2525" }, ""},
		{"address duplicate", func(c *Config) {
			c.Listeners = append(c.Listeners, testListener("two", "mx", "127.0.0.1:2525"))
		}, `listener[1].address "127.0.0.1:2525": same address as listener[0]`},
		{"address duplicate case", func(c *Config) {
			c.Listeners[0].Address = "localhost:25"
			c.Listeners = append(c.Listeners, testListener("two", "mx", "LOCALHOST:25"))
		}, `listener[1].address "LOCALHOST:25": same address as listener[0]`},
		{"two addresses", func(c *Config) {
			c.Listeners = append(c.Listeners, testListener("two", "mx", "127.0.0.1:2526"))
		}, ""},

		{"relay domain space", func(c *Config) { c.RelayDomains = append(c.RelayDomains, "exa mple.org") }, `relay_domains[1] "exa mple.org": not a valid domain name`},
		{"relay domain trailing dot", func(c *Config) { c.RelayDomains[0] = "example.test." }, `relay_domains[0] "example.test.": not a valid domain name: trailing dot not allowed (write "example.test")`},
		{"relay domain bad punycode", func(c *Config) { c.RelayDomains = append(c.RelayDomains, "xn--zz.example") }, `relay_domains[1] "xn--zz.example": not a valid domain name: idna: invalid label`},
		{"relay domain IP", func(c *Config) { c.RelayDomains = append(c.RelayDomains, "192.0.2.1") }, `relay_domains[1] "192.0.2.1": not a valid domain name: an IP address, not a name`},
		{"relay domain empty", func(c *Config) { c.RelayDomains = append(c.RelayDomains, "") }, `relay_domains[1] "": not a valid domain name: empty`},
		{"relay domain not normal", func(c *Config) { c.RelayDomains[0] = "Example.TEST" }, `relay_domains[0] "Example.TEST": must be written as "example.test" (lowercase, IDN as A-labels)`},
		{"relay domain duplicate", func(c *Config) { c.RelayDomains = append(c.RelayDomains, "example.test") }, `relay_domains[1] "example.test": listed twice (see relay_domains[0])`},
		{"relay domain no route", func(c *Config) { c.RelayDomains = append(c.RelayDomains, "other.test") }, `relay_domains[1] "other.test": no route; add routes."other.test" = "host:port" (its MX points at this relay: delivery by MX would loop)`},
		{"no relay domains", func(c *Config) { c.RelayDomains = nil }, ""},

		{"route key invalid", func(c *Config) { c.Routes["exa mple.org"] = "10.0.0.1:25" }, `routes."exa mple.org": not a valid domain name`},
		{"route key not normal", func(c *Config) { c.Routes["Other.test"] = "10.0.0.1:25" }, `routes."Other.test": must be written as "other.test"`},
		{"route key twice", func(c *Config) { c.Routes["EXAMPLE.test"] = "10.0.0.1:25" }, `routes."EXAMPLE.test": same domain as routes."example.test"`},
		{"route no port", func(c *Config) { c.Routes["example.test"] = "10.0.0.1" }, `routes."example.test" = "10.0.0.1": not "host:port" or "[host]:port": missing port in address`},
		{"route lmtp tcp", func(c *Config) { c.Routes["example.test"] = "lmtp:10.0.0.1:24" }, ""},
		{"route lmtp unix", func(c *Config) { c.Routes["example.test"] = "lmtp:unix:/run/dovecot/lmtp" }, ""},
		{"route lmtp unix relative", func(c *Config) { c.Routes["example.test"] = "lmtp:unix:dovecot/lmtp" }, `routes."example.test" = "lmtp:unix:dovecot/lmtp": lmtp:unix: needs an absolute socket path`},
		{"route lmtp no port", func(c *Config) { c.Routes["example.test"] = "lmtp:10.0.0.1" }, `routes."example.test" = "lmtp:10.0.0.1": lmtp: not "host:port"`},
		{"route port 0", func(c *Config) { c.Routes["example.test"] = "[10.0.0.1]:0" }, `routes."example.test" = "[10.0.0.1]:0": port "0": must be a number from 1 to 65535`},
		{"route no host", func(c *Config) { c.Routes["example.test"] = ":25" }, `routes."example.test" = ":25": host is empty`},
		{"route bad host", func(c *Config) { c.Routes["example.test"] = "[mx_1.example.test]:25" }, `host "mx_1.example.test": neither an IP address nor a host name`},
		{"route bracketed name", func(c *Config) { c.Routes["example.test"] = "[backend.example.test]:25" }, ""},
		{"route IPv6", func(c *Config) { c.Routes["example.test"] = "[2001:db8::25]:25" }, ""},
		{"route without relay domain", func(c *Config) { c.Routes["other.test"] = "10.0.0.1:25" }, ""},

		{"message_size 0", func(c *Config) { c.Limits.MessageSize = 0 }, `limits.message_size 0: must be greater than 0`},
		{"message_size negative", func(c *Config) { c.Limits.MessageSize = -1 }, `limits.message_size -1: must be greater than 0`},
		{"message_size 1", func(c *Config) { c.Limits.MessageSize = 1 }, ""},
		{"recipients 0", func(c *Config) { c.Limits.Recipients = 0 }, `limits.recipients 0: must be at least 1`},
		{"recipients 1", func(c *Config) { c.Limits.Recipients = 1 }, ""},

		{"command 0", func(c *Config) { c.Timeouts.Command = 0 }, `timeouts.command "0s": must be greater than 0`},
		{"data_block negative", func(c *Config) { c.Timeouts.DataBlock = Duration(-time.Second) }, `timeouts.data_block "-1s": must be greater than 0`},
		{"connect 0", func(c *Config) { c.Timeouts.Connect = 0 }, `timeouts.connect "0s": must be greater than 0`},
		{"reply 0", func(c *Config) { c.Timeouts.Reply = 0 }, `timeouts.reply "0s": must be greater than 0`},
		{"data_done 0", func(c *Config) { c.Timeouts.DataDone = 0 }, `timeouts.data_done "0s": must be greater than 0`},
		{"shutdown 0", func(c *Config) { c.Timeouts.Shutdown = 0 }, `timeouts.shutdown "0s": must be greater than 0`},
		{"shutdown 1ns", func(c *Config) { c.Timeouts.Shutdown = 1 }, ""},
		{"min_backoff 0", func(c *Config) { c.Queue.MinBackoff = 0 }, `queue.min_backoff "0s": must be greater than 0`},
		{"max_backoff 0", func(c *Config) { c.Queue.MaxBackoff = 0 }, `queue.max_backoff "0s": must be greater than 0`},
		{"min above max", func(c *Config) { c.Queue.MinBackoff = Duration(2 * time.Hour) }, `queue.min_backoff "2h0m0s": must not be greater than queue.max_backoff "1h6m40s"`},
		{"min equals max", func(c *Config) { c.Queue.MinBackoff = c.Queue.MaxBackoff }, ""},
		{"concurrency 0", func(c *Config) { c.Queue.Concurrency = 0 }, `queue.concurrency 0: must be at least 1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.change(c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case tc.want == "":
			case err == nil:
				t.Errorf("Validate accepted the change, want %s", tc.want)
			case strings.Contains(err.Error(), "\n"):
				t.Errorf("Validate reported more than one problem:\n%v", err)
			case !strings.Contains(err.Error(), tc.want):
				t.Errorf("Validate = %v\nwant it to contain %s", err, tc.want)
			}
		})
	}
}

// TestValidateAll: every problem is reported at once, prefixed with the
// file name, in the order of the file.
func TestValidateAll(t *testing.T) {
	got := errorLines(t, `hostname = "mx1.example.net."
data_dir = ""
relay_domains = ["example.org", "exa mple.org", "EXAMPLE.org", "nohop.example"]
[routes]
"example.org" = "10.0.0.25"
[[listener]]
kind = "smtp"
address = "0.0.0.0:25"
bare_line_endings = "drop"
[[listener]]
address = ":99999"
[limits]
message_size = 0
recipients = 0
[timeouts]
connect = "-1s"
[queue]
min_backoff = "2h"
max_backoff = "1h"
concurrency = 0
`)
	want := []string{
		`mxedge.toml:1:1: hostname "mx1.example.net.": not a valid host name: trailing dot not allowed (write "mx1.example.net")`,
		`mxedge.toml:2:1: data_dir "": must not be empty`,
		`mxedge.toml:3:1: relay_domains[1] "exa mple.org": not a valid domain name: label "exa mple" contains " "; only letters, digits and hyphens are allowed`,
		`mxedge.toml:3:1: relay_domains[2] "example.org": listed twice (see relay_domains[0])`,
		`mxedge.toml:3:1: relay_domains[3] "nohop.example": no route; add routes."nohop.example" = "host:port" (its MX points at this relay: delivery by MX would loop)`,
		`mxedge.toml:5:1: routes."example.org" = "10.0.0.25": not "host:port" or "[host]:port": missing port in address`,
		`mxedge.toml:7:1: listener[0].kind "smtp": must be "mx", "submission" or "submissions"`,
		`mxedge.toml:9:1: listener[0].bare_line_endings "drop": must be "reject" or "normalize"`,
		`mxedge.toml:11:1: listener[1].address ":99999": port "99999": must be a number from 1 to 65535`,
		`mxedge.toml:13:1: limits.message_size 0: must be greater than 0`,
		`mxedge.toml:14:1: limits.recipients 0: must be at least 1`,
		`mxedge.toml:16:1: timeouts.connect "-1s": must be greater than 0`,
		`mxedge.toml:18:1: queue.min_backoff "2h0m0s": must not be greater than queue.max_backoff "1h0m0s"`,
		`mxedge.toml:20:1: queue.concurrency 0: must be at least 1`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestRouteKeyCollision: two spellings of one domain in [routes] are an
// error, whichever order they come in.
func TestRouteKeyCollision(t *testing.T) {
	for _, doc := range []string{
		"[routes]\n\"Example.org\" = \"10.0.0.1:25\"\n\"example.org\" = \"10.0.0.2:25\"\n",
		"[routes]\n\"example.org\" = \"10.0.0.2:25\"\n\"Example.org\" = \"10.0.0.1:25\"\n",
		"[routes]\n\"bücher.example\" = \"10.0.0.1:25\"\n\"xn--bcher-kva.example\" = \"10.0.0.2:25\"\n",
	} {
		got := errorLines(t, "hostname = \"mx1.example.net\"\n"+doc)
		if len(got) != 1 || !strings.Contains(got[0], "same domain as routes.") {
			t.Errorf("%s: got\n%s\nwant one \"same domain\" error", doc, strings.Join(got, "\n"))
		}
	}
}
