// Package config loads and validates mxedge's TOML configuration.
//
// One file configures one relay; both relays of an MX-10 pair run the same
// file. Loading is strict: an unknown key (a typo such as relay_domian) or a
// value of the wrong type is an error that names the file and line, and
// semantic validation names the key and what it allows; one Parse reports
// all of them, sorted by line (only a TOML syntax error ends the check
// early, see Parse). Defaults follow
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
	// DataDir holds the queue database and spool, the recipient
	// verification cache (verify.db) and the control socket.
	DataDir string `toml:"data_dir" json:"data_dir"`

	// Listeners are the SMTP listeners, each of a kind (profile): "mx",
	// "submission" or "submissions".
	Listeners []Listener `toml:"listener" json:"listener"`

	// RelayDomains are the domains the MX listener accepts mail for
	// (Postfix: relay_domains). Stored lowercased, IDNs as A-labels,
	// no trailing dot.
	RelayDomains []string `toml:"relay_domains" json:"relay_domains"`
	// CaseSensitiveDomains are relay domains whose local parts are
	// case-sensitive: elsewhere recipients of one message that differ
	// only in the case of the local part are one recipient. Same normal
	// form as RelayDomains.
	CaseSensitiveDomains []string `toml:"case_sensitive_domains" json:"case_sensitive_domains"`
	// Routes maps a domain (same normal form as RelayDomains) to a next hop
	// "host:port" used as is, without MX lookup (Postfix transport_maps
	// with smtp:[host]:port), or an LMTP next hop "lmtp:host:port" or
	// "lmtp:unix:/path" (RFC 2033). Every relay domain needs a route until
	// MX routing exists.
	Routes map[string]string `toml:"routes" json:"routes"`

	Limits   Limits   `toml:"limits" json:"limits"`
	Timeouts Timeouts `toml:"timeouts" json:"timeouts"`
	Queue    Queue    `toml:"queue" json:"queue"`

	// DNS configures the one resolver every stage uses.
	DNS DNS `toml:"dns" json:"dns"`
	// Delivery tunes the outbound SMTP client (package delivery).
	Delivery Delivery `toml:"delivery" json:"delivery"`
	// TLSPolicy overrides Delivery.DefaultTLSPolicy for single destination
	// domains (same normal form as RelayDomains): "none", "may",
	// "encrypt", "verify" or "dane". Postfix: smtp_tls_policy_maps.
	TLSPolicy map[string]string `toml:"tls_policy" json:"tls_policy"`

	// Verify tunes recipient verification (package verifycache): SMTP
	// probes to a relay domain's next hop, answered at RCPT time from a
	// cache. Postfix: reject_unverified_recipient and verify(8).
	Verify Verify `toml:"verify" json:"verify"`
	// VerifyDomains overrides Verify.Mode for single relay domains; keys
	// in the same normal form as RelayDomains, each a relay domain.
	// (A top-level table rather than [verify.domains]: a relay domain's
	// policy sits next to its route.)
	VerifyDomains map[string]VerifyDomain `toml:"verify_domains" json:"verify_domains"`

	// Auth configures SASL authentication on the submission listeners
	// (package auth).
	Auth Auth `toml:"auth" json:"auth"`
	// Submission holds the per-user limits of the submission listeners.
	Submission Submission `toml:"submission" json:"submission"`
	// DKIMSign are the DKIM signing keys (package submission): mail from
	// the submission listeners and the relay's own reports are signed
	// with the keys of their From: domain, after the queue.
	DKIMSign []DKIMSign `toml:"dkim_sign" json:"dkim_sign"`
	// Milters are mail filters (rspamd, clamav-milter) asked about the
	// mail of the listener kinds they name, in order. For "mx" they run
	// in the session, after DATA and before the reply (policy.Milter:
	// nothing refused is queued); for the submission kinds after the
	// queue, before the first delivery attempt (submission.Milter).
	Milters []Milter `toml:"milter" json:"milter"`

	// Message authentication of the mx listeners (config/msgauth.go).
	AuthResults AuthResults `toml:"auth_results" json:"auth_results"`
	SPF         SPF         `toml:"spf" json:"spf"`
	DKIMVerify  DKIMVerify  `toml:"dkim_verify" json:"dkim_verify"`
	DMARC       DMARC       `toml:"dmarc" json:"dmarc"`

	// Greylist is greylisting on the MX listeners (off by default).
	Greylist Greylist `toml:"greylist" json:"greylist"`

	// Admin is the [admin] table: the operator's HTTP endpoint.
	Admin Admin `toml:"admin" json:"admin"`
}

// Greylist is the [greylist] table (package greylist).
type Greylist struct {
	// Enabled turns greylisting on for every MX listener [false].
	Enabled bool `toml:"enabled" json:"enabled"`
	// Delay before a retry of a new triplet is accepted [5m].
	Delay Duration `toml:"delay" json:"delay"`
	// RetryWindow after Delay in which the retry must come [1d].
	RetryWindow Duration `toml:"retry_window" json:"retry_window"`
	// PassTTL: how long a passed triplet (and an allowlisted client
	// network) is remembered after its last use [36d].
	PassTTL Duration `toml:"pass_ttl" json:"pass_ttl"`
	// AutoAllowlist: passed triplets after which a client network is no
	// longer greylisted [5]; 0: never.
	AutoAllowlist int `toml:"auto_allowlist" json:"auto_allowlist"`
}

// Admin is the [admin] table.
type Admin struct {
	// HTTP is the "host:port" of /metrics (Prometheus) and /healthz;
	// "" (the default): off. Bind it to a loopback or management
	// address: it is not authenticated.
	HTTP string `toml:"http" json:"http"`
}

// Milter is one [[milter]].
type Milter struct {
	// Name in logs; default "milter<N>".
	Name string `toml:"name" json:"name"`
	// Address: "inet:host:port", "inet6:[addr]:port" or "unix:/path".
	Address string `toml:"address" json:"address"`
	// Kinds are the listener kinds whose mail the filter sees.
	Kinds []string `toml:"kinds" json:"kinds"`
	// Timeouts, as Postfix's milter_connect_timeout,
	// milter_command_timeout and milter_content_timeout.
	ConnectTimeout Duration `toml:"connect_timeout" json:"connect_timeout"`
	CommandTimeout Duration `toml:"command_timeout" json:"command_timeout"`
	ContentTimeout Duration `toml:"content_timeout" json:"content_timeout"`
	// DefaultAction when the filter cannot be asked: "tempfail", "accept"
	// or "reject" (Postfix milter_default_action).
	DefaultAction string `toml:"default_action" json:"default_action"`
}

// Auth is the [auth] table.
type Auth struct {
	// Backend: "file" (UsersFile, managed with mxedge user) or "dovecot"
	// (Dovecot's auth socket, DovecotSocket).
	Backend string `toml:"backend" json:"backend"`
	// UsersFile is the users file of the "file" backend (Dovecot
	// passwd-file format).
	UsersFile string `toml:"users_file" json:"users_file"`
	// DovecotSocket is the path of Dovecot's auth-client socket.
	DovecotSocket string `toml:"dovecot_socket" json:"dovecot_socket"`
	// LoginMap lists the sender addresses of each Dovecot login; "": a
	// login that is an address may send as itself.
	LoginMap string `toml:"login_map" json:"login_map"`
	// FailureDelay: the delay of an AUTH reply to a client past
	// FailuresSlow failures (and to a user name attacked from many
	// networks).
	FailureDelay Duration `toml:"failure_delay" json:"failure_delay"`
	// FailuresSlow, FailuresLockout: failures of one client network
	// within FailureWindow after which replies are delayed, and at which
	// it gets 421 and is locked out of AUTH for Lockout.
	FailuresSlow    int      `toml:"failures_slow" json:"failures_slow"`
	FailuresLockout int      `toml:"failures_lockout" json:"failures_lockout"`
	FailureWindow   Duration `toml:"failure_window" json:"failure_window"`
	Lockout         Duration `toml:"lockout" json:"lockout"`
}

// Submission is the [submission] table: per-user limits (0: none).
type Submission struct {
	MessagesPerHour   int `toml:"messages_per_hour" json:"messages_per_hour"`
	MessagesPerDay    int `toml:"messages_per_day" json:"messages_per_day"`
	RecipientsPerHour int `toml:"recipients_per_hour" json:"recipients_per_hour"`
	RecipientsPerDay  int `toml:"recipients_per_day" json:"recipients_per_day"`
	// OverLimit: what a user over a limit gets: "defer" (450 4.7.1) or
	// "hold" (accepted and queued on hold for review).
	OverLimit string `toml:"over_limit" json:"over_limit"`
}

// DKIMSign is one [[dkim_sign]] key.
type DKIMSign struct {
	Domain   string `toml:"domain" json:"domain"`
	Selector string `toml:"selector" json:"selector"`
	KeyFile  string `toml:"key_file" json:"key_file"`
}

// Verify is the [verify] table: recipient verification for the relay
// domains on the MX listener (never for senders, never on submission).
type Verify struct {
	// Mode of every relay domain without an entry in VerifyDomains:
	// "probe" (default: ask the domain's next hop) or "off".
	Mode string `toml:"mode" json:"mode"`
	// ProbeSender is the MAIL FROM of probes: an address, "<>" for the
	// null sender, or "" for double-bounce@<hostname> (Postfix
	// address_verify_sender).
	ProbeSender string `toml:"probe_sender" json:"probe_sender"`
	// PositiveTTL: how long an address the next hop accepted stays known,
	// counted from the last successful probe (Postfix
	// address_verify_positive_expire_time 31d).
	PositiveTTL Duration `toml:"positive_ttl" json:"positive_ttl"`
	// PositiveRefresh: a known address used after this age is probed again
	// in the background; the answer never waits for it (Postfix
	// address_verify_positive_refresh_time 7d).
	PositiveRefresh Duration `toml:"positive_refresh" json:"positive_refresh"`
	// NegativeTTL: how long an address the next hop refused stays unknown
	// (Postfix address_verify_negative_expire_time 3d; hours here, so new
	// mailboxes work soon).
	NegativeTTL Duration `toml:"negative_ttl" json:"negative_ttl"`
	// TempfailTTL: how long a probe that failed temporarily is remembered
	// (in memory), so that a down next hop is not probed per RCPT.
	TempfailTTL Duration `toml:"tempfail_ttl" json:"tempfail_ttl"`
	// InlineWait bounds how long RCPT waits for a probe before answering
	// 450 (Postfix address_verify_poll_count x poll_delay).
	InlineWait Duration `toml:"inline_wait" json:"inline_wait"`
	// ProbeTimeout bounds one probe dialogue, connect to RSET.
	ProbeTimeout Duration `toml:"probe_timeout" json:"probe_timeout"`
	// ProbeConcurrency: probes in flight at once per next hop.
	ProbeConcurrency int `toml:"probe_concurrency" json:"probe_concurrency"`
	// ProbeRate: probes started per second per next hop, at most.
	ProbeRate int `toml:"probe_rate" json:"probe_rate"`
	// DictionaryLimit: after this many unknown recipients from one client
	// IP within DictionaryWindow, that client triggers no more probes and
	// every refusal to it is delayed by DictionaryDelay.
	DictionaryLimit int `toml:"dictionary_limit" json:"dictionary_limit"`
	// DictionaryDisconnect: at this many, the rest of the client's
	// transaction is deferred (450 4.7.1), its session ends with 421
	// after the transaction, and it stays refused for the rest of the
	// window (except known addresses).
	DictionaryDisconnect int `toml:"dictionary_disconnect" json:"dictionary_disconnect"`
	// DictionaryWindow: the counting period per client IP.
	DictionaryWindow Duration `toml:"dictionary_window" json:"dictionary_window"`
	// DictionaryDelay: added before each refusal once over the limit.
	DictionaryDelay Duration `toml:"dictionary_delay" json:"dictionary_delay"`
	// CatchAllInterval: how often each probed domain is tested with a
	// random nonexistent address; "0s" turns the test off.
	CatchAllInterval Duration `toml:"catchall_interval" json:"catchall_interval"`
}

// VerifyDomain is the verification policy of one relay domain.
type VerifyDomain struct {
	// Mode: "probe", "off", or "list" (recipients from List only).
	Mode string `toml:"mode" json:"mode"`
	// List is the recipient list file of mode "list": one local part or
	// address per line, # comments.
	List string `toml:"list,omitempty" json:"list,omitempty"`
}

// Listener is one SMTP listening socket.
type Listener struct {
	// Name appears in logs; default: the kind.
	Name string `toml:"name" json:"name"`
	// Kind of listener, the profile its defaults and policy chain come
	// from: "mx" (port 25 service, no AUTH, relay domains only),
	// "submission" (port 587, STARTTLS then AUTH, RFC 6409) or
	// "submissions" (port 465, implicit TLS then AUTH, RFC 8314).
	Kind string `toml:"kind" json:"kind"`
	// Address is "host:port", e.g. "0.0.0.0:25" or "127.0.0.1:2525".
	Address string `toml:"address" json:"address"`
	// BareLineEndings is the SMTP smuggling policy for bare CR and bare LF
	// in message data: "reject" (default for mx: 550 in session) or
	// "normalize" (bare LF becomes CRLF, a stray CR becomes a space).
	BareLineEndings string `toml:"bare_line_endings" json:"bare_line_endings"`
	// MaxSessions bounds the listener's concurrent sessions, its own
	// budget of connections and goroutines: a flood on one listener cannot
	// take the sessions of another. Beyond it a client gets 421 at once.
	// Default: 1000 for "mx", 200 for the submission kinds.
	MaxSessions int `toml:"max_sessions" json:"max_sessions"`
	// TLSCert and TLSKey are the listener's certificate chain and key
	// files (PEM), paired by position; more than one pair (RSA and ECDSA)
	// lets each client get the one it supports. With them an MX listener
	// offers STARTTLS (RFC 3207). Re-read when they change and on SIGHUP.
	TLSCert []string `toml:"tls_cert" json:"tls_cert"`
	TLSKey  []string `toml:"tls_key" json:"tls_key"`
	// TLSMinVersion is the lowest TLS version accepted: "1.0", "1.1",
	// "1.2" or "1.3". Default "1.2".
	TLSMinVersion string `toml:"tls_min_version" json:"tls_min_version"`
	// HideClientIP: the Received header of submitted mail leaves out the
	// client's address, name and HELO (privacy of home users). Only for
	// the submission kinds.
	HideClientIP bool `toml:"hide_client_ip" json:"hide_client_ip"`

	// Per-client limits (Postfix anvil, smtpd_client_*_limit), a client
	// being an IPv4 address or an IPv6 /64: concurrent sessions, new
	// connections per minute, MAIL commands per minute, RCPT commands per
	// minute; 0: no limit. Over one: 421 4.7.0 and close.
	ClientSessions       int `toml:"client_sessions" json:"client_sessions"`
	ClientConnectionRate int `toml:"client_connection_rate" json:"client_connection_rate"`
	ClientMessageRate    int `toml:"client_message_rate" json:"client_message_rate"`
	ClientRecipientRate  int `toml:"client_recipient_rate" json:"client_recipient_rate"`
	// Error limits of a session (Postfix smtpd_soft_error_limit,
	// smtpd_hard_error_limit, smtpd_error_sleep_time,
	// smtpd_junk_command_limit).
	SoftErrorLimit   int      `toml:"soft_error_limit" json:"soft_error_limit"`
	HardErrorLimit   int      `toml:"hard_error_limit" json:"hard_error_limit"`
	ErrorSleep       Duration `toml:"error_sleep" json:"error_sleep"`
	JunkCommandLimit int      `toml:"junk_command_limit" json:"junk_command_limit"`
	// SessionTimeLimit and SessionMessageLimit cap one session.
	SessionTimeLimit    Duration `toml:"session_time_limit" json:"session_time_limit"`
	SessionMessageLimit int      `toml:"session_message_limit" json:"session_message_limit"`
	// Allowlist is a CIDR list file of trusted clients: no limits, no
	// pregreet test, no client, HELO or sender checks. "": none.
	Allowlist string `toml:"allowlist" json:"allowlist"`
	// PregreetWait is the pregreet test's wait (Postfix
	// postscreen_greet_wait), "0s": off; PregreetTTL how long a client
	// that passed is not tested again (postscreen_greet_ttl).
	PregreetWait Duration `toml:"pregreet_wait" json:"pregreet_wait"`
	PregreetTTL  Duration `toml:"pregreet_ttl" json:"pregreet_ttl"`
	// LookupTimeout bounds each lookup started at connect: the reverse
	// DNS of the client and each DNSBL query (postscreen_dnsbl_timeout).
	LookupTimeout Duration `toml:"lookup_timeout" json:"lookup_timeout"`
	// Client identity checks, each "off", "log", "defer" or "reject".
	ClientNoPTR         string `toml:"client_no_ptr" json:"client_no_ptr"`
	ClientPTRMismatch   string `toml:"client_ptr_mismatch" json:"client_ptr_mismatch"`
	HeloInvalid         string `toml:"helo_invalid" json:"helo_invalid"`
	HeloIsUs            string `toml:"helo_is_us" json:"helo_is_us"`
	HeloUnknown         string `toml:"helo_unknown" json:"helo_unknown"`
	SenderUnknownDomain string `toml:"sender_unknown_domain" json:"sender_unknown_domain"`
	// ClientAccess and SenderAccess are access files (Postfix
	// check_client_access, check_sender_access); "": none.
	ClientAccess string `toml:"client_access" json:"client_access"`
	SenderAccess string `toml:"sender_access" json:"sender_access"`
	// DNSBLSites are weighted DNS block/allow lists in Postfix's
	// postscreen_dnsbl_sites syntax; DNSBLThreshold the score that
	// refuses a client (postscreen_dnsbl_threshold).
	DNSBLSites     []string `toml:"dnsbl_sites" json:"dnsbl_sites"`
	DNSBLThreshold int      `toml:"dnsbl_threshold" json:"dnsbl_threshold"`
}

// Listener kinds.
const (
	KindMX          = "mx"
	KindSubmission  = "submission"
	KindSubmissions = "submissions"
)

// kindDefaults are the defaults of a listener kind. An MX listener gets
// the edge defenses of Postfix's postscreen, anvil and smtpd restrictions;
// the submission kinds (authenticated clients) the limits only.
var kindDefaults = map[string]Listener{
	KindMX: withLimits(Listener{BareLineEndings: "reject", MaxSessions: 1000, TLSMinVersion: "1.2",
		PregreetWait: Duration(2 * time.Second), PregreetTTL: Duration(day),
		ClientNoPTR: "reject", ClientPTRMismatch: "log", HeloInvalid: "reject", HeloIsUs: "reject",
		HeloUnknown: "log", SenderUnknownDomain: "reject", DNSBLThreshold: 3}),
	KindSubmission:  withLimits(submissionDefaults()),
	KindSubmissions: withLimits(submissionDefaults()),
}

func submissionDefaults() Listener {
	return Listener{BareLineEndings: "reject", MaxSessions: 200, TLSMinVersion: "1.2", PregreetTTL: Duration(day),
		ClientNoPTR: "off", ClientPTRMismatch: "off", HeloInvalid: "off", HeloIsUs: "off",
		HeloUnknown: "off", SenderUnknownDomain: "off", DNSBLThreshold: 3}
}

// withLimits adds the limits every kind has by default (Postfix's
// defaults where it has them).
func withLimits(l Listener) Listener {
	l.ClientSessions = 50        // smtpd_client_connection_count_limit
	l.ClientConnectionRate = 120 // per minute
	l.ClientMessageRate = 600    // per minute
	l.ClientRecipientRate = 3000 // per minute
	l.SoftErrorLimit = 10        // smtpd_soft_error_limit
	l.HardErrorLimit = 20        // smtpd_hard_error_limit
	l.ErrorSleep = Duration(time.Second)
	l.JunkCommandLimit = 100 // smtpd_junk_command_limit
	l.SessionTimeLimit = Duration(30 * time.Minute)
	l.SessionMessageLimit = 1000
	l.LookupTimeout = Duration(5 * time.Second)
	l.DNSBLSites = []string{}
	return l
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
	// FreeSpaceReserve: new mail is refused (452 4.3.1 at MAIL and DATA)
	// while the data directory has less free space than this; delivery
	// goes on. 0: 1.5 x [limits] message_size (Postfix's rule).
	FreeSpaceReserve Size `toml:"free_space_reserve" json:"free_space_reserve"`
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

// DNS is the [dns] table: the recursive servers the relay asks.
type DNS struct {
	// Servers are "ip" or "ip:port" (port 53 if missing), asked in order;
	// empty: those of /etc/resolv.conf. DANE needs a validating resolver
	// here (it trusts the AD bit).
	Servers []string `toml:"servers" json:"servers"`
	// Timeout bounds each exchange with one server.
	Timeout Duration `toml:"timeout" json:"timeout"`
}

// Delivery is the [delivery] table: the outbound SMTP client.
type Delivery struct {
	// SourceAddress is the local IP address outbound connections are
	// bound to, so that the outbound IP matches the PTR of Hostname;
	// "" lets the system choose. Postfix: smtp_bind_address.
	SourceAddress string `toml:"source_address" json:"source_address"`
	// MXPort is the TCP port of MX hosts (RFC 5321: 25). Only tests and
	// lab setups change it.
	MXPort int `toml:"mx_port" json:"mx_port"`
	// Smarthost, if set, is the next hop "host:port" of every domain
	// without a route, instead of its MX hosts. Postfix: relayhost.
	Smarthost string `toml:"smarthost" json:"smarthost"`
	// SmarthostAuthFile holds "user:password" for SASL PLAIN to the
	// smarthost; "" means no AUTH.
	SmarthostAuthFile string `toml:"smarthost_auth_file" json:"smarthost_auth_file"`
	// SmarthostTLS: TLS is always required towards the smarthost;
	// "verify" (certificate checked against the system roots and the
	// smarthost's name) or "encrypt" (not checked).
	SmarthostTLS string `toml:"smarthost_tls" json:"smarthost_tls"`
	// MaxRcptsPerTransaction: recipients per SMTP transaction (Postfix
	// smtp_destination_recipient_limit 50).
	MaxRcptsPerTransaction int `toml:"max_rcpts_per_transaction" json:"max_rcpts_per_transaction"`
	// DestinationConcurrency: connections in use at once per destination
	// (Postfix default_destination_concurrency_limit 20).
	DestinationConcurrency int `toml:"destination_concurrency" json:"destination_concurrency"`
	// InitialDestinationConcurrency: the slow-start window of a
	// destination (Postfix initial_destination_concurrency 5).
	InitialDestinationConcurrency int `toml:"initial_destination_concurrency" json:"initial_destination_concurrency"`
	// Concurrency: outbound connections in use at once, all destinations.
	Concurrency int `toml:"concurrency" json:"concurrency"`
	// DefaultTLSPolicy of every destination without an entry in
	// [tls_policy]: "none", "may", "encrypt", "verify" or "dane".
	// Postfix: smtp_tls_security_level.
	DefaultTLSPolicy string `toml:"default_tls_policy" json:"default_tls_policy"`
	// MTASTS: honour the MTA-STS policies of destination domains
	// (RFC 8461; cached in <data_dir>/mtasts.json).
	MTASTS bool `toml:"mta_sts" json:"mta_sts"`
	// DANE: honour the DNSSEC-signed TLSA records of MX hosts (RFC 7672);
	// needs a validating resolver in [dns].
	DANE bool `toml:"dane" json:"dane"`
}

// Duration is a time.Duration written as "300s", "5m", "1h30m" or with a day
// suffix, "3d".
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Size is a byte count written as a plain integer or with a unit: "10MB"
// (10^6), "25MiB" (2^20), "512KiB", "1GiB".
type Size int64

// TLSVersions maps the values of tls_min_version to crypto/tls versions.
var TLSVersions = map[string]uint16{"1.0": 0x0301, "1.1": 0x0302, "1.2": 0x0303, "1.3": 0x0304}
