// Package config loads and validates mxedge's TOML configuration.
//
// One file configures one relay; both relays of an MX-10 pair run the same
// file. Loading is strict: an unknown key (a typo such as relay_domian) or a
// value of the wrong type is an error that names the file and line, and
// semantic validation names the key and what it allows. Defaults follow
// Postfix practice (postconf(5)) where shared/PRINCIPLES.md says nothing
// else; Default returns the built-in local configuration used by
// "mxedge serve" without -config.
//
// Durations are written as "300s", "5m", "3d"; sizes as "10240000", "25MiB",
// "10MB" (see Duration and Size).
package config

import "time"

// Config is the effective configuration of one relay, defaults filled in.
type Config struct {
	// Hostname is the relay's own name: SMTP banner, EHLO name on outbound
	// connections, Received headers. Postfix: myhostname.
	Hostname string `toml:"hostname" json:"hostname"`
	// DataDir holds the queue database and spool (and later the
	// verification cache and control socket).
	DataDir string `toml:"data_dir" json:"data_dir"`

	// Listeners are the SMTP listeners. Only kind "mx" exists so far.
	Listeners []Listener `toml:"listener" json:"listener"`

	// RelayDomains are the domains the MX listener accepts mail for
	// (Postfix: relay_domains). Stored lowercased, IDNs as A-labels,
	// no trailing dot.
	RelayDomains []string `toml:"relay_domains" json:"relay_domains"`
	// Routes maps a domain (same normal form as RelayDomains) to a next hop
	// "host:port" used as is, without MX lookup (Postfix transport_maps
	// with smtp:[host]:port). Every relay domain needs a route until MX
	// routing exists.
	Routes map[string]string `toml:"routes" json:"routes"`

	Limits   Limits   `toml:"limits" json:"limits"`
	Timeouts Timeouts `toml:"timeouts" json:"timeouts"`
	Queue    Queue    `toml:"queue" json:"queue"`
}

// Listener is one SMTP listening socket.
type Listener struct {
	// Name appears in logs; default: the kind.
	Name string `toml:"name" json:"name"`
	// Kind of listener: "mx" (port 25 service, no AUTH, relay domains only).
	Kind string `toml:"kind" json:"kind"`
	// Address is "host:port", e.g. "0.0.0.0:25" or "127.0.0.1:2525".
	Address string `toml:"address" json:"address"`
	// BareLineEndings is the SMTP smuggling policy for bare CR and bare LF
	// in message data: "reject" (default for mx: 550 in session) or
	// "normalize" (bare LF becomes CRLF, a stray CR becomes a space).
	BareLineEndings string `toml:"bare_line_endings" json:"bare_line_endings"`
}

// Limits bound what one client may send.
type Limits struct {
	// MessageSize is the largest message accepted, in bytes, checked at
	// MAIL (SIZE=) and on the stream. Postfix message_size_limit: 10240000.
	MessageSize Size `toml:"message_size" json:"message_size"`
	// Recipients per message. Postfix smtpd_recipient_limit: 1000.
	Recipients int `toml:"recipients" json:"recipients"`
}

// Timeouts of the SMTP dialogue, both directions.
type Timeouts struct {
	// Command: idle time allowed between commands on the listener
	// (RFC 5321 section 4.5.3.2: 5 minutes).
	Command Duration `toml:"command" json:"command"`
	// DataBlock: idle time allowed between two reads during DATA
	// (RFC 5321 section 4.5.3.2.5 data block: 3 minutes). A slow but live
	// sender is never cut off as long as data keeps coming.
	DataBlock Duration `toml:"data_block" json:"data_block"`
	// Connect: outbound TCP connect (Postfix smtp_connect_timeout 30s).
	Connect Duration `toml:"connect" json:"connect"`
	// Reply: outbound wait for each reply to a command (Postfix
	// smtp_helo/mail/rcpt timeouts 300s).
	Reply Duration `toml:"reply" json:"reply"`
	// DataDone: outbound wait for the reply after the final "." (RFC 5321
	// section 4.5.3.2.6: 10 minutes; Postfix smtp_data_done_timeout 600s).
	DataDone Duration `toml:"data_done" json:"data_done"`
	// Shutdown: how long SIGINT/SIGTERM waits for sessions in flight.
	Shutdown Duration `toml:"shutdown" json:"shutdown"`
}

// Queue tunes the durable queue and its scheduler.
type Queue struct {
	// MinBackoff is the first retry delay after a temporary failure
	// (Postfix minimal_backoff_time 300s).
	MinBackoff Duration `toml:"min_backoff" json:"min_backoff"`
	// MaxBackoff caps the retry delay (Postfix maximal_backoff_time 4000s).
	MaxBackoff Duration `toml:"max_backoff" json:"max_backoff"`
	// Concurrency is the number of deliveries in flight at once.
	Concurrency int `toml:"concurrency" json:"concurrency"`
	// MaxLifetime: how long a message is retried before the remaining
	// recipients are returned to the sender (Postfix
	// maximal_queue_lifetime 5d; mxedge 3d, see shared/PRINCIPLES.md).
	MaxLifetime Duration `toml:"maximal_lifetime" json:"maximal_lifetime"`
	// BounceLifetime: the same for messages with the null sender, i.e.
	// bounces (Postfix bounce_queue_lifetime).
	BounceLifetime Duration `toml:"bounce_lifetime" json:"bounce_lifetime"`
	// DelayWarning: after this long undelivered, the sender gets one
	// "delayed" notice; "0s" turns it off (Postfix delay_warning_time).
	DelayWarning Duration `toml:"delay_warning" json:"delay_warning"`
	// Postmaster, if set, gets a copy of the failure report of a message
	// that cannot be bounced (null sender); else the failure is only logged.
	Postmaster string `toml:"postmaster" json:"postmaster"`
}

// Duration is a time.Duration written as "300s", "5m", "1h30m" or with a day
// suffix, "3d".
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Size is a byte count written as a plain integer or with a unit: "10MB"
// (10^6), "25MiB" (2^20), "512KiB", "1GiB".
type Size int64
