package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// A limit set to 0 in the file is off, not the default; a key left out
// is the kind's default.
func TestListenerDefenseKeys(t *testing.T) {
	c := mustParse(t, valid+`
case_sensitive_domains = ["Example.ORG"]
[[listener]]
address = ":25"
client_sessions = 0
client_connection_rate = 0
pregreet_wait = "0s"
error_sleep = "0s"
helo_unknown = "reject"
dnsbl_sites = ["zen.spamhaus.org=127.0.0.[2..11]*3", "list.dnswl.org=127.0.[0..255].[1..3]*-5"]
dnsbl_threshold = 2
allowlist = "/etc/mxedge/allow.cidr"
`)
	l := c.Listeners[0]
	if l.ClientSessions != 0 || l.ClientConnectionRate != 0 || l.PregreetWait != 0 || l.ErrorSleep != 0 {
		t.Errorf("explicit zeros replaced: %+v", l)
	}
	if l.ClientMessageRate != 600 || l.ClientRecipientRate != 3000 || l.PregreetTTL != Duration(24*time.Hour) ||
		l.HardErrorLimit != 20 || l.ClientNoPTR != "reject" || l.HeloUnknown != "reject" || l.DNSBLThreshold != 2 {
		t.Errorf("defaults or values wrong: %+v", l)
	}
	if !reflect.DeepEqual(c.CaseSensitiveDomains, []string{"example.org"}) {
		t.Errorf("case_sensitive_domains %v", c.CaseSensitiveDomains)
	}
	// The effective configuration reads back the same.
	var b strings.Builder
	if err := c.WriteTOML(&b); err != nil {
		t.Fatal(err)
	}
	if c2 := mustParse(t, b.String()); !reflect.DeepEqual(c2, c) {
		t.Errorf("round trip:\n got %+v\nwant %+v", c2, c)
	}
}

func TestListenerDefenseProblems(t *testing.T) {
	got := strings.Join(errorLines(t, valid+`
case_sensitive_domains = ["other.test"]
[[listener]]
address = ":25"
client_sessions = -1
soft_error_limit = 30
hard_error_limit = 20
junk_command_limit = 0
pregreet_wait = "-1s"
lookup_timeout = "0s"
client_no_ptr = "drop"
dnsbl_sites = ["zen.test=127.0.0.[2..300]", "ok.test*-5", "bl.test*x"]
dnsbl_threshold = 0
`), "\n")
	for _, want := range []string{
		`mxedge.toml:5:1: case_sensitive_domains[0] "other.test": not in relay_domains`,
		`listener[0].client_sessions -1: must be 0 (no limit) or more`,
		`listener[0].soft_error_limit 30: must not be greater than hard_error_limit 20`,
		`listener[0].junk_command_limit 0: must be at least 1`,
		`listener[0].pregreet_wait "-1s": must be 0 or positive`,
		`listener[0].lookup_timeout "0s": must be greater than 0`,
		`listener[0].client_no_ptr "drop": must be "off", "log", "defer" or "reject"`,
		`listener[0].dnsbl_sites[0] "zen.test=127.0.0.[2..300]": filter "127.0.0.[2..300]": octet 4`,
		`listener[0].dnsbl_sites[2] "bl.test*x": weight "x" is not an integer`,
		`listener[0].dnsbl_threshold 0: must be at least 1`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %s\nin:\n%s", want, got)
		}
	}
	if strings.Contains(got, "dnsbl_sites[1]") {
		t.Errorf("a valid entry refused:\n%s", got)
	}
}
