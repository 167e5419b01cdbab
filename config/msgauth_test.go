package config

import (
	"strings"
	"testing"
)

// The message authentication sections: defaults on, every bad value one
// problem naming its key and its file:line, a wrong type with file:line:column.
func TestMsgAuthSections(t *testing.T) {
	c, err := Parse("m.toml", []byte("hostname = \"mx1.example.net\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.SPF.Enabled || !c.DKIMVerify.Enabled || !c.DMARC.Enabled || !c.AuthResults.Enabled ||
		c.SPF.Fail != "log" || c.DMARC.Reject != "reject" || c.DMARC.Quarantine != "accept" || c.DKIMVerify.MaxSignatures != 5 {
		t.Errorf("defaults: %+v %+v %+v %+v", c.AuthResults, c.SPF, c.DKIMVerify, c.DMARC)
	}
	for _, tc := range []struct{ toml, want string }{
		{"[spf]\nfail = \"drop\"\n", `m.toml:3:1: spf.fail "drop": must be "log" or "reject"`},
		{"[spf]\ntemperror = \"reject\"\n", `m.toml:3:1: spf.temperror "reject": must be "off", "log" or "defer"`},
		{"[dmarc]\nreject = \"quarantine\"\n", `m.toml:3:1: dmarc.reject "quarantine": must be "reject" or "log"`},
		{"[dmarc]\nquarantine = \"hold\"\n", `m.toml:3:1: dmarc.quarantine "hold": must be "accept" or "reject"`},
		{"[dkim_verify]\nmax_signatures = 0\n", `m.toml:3:1: dkim_verify.max_signatures 0: must be 1 to 50`},
		{"[dmarc]\ntimeout = \"0s\"\n", `m.toml:3:1: dmarc.timeout "0s": must be positive`},
		{"[auth_results]\nauthserv_id = \"a b\"\n", `m.toml:3:1: auth_results.authserv_id "a b": not a valid host name`},
		{"[spf]\nenabled = \"yes\"\n", `m.toml:3:11: key "spf.enabled"`},
		{"[dkim_verify]\nkeys = 1\n", `m.toml:3:1: key "dkim_verify.keys": unknown key`},
	} {
		_, err := Parse("m.toml", []byte("hostname = \"mx1.example.net\"\n"+tc.toml))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want %s...", tc.toml, err, tc.want)
		}
	}
}
