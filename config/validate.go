package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/mxedge/mxedge/internal/domainname"
	"github.com/mxedge/mxedge/policy"
)

// Validate checks the effective configuration and returns all problems
// joined (errors.Join), one per line, each naming the key, its value and
// what is allowed, e.g.
//
//	relay_domains[1] "exa mple.org": not a valid domain name: ...
//
// Domains must be in normal form (lowercase, A-labels, no trailing dot);
// Parse normalizes them before it validates.
func (c *Config) Validate() error {
	return errors.Join(c.problems()...)
}

func (c *Config) problems() []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}

	if err := checkHostname(c.Hostname); err != nil {
		add("hostname %q: not a valid host name: %v", c.Hostname, err)
	}
	if c.DataDir == "" {
		add(`data_dir "": must not be empty`)
	}
	c.msgAuthProblems(add)

	if len(c.Listeners) == 0 {
		add("listener: at least one [[listener]] is needed")
	}
	addrs := map[string]int{}
	for i, l := range c.Listeners {
		key := fmt.Sprintf("listener[%d]", i)
		if _, ok := kindDefaults[l.Kind]; !ok {
			add(`%s.kind %q: must be "mx", "submission" or "submissions"`, key, l.Kind)
		}
		if _, ok := TLSVersions[l.TLSMinVersion]; !ok && l.TLSMinVersion != "" {
			add(`%s.tls_min_version %q: must be "1.0", "1.1", "1.2" or "1.3"`, key, l.TLSMinVersion)
		}
		if len(l.TLSCert) != len(l.TLSKey) {
			add("%s.tls_cert has %d files, tls_key %d: they are pairs, one key per certificate", key, len(l.TLSCert), len(l.TLSKey))
		}
		for j, f := range append(append([]string(nil), l.TLSCert...), l.TLSKey...) {
			if f == "" {
				add("%s.tls_cert/tls_key: file name %d is empty", key, j)
			}
		}
		if l.MaxSessions < 0 {
			add("%s.max_sessions %d: must be at least 1 (0 or absent: the kind's default)", key, l.MaxSessions)
		}
		if l.HideClientIP && l.Kind == KindMX {
			add("%s.hide_client_ip: only for the submission kinds (an MX records where mail came from)", key)
		}
		if (l.Kind == KindSubmission || l.Kind == KindSubmissions) && len(l.TLSCert) == 0 {
			add("%s: kind %q needs tls_cert and tls_key (AUTH is offered only over TLS)", key, l.Kind)
		}
		if l.BareLineEndings != "reject" && l.BareLineEndings != "normalize" {
			add(`%s.bare_line_endings %q: must be "reject" or "normalize"`, key, l.BareLineEndings)
		}
		errs = append(errs, listenerDefenseProblems(key, l)...)
		norm, err := checkAddress(l.Address, false)
		if err != nil {
			add("%s.address %q: %v", key, l.Address, err)
			continue
		}
		if j, dup := addrs[norm]; dup {
			add("%s.address %q: same address as listener[%d]", key, l.Address, j)
		} else {
			addrs[norm] = i
		}
	}

	seen := map[string]int{}
	for i, d := range c.RelayDomains {
		key := fmt.Sprintf("relay_domains[%d] %q", i, d)
		if err := checkNormalDomain(d); err != nil {
			add("%s: %v", key, err)
			continue
		}
		if j, dup := seen[d]; dup {
			add("%s: listed twice (see relay_domains[%d])", key, j)
			continue
		}
		seen[d] = i
		if _, ok := c.Routes[d]; !ok {
			add(`%s: no route; add routes.%q = "host:port" (its MX points at this relay: delivery by MX would loop)`, key, d)
		}
	}

	for _, d := range sortedKeys(c.Routes) {
		key := fmt.Sprintf("routes.%q", d)
		if err := checkNormalDomain(d); err != nil {
			n, nerr := normalizeDomain(d)
			if _, dup := c.Routes[n]; nerr == nil && dup {
				err = fmt.Errorf("same domain as routes.%q", n)
			}
			add("%s: %v", key, err)
		}
		if err := checkRoute(c.Routes[d]); err != nil {
			add("%s = %q: %v", key, c.Routes[d], err)
		}
	}

	for i, d := range c.CaseSensitiveDomains {
		key := fmt.Sprintf("case_sensitive_domains[%d] %q", i, d)
		if err := checkNormalDomain(d); err != nil {
			add("%s: %v", key, err)
		} else if _, ok := seen[d]; !ok {
			add("%s: not in relay_domains", key)
		}
	}

	if c.Limits.MessageSize <= 0 {
		add("limits.message_size %d: must be greater than 0", c.Limits.MessageSize)
	}
	if c.Limits.Recipients < 1 {
		add("limits.recipients %d: must be at least 1", c.Limits.Recipients)
	}

	for _, d := range []struct {
		key string
		v   Duration
	}{
		{"timeouts.command", c.Timeouts.Command},
		{"timeouts.data_block", c.Timeouts.DataBlock},
		{"timeouts.connect", c.Timeouts.Connect},
		{"timeouts.reply", c.Timeouts.Reply},
		{"timeouts.data_done", c.Timeouts.DataDone},
		{"timeouts.shutdown", c.Timeouts.Shutdown},
		{"queue.min_backoff", c.Queue.MinBackoff},
		{"queue.max_backoff", c.Queue.MaxBackoff},
		{"queue.maximal_lifetime", c.Queue.MaxLifetime},
		{"queue.bounce_lifetime", c.Queue.BounceLifetime},
	} {
		if d.v <= 0 {
			add("%s %q: must be greater than 0", d.key, d.v)
		}
	}
	if c.Queue.MaxBackoff > 0 && c.Queue.MinBackoff > c.Queue.MaxBackoff {
		add("queue.min_backoff %q: must not be greater than queue.max_backoff %q", c.Queue.MinBackoff, c.Queue.MaxBackoff)
	}
	if c.Queue.DelayWarning < 0 {
		add("queue.delay_warning %q: must be 0 (off) or positive", c.Queue.DelayWarning)
	}
	if p := c.Queue.Postmaster; p != "" && (strings.Count(p, "@") != 1 || strings.HasPrefix(p, "@") || strings.HasSuffix(p, "@") || strings.ContainsAny(p, " <>\"\r\n")) {
		add("queue.postmaster %q: must be an address local@domain, or empty", p)
	}
	if c.Queue.Concurrency < 1 {
		add("queue.concurrency %d: must be at least 1", c.Queue.Concurrency)
	}
	if a := c.Admin.HTTP; a != "" {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			add("admin.http %q: must be host:port, or empty (off)", a)
		}
	}
	errs = append(errs, c.submissionProblems()...)
	errs = append(errs, c.verifyProblems(seen)...)
	errs = append(errs, c.deliveryProblems()...)
	return errs
}

// listenerDefenseProblems checks a listener's limits, pregreet, client
// checks and DNSBL keys; key is "listener[i]".
func listenerDefenseProblems(key string, l Listener) []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(key+"."+format, args...))
	}
	for _, v := range []struct {
		name string
		n    int
	}{
		{"client_sessions", l.ClientSessions}, {"client_connection_rate", l.ClientConnectionRate},
		{"client_message_rate", l.ClientMessageRate}, {"client_recipient_rate", l.ClientRecipientRate},
	} {
		if v.n < 0 {
			add("%s %d: must be 0 (no limit) or more", v.name, v.n)
		}
	}
	for _, v := range []struct {
		name string
		n    int
	}{
		{"soft_error_limit", l.SoftErrorLimit}, {"hard_error_limit", l.HardErrorLimit},
		{"junk_command_limit", l.JunkCommandLimit}, {"session_message_limit", l.SessionMessageLimit},
	} {
		if v.n < 1 {
			add("%s %d: must be at least 1", v.name, v.n)
		}
	}
	if l.SoftErrorLimit > l.HardErrorLimit && l.HardErrorLimit >= 1 {
		add("soft_error_limit %d: must not be greater than hard_error_limit %d", l.SoftErrorLimit, l.HardErrorLimit)
	}
	for _, v := range []struct {
		name string
		d    Duration
		zero bool // 0 allowed
	}{
		{"error_sleep", l.ErrorSleep, true}, {"session_time_limit", l.SessionTimeLimit, false},
		{"pregreet_wait", l.PregreetWait, true}, {"pregreet_ttl", l.PregreetTTL, false},
		{"lookup_timeout", l.LookupTimeout, false},
	} {
		switch {
		case v.zero && v.d < 0:
			add("%s %q: must be 0 or positive", v.name, v.d)
		case !v.zero && v.d <= 0:
			add("%s %q: must be greater than 0", v.name, v.d)
		}
	}
	for _, v := range []struct{ name, a string }{
		{"client_no_ptr", l.ClientNoPTR}, {"client_ptr_mismatch", l.ClientPTRMismatch},
		{"helo_invalid", l.HeloInvalid}, {"helo_is_us", l.HeloIsUs}, {"helo_unknown", l.HeloUnknown},
		{"sender_unknown_domain", l.SenderUnknownDomain},
	} {
		if _, err := policy.ParseAction(v.a); err != nil {
			add("%s %v", v.name, err)
		}
	}
	for i, spec := range l.DNSBLSites {
		if _, err := policy.ParseDNSBLSite(spec); err != nil {
			add("dnsbl_sites[%d] %v", i, err)
		}
	}
	if l.DNSBLThreshold < 1 {
		add("dnsbl_threshold %d: must be at least 1", l.DNSBLThreshold)
	}
	return errs
}

// tlsPolicies are the values of delivery.default_tls_policy and
// [tls_policy] (Postfix smtp_tls_security_level names).
var tlsPolicies = []string{"none", "may", "encrypt", "verify", "dane"}

// deliveryProblems checks [dns], [delivery] and [tls_policy].
func (c *Config) deliveryProblems() []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	for i, s := range c.DNS.Servers {
		host := s
		if h, _, err := net.SplitHostPort(s); err == nil {
			if _, err := checkAddress(s, true); err != nil {
				add("dns.servers[%d] %q: %v", i, s, err)
				continue
			}
			host = h
		}
		if !isIP(strings.Trim(host, "[]")) {
			add(`dns.servers[%d] %q: must be an IP address, optionally with a port ("192.0.2.53", "[2001:db8::53]:53")`, i, s)
		}
	}
	if c.DNS.Timeout <= 0 {
		add("dns.timeout %q: must be greater than 0", c.DNS.Timeout)
	}
	dl := c.Delivery
	if a := dl.SourceAddress; a != "" && !isIP(a) {
		add(`delivery.source_address %q: must be an IP address of this host, or "" (the system chooses)`, a)
	}
	if dl.MXPort < 1 || dl.MXPort > 65535 {
		add("delivery.mx_port %d: must be a number from 1 to 65535", dl.MXPort)
	}
	if dl.Smarthost != "" {
		if _, err := checkAddress(dl.Smarthost, true); err != nil {
			add("delivery.smarthost %q: %v", dl.Smarthost, err)
		}
	} else if dl.SmarthostAuthFile != "" {
		add("delivery.smarthost_auth_file %q: only with delivery.smarthost", dl.SmarthostAuthFile)
	}
	if dl.SmarthostTLS != "verify" && dl.SmarthostTLS != "encrypt" {
		add(`delivery.smarthost_tls %q: must be "verify" or "encrypt" (TLS is always required towards the smarthost)`, dl.SmarthostTLS)
	}
	if dl.MaxRcptsPerTransaction < 1 {
		add("delivery.max_rcpts_per_transaction %d: must be at least 1", dl.MaxRcptsPerTransaction)
	}
	if dl.DestinationConcurrency < 1 {
		add("delivery.destination_concurrency %d: must be at least 1", dl.DestinationConcurrency)
	}
	if dl.InitialDestinationConcurrency < 1 || dl.DestinationConcurrency >= 1 && dl.InitialDestinationConcurrency > dl.DestinationConcurrency {
		add("delivery.initial_destination_concurrency %d: must be from 1 to delivery.destination_concurrency (%d)",
			dl.InitialDestinationConcurrency, dl.DestinationConcurrency)
	}
	if dl.Concurrency < 1 {
		add("delivery.concurrency %d: must be at least 1", dl.Concurrency)
	}
	allowed := `must be "none", "may", "encrypt", "verify" or "dane"`
	if !slices.Contains(tlsPolicies, dl.DefaultTLSPolicy) {
		add("delivery.default_tls_policy %q: %s", dl.DefaultTLSPolicy, allowed)
	}
	for _, d := range sortedKeys(c.TLSPolicy) {
		key := fmt.Sprintf("tls_policy.%q", d)
		if err := checkNormalDomain(d); err != nil {
			n, nerr := normalizeDomain(d)
			if _, dup := c.TLSPolicy[n]; nerr == nil && dup {
				err = fmt.Errorf("same domain as tls_policy.%q", n)
			}
			add("%s: %v", key, err)
		}
		if !slices.Contains(tlsPolicies, c.TLSPolicy[d]) {
			add("%s = %q: %s", key, c.TLSPolicy[d], allowed)
		}
	}
	return errs
}

// verifyProblems checks [verify] and [verify_domains]; relay holds the
// valid relay domains.
func (c *Config) verifyProblems(relay map[string]int) []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	v := c.Verify
	if v.Mode != "probe" && v.Mode != "off" {
		add(`verify.mode %q: must be "probe" or "off" (a recipient list is set per domain in [verify_domains])`, v.Mode)
	}
	if p := v.ProbeSender; p != "" && p != "<>" && !isAddress(p) {
		add(`verify.probe_sender %q: must be an address local@domain, "<>" (null sender) or empty (double-bounce@hostname)`, p)
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{
		{"verify.positive_ttl", v.PositiveTTL},
		{"verify.positive_refresh", v.PositiveRefresh},
		{"verify.negative_ttl", v.NegativeTTL},
		{"verify.tempfail_ttl", v.TempfailTTL},
		{"verify.inline_wait", v.InlineWait},
		{"verify.probe_timeout", v.ProbeTimeout},
		{"verify.dictionary_window", v.DictionaryWindow},
	} {
		if d.v <= 0 {
			add("%s %q: must be greater than 0", d.key, d.v)
		}
	}
	if v.PositiveRefresh > 0 && v.PositiveRefresh >= v.PositiveTTL {
		add("verify.positive_refresh %q: must be less than verify.positive_ttl %q", v.PositiveRefresh, v.PositiveTTL)
	}
	if v.DictionaryDelay < 0 {
		add("verify.dictionary_delay %q: must be 0 (no delay) or positive", v.DictionaryDelay)
	}
	if v.CatchAllInterval < 0 {
		add("verify.catchall_interval %q: must be 0 (off) or positive", v.CatchAllInterval)
	}
	if v.ProbeConcurrency < 1 {
		add("verify.probe_concurrency %d: must be at least 1", v.ProbeConcurrency)
	}
	if v.ProbeRate < 1 {
		add("verify.probe_rate %d: must be at least 1 (probes per second per next hop)", v.ProbeRate)
	}
	if v.DictionaryLimit < 1 {
		add("verify.dictionary_limit %d: must be at least 1", v.DictionaryLimit)
	}
	if v.DictionaryDisconnect < v.DictionaryLimit {
		add("verify.dictionary_disconnect %d: must be at least verify.dictionary_limit (%d)", v.DictionaryDisconnect, v.DictionaryLimit)
	}

	domains := make([]string, 0, len(c.VerifyDomains))
	for d := range c.VerifyDomains {
		domains = append(domains, d)
	}
	slices.Sort(domains)
	for _, d := range domains {
		vd := c.VerifyDomains[d]
		key := fmt.Sprintf("verify_domains.%q", d)
		if err := checkNormalDomain(d); err != nil {
			n, nerr := normalizeDomain(d)
			if _, dup := c.VerifyDomains[n]; nerr == nil && dup {
				err = fmt.Errorf("same domain as verify_domains.%q", n)
			}
			add("%s: %v", key, err)
		} else if _, ok := relay[d]; !ok {
			add("%s: not in relay_domains (only mail for relay domains is verified)", key)
		}
		switch vd.Mode {
		case "probe", "off":
			if vd.List != "" {
				add(`%s.list %q: only for mode = "list"`, key, vd.List)
			}
		case "list":
			if vd.List == "" {
				add(`%s.list: mode "list" needs a recipient list file`, key)
			}
		default:
			add(`%s.mode %q: must be "probe", "off" or "list"`, key, vd.Mode)
		}
	}
	return errs
}

// isAddress reports whether s looks like local@domain without brackets,
// quotes or white space.
func isAddress(s string) bool {
	return strings.Count(s, "@") == 1 && !strings.HasPrefix(s, "@") && !strings.HasSuffix(s, "@") &&
		!strings.ContainsAny(s, " <>\"\r\n\t")
}

// checkHostname reports why s is not a DNS host name in A-labels: letters,
// digits and hyphens in dot-separated labels of at most 63 octets, at most
// 253 octets in all (RFC 1123 section 2.1, RFC 1035 section 2.3.4), no
// trailing dot, and not an IP address (a name's last label is not numeric).
func checkHostname(s string) error {
	_, err := domainname.Normalize(s, domainname.Options{Hostname: true, ASCII: true})
	return err
}

// normalizeDomain returns the normal form of a domain name: lowercase, IDN
// labels as A-labels (UTS #46 lookup profile, RFC 5890), no trailing dot;
// the same form smtpd compares recipient domains in.
func normalizeDomain(s string) (string, error) {
	return domainname.Normalize(s, domainname.Options{Hostname: true})
}

// checkNormalDomain reports why s is not a valid domain name in normal form.
func checkNormalDomain(s string) error {
	n, err := normalizeDomain(s)
	if err != nil {
		return fmt.Errorf("not a valid domain name: %v", err)
	}
	if n != s {
		return fmt.Errorf("must be written as %q (lowercase, IDN as A-labels)", n)
	}
	return nil
}

// checkRoute checks a [routes] next hop: "host:port" (SMTP), or an LMTP
// next hop (RFC 2033) "lmtp:host:port" or "lmtp:unix:/path/to/socket".
func checkRoute(s string) error {
	rest, lmtp := strings.CutPrefix(s, "lmtp:")
	if !lmtp {
		_, err := checkAddress(s, true)
		return err
	}
	if p, ok := strings.CutPrefix(rest, "unix:"); ok {
		if !strings.HasPrefix(p, "/") {
			return errors.New(`lmtp:unix: needs an absolute socket path ("lmtp:unix:/run/dovecot/lmtp")`)
		}
		return nil
	}
	if _, err := checkAddress(rest, true); err != nil {
		return fmt.Errorf("lmtp: %w", err)
	}
	return nil
}

// checkAddress checks "host:port" or "[host]:port": port numeric 1..65535,
// host an IP address or a host name, empty only when !hostRequired (all
// addresses). It returns a canonical form for finding duplicates.
func checkAddress(s string, hostRequired bool) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			err = errors.New(ae.Err)
		}
		return "", fmt.Errorf(`not "host:port" or "[host]:port": %v`, err)
	}
	if n, err := strconv.Atoi(port); err != nil || !allDigits(port) || n < 1 || n > 65535 {
		return "", fmt.Errorf("port %q: must be a number from 1 to 65535", port)
	}
	switch {
	case host == "" && hostRequired:
		return "", errors.New("host is empty")
	case host == "":
	case isIP(host):
		host = strings.ToLower(host)
	default:
		if err := checkHostname(host); err != nil {
			return "", fmt.Errorf("host %q: neither an IP address nor a host name: %v", host, err)
		}
		host = strings.ToLower(host)
	}
	return net.JoinHostPort(host, port), nil
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s) // accepts IPv6 zones ("fe80::1%eth0")
	return err == nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// submissionProblems checks [auth], [submission] and [[dkim_sign]].
func (c *Config) submissionProblems() []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	a := c.Auth
	switch a.Backend {
	case "file":
		if a.UsersFile == "" {
			add(`auth.users_file "": the "file" backend needs a users file`)
		}
	case "dovecot":
		if a.DovecotSocket == "" {
			add(`auth.dovecot_socket "": the "dovecot" backend needs Dovecot's auth-client socket`)
		}
	default:
		add(`auth.backend %q: must be "file" or "dovecot"`, a.Backend)
	}
	if a.LoginMap != "" && a.Backend != "dovecot" {
		add(`auth.login_map %q: only for backend "dovecot" (the users file holds the senders of its users)`, a.LoginMap)
	}
	if a.FailureDelay < 0 {
		add("auth.failure_delay %q: must be 0 or positive", a.FailureDelay)
	}
	if a.FailuresSlow < 1 {
		add("auth.failures_slow %d: must be at least 1", a.FailuresSlow)
	}
	if a.FailuresLockout <= a.FailuresSlow {
		add("auth.failures_lockout %d: must be greater than auth.failures_slow (%d)", a.FailuresLockout, a.FailuresSlow)
	}
	if a.FailureWindow <= 0 {
		add("auth.failure_window %q: must be greater than 0", a.FailureWindow)
	}
	if a.Lockout <= 0 {
		add("auth.lockout %q: must be greater than 0", a.Lockout)
	}
	s := c.Submission
	for _, v := range []struct {
		key string
		n   int
	}{
		{"submission.messages_per_hour", s.MessagesPerHour}, {"submission.messages_per_day", s.MessagesPerDay},
		{"submission.recipients_per_hour", s.RecipientsPerHour}, {"submission.recipients_per_day", s.RecipientsPerDay},
	} {
		if v.n < 0 {
			add("%s %d: must be 0 (no limit) or positive", v.key, v.n)
		}
	}
	if g := c.Greylist; g.Enabled {
		for _, d := range []struct {
			k string
			v Duration
		}{{"delay", g.Delay}, {"retry_window", g.RetryWindow}, {"pass_ttl", g.PassTTL}} {
			if d.v <= 0 {
				add("greylist.%s %q: must be greater than 0", d.k, d.v)
			}
		}
	}
	if c.Greylist.AutoAllowlist < 0 {
		add("greylist.auto_allowlist %d: must be 0 (never) or positive", c.Greylist.AutoAllowlist)
	}
	for i, m := range c.Milters {
		key := fmt.Sprintf("milter[%d]", i)
		if !milterAddress(m.Address) {
			add(`%s.address %q: must be "inet:host:port", "inet6:[addr]:port" or "unix:/path"`, key, m.Address)
		}
		if len(m.Kinds) == 0 {
			add("%s.kinds: name at least one listener kind", key)
		}
		for _, k := range m.Kinds {
			switch k {
			case KindMX, KindSubmission, KindSubmissions:
			default:
				add(`%s.kinds: %q is not a listener kind ("mx", "submission", "submissions")`, key, k)
			}
		}
		for _, d := range []struct {
			k string
			v Duration
		}{{"connect_timeout", m.ConnectTimeout}, {"command_timeout", m.CommandTimeout}, {"content_timeout", m.ContentTimeout}} {
			if d.v <= 0 {
				add("%s.%s %q: must be greater than 0", key, d.k, d.v)
			}
		}
		if m.DefaultAction != "tempfail" && m.DefaultAction != "accept" && m.DefaultAction != "reject" {
			add(`%s.default_action %q: must be "tempfail", "accept" or "reject"`, key, m.DefaultAction)
		}
	}
	if s.OverLimit != "defer" && s.OverLimit != "hold" {
		add(`submission.over_limit %q: must be "defer" or "hold"`, s.OverLimit)
	}
	seen := map[string]int{}
	for i, k := range c.DKIMSign {
		key := fmt.Sprintf("dkim_sign[%d]", i)
		if err := checkNormalDomain(k.Domain); err != nil {
			add("%s.domain %q: %v", key, k.Domain, err)
		}
		if k.Selector == "" || strings.ContainsAny(k.Selector, " \t;=") || strings.HasPrefix(k.Selector, ".") || strings.HasSuffix(k.Selector, ".") {
			add("%s.selector %q: must be a DNS label (or dot-separated labels)", key, k.Selector)
		}
		if k.KeyFile == "" {
			add("%s.key_file: must name the key file (mxedge dkim keygen writes one)", key)
		}
		id := k.Domain + "/" + k.Selector
		if j, dup := seen[id]; dup {
			add("%s: domain %q selector %q as dkim_sign[%d]", key, k.Domain, k.Selector, j)
		}
		seen[id] = i
	}
	return errs
}

// milterAddress checks Postfix's milter address notation.
func milterAddress(s string) bool {
	kind, rest, ok := strings.Cut(s, ":")
	switch {
	case !ok:
		return false
	case kind == "unix":
		return strings.HasPrefix(rest, "/")
	case kind == "inet" || kind == "inet6":
		_, err := checkAddress(rest, true)
		return err == nil
	}
	return false
}
