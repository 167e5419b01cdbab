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

// Every configuration key is either applied by a reload or reported as
// needing a restart: a key added later must be put on one side (here and
// in reloadConfig), never be silently ignored.
func TestReloadCoversEveryKey(t *testing.T) {
	for _, tc := range []struct {
		typ     reflect.Type
		restart []string
		live    []string // applied by reloadConfig (adopt)
	}{
		{reflect.TypeFor[config.Config](), restartKeys, append([]string{"listener", "delivery"}, liveKeys...)},
		{reflect.TypeFor[config.Delivery](), deliveryRestartKeys, deliveryLiveKeys},
		{reflect.TypeFor[config.Listener](), sessionKeys, []string{"name", "kind", "address", // a change is a new listener
			"client_sessions", "client_connection_rate", "client_message_rate", "client_recipient_rate", "allowlist",
			"client_no_ptr", "client_ptr_mismatch", "helo_invalid", "helo_is_us", "helo_unknown", "sender_unknown_domain",
			"client_access", "sender_access", "dnsbl_sites", "dnsbl_threshold"}},
	} {
		known := map[string]bool{}
		for _, k := range append(append([]string(nil), tc.restart...), tc.live...) {
			known[k] = true
		}
		for i := range tc.typ.NumField() {
			key, _, _ := strings.Cut(tc.typ.Field(i).Tag.Get("toml"), ",")
			if key != "" && key != "-" && !known[key] {
				t.Errorf("%s key %q: neither applied by a reload nor reported as needing a restart", tc.typ, key)
			}
		}
	}
}
