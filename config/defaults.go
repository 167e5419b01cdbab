package config

import (
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"
)

// base returns a Config holding every default that does not depend on the
// file, so that decoding the file on top of it overwrites exactly the keys
// the file sets (an explicit 0 stays 0 and fails validation instead of
// silently becoming the default).
func base() Config {
	c := base0()
	msgAuthDefaults(&c)
	return c
}

func base0() Config {
	return Config{
		DataDir: "/var/lib/mxedge",
		Limits: Limits{
			MessageSize: 10240000, // Postfix message_size_limit
			Recipients:  1000,     // Postfix smtpd_recipient_limit
		},
		Timeouts: Timeouts{
			Command:   Duration(5 * time.Minute),
			DataBlock: Duration(3 * time.Minute),
			Connect:   Duration(30 * time.Second),
			Reply:     Duration(5 * time.Minute),
			DataDone:  Duration(10 * time.Minute),
			Shutdown:  Duration(30 * time.Second),
		},
		Queue: Queue{
			MinBackoff:  Duration(300 * time.Second),
			MaxBackoff:  Duration(4000 * time.Second),
			Concurrency: 20,
			// shared/PRINCIPLES.md: 3 days for mail, 1 day for bounces.
			MaxLifetime:    Duration(72 * time.Hour),
			BounceLifetime: Duration(24 * time.Hour),
		},
		Verify: Verify{
			Mode: "probe",
			// shared/PRINCIPLES.md: known addresses ~30 days, so that the
			// relay keeps accepting for known users through a long backend
			// outage; unknown ones only hours.
			PositiveTTL:          Duration(30 * day),
			PositiveRefresh:      Duration(7 * day),
			NegativeTTL:          Duration(3 * time.Hour),
			TempfailTTL:          Duration(time.Minute),
			InlineWait:           Duration(8 * time.Second),
			ProbeTimeout:         Duration(30 * time.Second),
			ProbeConcurrency:     4,
			ProbeRate:            20,
			DictionaryLimit:      20,
			DictionaryDisconnect: 50,
			DictionaryWindow:     Duration(time.Hour),
			DictionaryDelay:      Duration(time.Second),
			CatchAllInterval:     Duration(day),
		},
		VerifyDomains: map[string]VerifyDomain{},
		DNS:           DNS{Servers: []string{}, Timeout: Duration(5 * time.Second)},
		Delivery: Delivery{
			MXPort:                        25,
			SmarthostTLS:                  "verify",
			MaxRcptsPerTransaction:        50, // Postfix smtp_destination_recipient_limit
			DestinationConcurrency:        20, // Postfix default_destination_concurrency_limit
			InitialDestinationConcurrency: 5,  // Postfix initial_destination_concurrency
			Concurrency:                   100,
			DefaultTLSPolicy:              "may",
			MTASTS:                        true,
			DANE:                          true,
		},
		TLSPolicy: map[string]string{},
		Auth: Auth{
			Backend:         "file",
			UsersFile:       "/etc/mxedge/users",
			FailureDelay:    Duration(2 * time.Second),
			FailuresSlow:    5,
			FailuresLockout: 10,
			FailureWindow:   Duration(15 * time.Minute),
			Lockout:         Duration(15 * time.Minute),
		},
		Submission: Submission{MessagesPerHour: 100, MessagesPerDay: 1000, RecipientsPerHour: 500, RecipientsPerDay: 3000, OverLimit: "defer"},
		DKIMSign:   []DKIMSign{},
		Milters:    []Milter{},
		Greylist: Greylist{Delay: Duration(5 * time.Minute), RetryWindow: Duration(day), PassTTL: Duration(36 * day),
			AutoAllowlist: 5},
	}
}

// Default returns the built-in local configuration "mxedge serve" runs
// without -config: one MX listener on 127.0.0.1:2525 relaying example.test
// to the demo backend on 127.0.0.1:2526, /metrics and /healthz on
// 127.0.0.1:9325, data in ./mxedge-data. It passes Validate.
func Default() *Config {
	c := base()
	c.Hostname = "mx.example.test"
	c.DataDir = "./mxedge-data"
	c.Admin.HTTP = "127.0.0.1:9325"
	c.Listeners = []Listener{{Address: "127.0.0.1:2525"}}
	c.RelayDomains = []string{"example.test"}
	c.Routes = map[string]string{"example.test": "127.0.0.1:2526"}
	c.complete()
	// The demo runs anywhere, also without working DNS and on a host
	// whose name has no dot (swaks says it in EHLO): the checks that would
	// refuse a local client for want of DNS are off, the HELO syntax is
	// only logged (pregreet and the limits stay on).
	l := &c.Listeners[0]
	l.ClientNoPTR, l.ClientPTRMismatch, l.HeloUnknown, l.SenderUnknownDomain = "off", "off", "off", "off"
	l.HeloInvalid = "log"
	// Likewise SPF, DKIM and DMARC, which need DNS (Authentication-Results stays).
	c.SPF.Enabled, c.DKIMVerify.Enabled, c.DMARC.Enabled = false, false, false
	return &c
}

// complete fills in what the file left empty and brings domains into their
// normal form. Values that cannot be normalized are left for Validate to
// report.
func (c *Config) complete() { c.completeSet(nil) }

// completeSet is complete for a file that set the keys in set (full names
// with array indexes, "listener[0].client_sessions"): a listener key the
// file did not set takes its kind's default; one it set to 0 stays 0 (a
// limit turned off), except max_sessions, whose 0 means the default.
func (c *Config) completeSet(set map[string]bool) {
	if c.Hostname == "" {
		// Postfix myhostname defaults to gethostname() as well. On failure
		// the name stays empty and Validate says so.
		c.Hostname, _ = os.Hostname()
	}
	if len(c.Listeners) == 0 {
		c.Listeners = []Listener{{Address: "0.0.0.0:25"}}
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.Kind == "" {
			l.Kind = KindMX
		}
		if l.Name == "" {
			l.Name = l.Kind
		}
		def, ok := kindDefaults[l.Kind]
		if !ok {
			def = kindDefaults[KindMX] // Validate reports the kind, not its keys
		}
		fillListener(l, def, fmt.Sprintf("listener[%d].", i), set)
		if l.MaxSessions == 0 {
			l.MaxSessions = def.MaxSessions
		}
		if l.TLSCert == nil {
			l.TLSCert = []string{}
		}
		if l.TLSKey == nil {
			l.TLSKey = []string{}
		}
		if l.DNSBLSites == nil {
			l.DNSBLSites = []string{}
		}
	}
	if c.CaseSensitiveDomains == nil {
		c.CaseSensitiveDomains = []string{}
	}
	for i, d := range c.CaseSensitiveDomains {
		if n, err := normalizeDomain(d); err == nil {
			c.CaseSensitiveDomains[i] = n
		}
	}

	if c.RelayDomains == nil {
		c.RelayDomains = []string{}
	}
	for i, d := range c.RelayDomains {
		if n, err := normalizeDomain(d); err == nil {
			c.RelayDomains[i] = n
		}
	}

	c.Routes = normalizeKeys(c.Routes)
	c.VerifyDomains = normalizeKeys(c.VerifyDomains)
	c.TLSPolicy = normalizeKeys(c.TLSPolicy)
	if c.DNS.Servers == nil {
		c.DNS.Servers = []string{}
	}
	if c.DKIMSign == nil {
		c.DKIMSign = []DKIMSign{}
	}
	if c.Milters == nil {
		c.Milters = []Milter{}
	}
	for i := range c.Milters {
		m := &c.Milters[i]
		if m.Name == "" {
			m.Name = fmt.Sprintf("milter%d", i+1)
		}
		if m.Kinds == nil {
			m.Kinds = []string{KindSubmission, KindSubmissions}
		}
		if m.ConnectTimeout == 0 {
			m.ConnectTimeout = Duration(30 * time.Second)
		}
		if m.CommandTimeout == 0 {
			m.CommandTimeout = Duration(30 * time.Second)
		}
		if m.ContentTimeout == 0 {
			m.ContentTimeout = Duration(300 * time.Second)
		}
		if m.DefaultAction == "" {
			m.DefaultAction = "tempfail"
		}
	}
	for i := range c.DKIMSign {
		if n, err := normalizeDomain(c.DKIMSign[i].Domain); err == nil {
			c.DKIMSign[i].Domain = n
		}
	}
}

// fillListener sets every field of l the file did not set (prefix+key
// not in set) and left zero to def's value.
func fillListener(l *Listener, def Listener, prefix string, set map[string]bool) {
	v, dv := reflect.ValueOf(l).Elem(), reflect.ValueOf(def)
	for i := 0; i < v.NumField(); i++ {
		key := strings.Split(v.Type().Field(i).Tag.Get("toml"), ",")[0]
		if f := v.Field(i); !set[prefix+key] && f.IsZero() {
			f.Set(dv.Field(i))
		}
	}
}

// normalizeKeys returns m with its domain keys in normal form. Keys already
// in normal form are taken first, so that "Example.ORG" next to
// "example.org" is the one kept as written, for Validate to report; so is a
// key that cannot be normalized.
func normalizeKeys[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m))
	var rest []string
	for k, v := range m {
		if n, err := normalizeDomain(k); err == nil && n == k {
			out[k] = v
		} else {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	for _, k := range rest {
		n, err := normalizeDomain(k)
		if _, taken := out[n]; err != nil || taken {
			n = k // invalid or a duplicate: Validate reports it
		}
		out[n] = m[k]
	}
	return out
}
