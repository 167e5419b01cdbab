package config

import "time"

// The message authentication sections (package policy/msgauth): they apply
// to the mx listeners; the submission kinds authenticate their users
// instead.

// AuthResults is [auth_results]: the Authentication-Results header field
// (RFC 8601) the MX listeners add, and the removal of incoming ones that
// carry our authserv-id.
type AuthResults struct {
	Enabled bool `toml:"enabled" json:"enabled"`
	// AuthservID names this relay in the field; default the hostname. The
	// two relays of an MX-10 pair may share one, so that each drops the
	// other's forgeries too.
	AuthservID string `toml:"authserv_id" json:"authserv_id"`
}

// SPF is [spf] (RFC 7208), evaluated at MAIL FROM.
type SPF struct {
	Enabled bool `toml:"enabled" json:"enabled"`
	// Fail: "log" (default: the result feeds DMARC and
	// Authentication-Results) or "reject" (550 5.7.23).
	Fail string `toml:"fail" json:"fail"`
	// TempError: "off" (default), "log" or "defer" (451 4.7.24).
	TempError string `toml:"temperror" json:"temperror"`
	// Helo also checks the HELO identity (RFC 7208 section 2.3).
	Helo    bool     `toml:"helo" json:"helo"`
	Timeout Duration `toml:"timeout" json:"timeout"`
}

// DKIMVerify is [dkim_verify] (RFC 6376, RFC 8463): verification of the
// signatures of incoming mail. ([[dkim_sign]] is signing, unrelated.)
type DKIMVerify struct {
	Enabled       bool     `toml:"enabled" json:"enabled"`
	MaxSignatures int      `toml:"max_signatures" json:"max_signatures"`
	Timeout       Duration `toml:"timeout" json:"timeout"`
}

// DMARC is [dmarc] (RFC 7489), evaluated after DATA.
type DMARC struct {
	Enabled bool `toml:"enabled" json:"enabled"`
	// Reject: what a failed message under p=reject gets: "reject"
	// (default: 550 5.7.1 in the session, nothing queued) or "log".
	Reject string `toml:"reject" json:"reject"`
	// Quarantine: under p=quarantine, "accept" (default: delivered with
	// the verdict in Authentication-Results) or "reject".
	Quarantine string `toml:"quarantine" json:"quarantine"`
	// Exempt is a file of From domains (one a line, # comments) whose
	// DMARC failures are never refused: mailing lists that break
	// signatures. A domain covers its subdomains.
	Exempt  string   `toml:"exempt" json:"exempt"`
	Timeout Duration `toml:"timeout" json:"timeout"`
}

// msgAuthDefaults are the sections' defaults: all on.
func msgAuthDefaults(c *Config) {
	c.AuthResults = AuthResults{Enabled: true}
	c.SPF = SPF{Enabled: true, Fail: "log", TempError: "off", Helo: true, Timeout: Duration(10 * time.Second)}
	c.DKIMVerify = DKIMVerify{Enabled: true, MaxSignatures: 5, Timeout: Duration(10 * time.Second)}
	c.DMARC = DMARC{Enabled: true, Reject: "reject", Quarantine: "accept", Timeout: Duration(10 * time.Second)}
}

// msgAuthProblems validates the sections.
func (c *Config) msgAuthProblems(add func(format string, args ...any)) {
	if c.AuthResults.AuthservID != "" {
		if err := checkHostname(c.AuthResults.AuthservID); err != nil {
			add("auth_results.authserv_id %q: not a valid host name: %v", c.AuthResults.AuthservID, err)
		}
	}
	if s := c.SPF.Fail; s != "log" && s != "reject" {
		add(`spf.fail %q: must be "log" or "reject"`, s)
	}
	if s := c.SPF.TempError; s != "off" && s != "log" && s != "defer" {
		add(`spf.temperror %q: must be "off", "log" or "defer"`, s)
	}
	if s := c.DMARC.Reject; s != "reject" && s != "log" {
		add(`dmarc.reject %q: must be "reject" or "log"`, s)
	}
	if s := c.DMARC.Quarantine; s != "accept" && s != "reject" {
		add(`dmarc.quarantine %q: must be "accept" or "reject"`, s)
	}
	if n := c.DKIMVerify.MaxSignatures; n < 1 || n > 50 {
		add("dkim_verify.max_signatures %d: must be 1 to 50", n)
	}
	for _, v := range []struct {
		key string
		d   Duration
	}{{"spf.timeout", c.SPF.Timeout}, {"dkim_verify.timeout", c.DKIMVerify.Timeout}, {"dmarc.timeout", c.DMARC.Timeout}} {
		if v.d <= 0 {
			add("%s %q: must be positive", v.key, v.d)
		}
	}
}
