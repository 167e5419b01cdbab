package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/mxedge/mxedge/config"
)

// restartNeeded names what a reload does not apply, and only that: the
// live tables (TLS policy, verification, greylisting, DKIM keys, milters,
// submission limits, the listeners' policy keys) are not reported; a
// session key of a listener, the rest of [delivery] and the top-level
// restart tables are.
func TestRestartNeeded(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*config.Config)
		want   []string
	}{
		{"nothing", func(*config.Config) {}, nil},
		{"live tables", func(c *config.Config) {
			c.TLSPolicy = map[string]string{"partner.example": "verify"}
			c.Delivery.DefaultTLSPolicy, c.Delivery.MTASTS, c.Delivery.DANE = "encrypt", !c.Delivery.MTASTS, !c.Delivery.DANE
			c.Verify.ProbeSender, c.Verify.NegativeTTL = "<>", c.Verify.NegativeTTL*2
			c.Greylist.Enabled = !c.Greylist.Enabled
			c.DKIMSign = []config.DKIMSign{{Domain: "example.test", Selector: "s2", KeyFile: "/k"}}
			c.Milters = []config.Milter{{Name: "rspamd", Address: "inet:127.0.0.1:11332", Kinds: []string{"submission"}}}
			c.Submission.MessagesPerHour++
			c.Listeners[0].ClientMessageRate++
			c.RelayDomains = append(c.RelayDomains, "other.test")
		}, nil},
		{"session key", func(c *config.Config) { c.Listeners[0].SoftErrorLimit++ },
			[]string{`listener "` + config.Default().Listeners[0].Name + `": soft_error_limit changed`}},
		{"reverse DNS on", func(c *config.Config) {
			c.Listeners[0].ClientNoPTR, c.Listeners[0].ClientPTRMismatch = "reject", "reject"
		},
			[]string{`listener "` + config.Default().Listeners[0].Name + `": reverse DNS lookup`}},
		{"delivery and top level", func(c *config.Config) { c.Delivery.Smarthost, c.Hostname = "smart.example:25", "mx9.example" },
			[]string{"hostname: changed", "delivery.smarthost: changed"}},
		{"postmaster domain", func(c *config.Config) { c.RelayDomains = append([]string{"first.test"}, c.RelayDomains...) },
			[]string{"relay_domains: the first"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old, new := config.Default(), config.Default()
			new.Listeners[0].ClientNoPTR, old.Listeners[0].ClientNoPTR = "off", "off"
			new.Listeners[0].ClientPTRMismatch, old.Listeners[0].ClientPTRMismatch = "off", "off"
			new.Listeners[0].ClientAccess, old.Listeners[0].ClientAccess = "", ""
			tc.change(new)
			got := restartNeeded(old, new)
			if len(got) != len(tc.want) {
				t.Fatalf("restartNeeded = %q, want %q", got, tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("restartNeeded[%d] = %q, want %q...", i, got[i], w)
				}
			}
		})
	}
}

// adopt takes what a reload applied into the configuration in force and
// keeps the session keys of the start, so the next reload reports a
// session key change again.
func TestAdoptKeepsSessionKeys(t *testing.T) {
	r := &relay{cfg: config.Default()}
	new := config.Default()
	new.Listeners[0].SoftErrorLimit++
	new.Listeners[0].ClientMessageRate = 7
	new.TLSPolicy = map[string]string{"partner.example": "verify"}
	r.adopt(new)
	l := r.cfg.Listeners[0]
	if l.SoftErrorLimit != config.Default().Listeners[0].SoftErrorLimit || l.ClientMessageRate != 7 ||
		!reflect.DeepEqual(r.cfg.TLSPolicy, new.TLSPolicy) {
		t.Errorf("after adopt: soft_error_limit %d, client_message_rate %d, tls_policy %v", l.SoftErrorLimit, l.ClientMessageRate, r.cfg.TLSPolicy)
	}
	if got := restartNeeded(r.cfg, new); len(got) != 1 || !strings.Contains(got[0], "soft_error_limit") {
		t.Errorf("restartNeeded after adopt = %q", got)
	}
}
