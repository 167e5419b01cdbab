package smtpd

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"github.com/mxedge/mxedge/policy"
)

// recorder is an RCPT check that keeps the recipients it sees (after
// relay control let them through): the form the queue would store.
type recorder struct {
	mu   sync.Mutex
	seen []string
}

func (*recorder) Name() string { return "recorder" }
func (r *recorder) CheckRcpt(_ context.Context, _ *policy.Conn, _ *policy.Txn, rc policy.Rcpt) policy.Result {
	r.mu.Lock()
	r.seen = append(r.seen, rc.Addr)
	r.mu.Unlock()
	return policy.Result{}
}

func (r *recorder) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.seen) == 0 {
		return ""
	}
	return r.seen[len(r.seen)-1]
}

// TestRelayDecisions covers the classic open-relay tricks, sent over the
// wire (go-smtp unquotes local parts and strips source routes before the
// session sees them: the go-smtp column), through the listener's syntax
// check and the relay check of its chain.
func TestRelayDecisions(t *testing.T) {
	rec := &recorder{}
	// Many refusals in one session: no error limits here.
	addr, _, _ := startListener(t, func(o *Options) { o.SoftErrors, o.HardErrors = 1000, 1000 }, policy.NewRelay([]string{"relay.test", "xn--bcher-kva.test"}), rec)
	tests := []struct {
		name  string
		wire  string // what the client sent, for the reader
		to    string // what go-smtp passes to Rcpt
		utf8  bool
		code  int    // 0 = accepted
		store string // wire form stored in the queue when accepted
	}{
		{"plain relay domain", "<user@relay.test>", "user@relay.test", false, 0, "user@relay.test"},
		{"domain case", "<User@RELAY.Test>", "User@RELAY.Test", false, 0, "User@relay.test"},
		{"local part case kept", "<John.Doe@relay.test>", "John.Doe@relay.test", false, 0, "John.Doe@relay.test"},
		{"plus address", "<user+tag@relay.test>", "user+tag@relay.test", false, 0, "user+tag@relay.test"},
		{"quoted space legit", `<"john doe"@relay.test>`, "john doe@relay.test", false, 0, `"john doe"@relay.test`},
		{"source route to relay domain: route ignored", "<@evil.example:user@relay.test>", "user@relay.test", false, 0, "user@relay.test"},
		{"IDN U-label with SMTPUTF8", "<user@bücher.test>", "user@bücher.test", true, 0, "user@xn--bcher-kva.test"},
		{"IDN A-label", "<user@XN--BCHER-KVA.test>", "user@XN--BCHER-KVA.test", false, 0, "user@xn--bcher-kva.test"},
		{"UTF-8 local part with SMTPUTF8", "<jörg@relay.test>", "jörg@relay.test", true, 0, "jörg@relay.test"},

		{"foreign domain", "<victim@elsewhere.example>", "victim@elsewhere.example", false, 554, ""},
		{"percent hack", "<victim%elsewhere.example@relay.test>", "victim%elsewhere.example@relay.test", false, 554, ""},
		{"bang path", "<elsewhere.example!victim@relay.test>", "elsewhere.example!victim@relay.test", false, 554, ""},
		{"quoted @ in local part", `<"victim@elsewhere.example"@relay.test>`, "victim@elsewhere.example@relay.test", false, 554, ""},
		{"quoted percent", `<"victim%elsewhere.example"@relay.test>`, "victim%elsewhere.example@relay.test", false, 554, ""},
		{"source route via relay domain", "<@relay.test:victim@elsewhere.example>", "victim@elsewhere.example", false, 554, ""},
		{"source route list", "<@relay.test,@relay.test:victim@elsewhere.example>", "victim@elsewhere.example", false, 554, ""},
		{"IP literal", "<victim@[192.0.2.1]>", "victim@[192.0.2.1]", false, 554, ""},
		{"IPv6 literal", "<victim@[IPv6:2001:db8::1]>", "victim@[IPv6:2001:db8::1]", false, 554, ""},
		{"subdomain of relay domain", "<victim@sub.relay.test>", "victim@sub.relay.test", false, 554, ""},
		{"relay domain as prefix", "<victim@relay.test.evil.example>", "victim@relay.test.evil.example", false, 554, ""},
		{"relay domain as suffix label", "<victim@evilrelay.test>", "victim@evilrelay.test", false, 554, ""},
		{"trailing dot", "<user@relay.test.>", "user@relay.test.", false, 501, ""},
		{"trailing dot foreign", "<victim@elsewhere.example.>", "victim@elsewhere.example.", false, 501, ""},
		{"double dot domain", "<user@relay..test>", "user@relay..test", false, 501, ""},
		{"empty domain label", "<user@.relay.test>", "user@.relay.test", false, 501, ""},
		{"underscore in domain", "<user@re_lay.test>", "user@re_lay.test", false, 501, ""},
		{"control char in local part", "<\"us\\\x01er\"@relay.test>", "us\x01er@relay.test", false, 501, ""},
		{"no domain", "<user>", "user", false, 501, ""},
		{"IDN without SMTPUTF8", "<user@bücher.test>", "user@bücher.test", false, 553, ""},
		{"UTF-8 local part without SMTPUTF8", "<jörg@relay.test>", "jörg@relay.test", false, 553, ""},
		{"fullwidth dot IDN trick to foreign", "<victim@elsewhere\uff0eexample>", "victim@elsewhere\uff0eexample", true, 554, ""},
	}
	c := dial(t, addr)
	c.cmd("EHLO client.test", "250")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			mail := "MAIL FROM:<s@src.test>"
			if tt.utf8 {
				mail += " SMTPUTF8"
			}
			c.cmd(mail, "250")
			defer c.cmd("RSET", "250")
			want := "250"
			if tt.code != 0 {
				want = strconv.Itoa(tt.code)
			}
			got := c.cmd("RCPT TO:"+tt.wire, want)
			if tt.code == 554 && got != "554 5.7.1 <"+tt.to+">: Relay access denied" {
				t.Errorf("%s: %q", tt.wire, got)
			}
			if tt.code == 0 && rec.last() != tt.store {
				t.Errorf("%s: stored as %q, want %q", tt.wire, rec.last(), tt.store)
			}
		})
	}
}
