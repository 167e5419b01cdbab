package main

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	"github.com/mxedge/mxedge/config"
	"github.com/mxedge/mxedge/control"
	"github.com/mxedge/mxedge/delivery"
	"github.com/mxedge/mxedge/policy"
)

// reloadConfig is SIGHUP and "mxedge reload": the configuration file is
// read again and checked as at start (file:line errors, list files, DKIM
// key files); an invalid one changes nothing and its error is returned
// (the running relay keeps its configuration, DKIM keys included). Of a
// valid one, everything below is applied at once, without closing
// sessions or pausing the queue:
//   - each listener's policy chain (relay domains, edge defenses and their
//     list files, message authentication, the mx kind's milters, the
//     submission rate limits, greylisting), swapped for the sessions that
//     start from now on (smtpd.Server.SetChain); the client limit counters
//     (client_sessions, the connection, message and recipient rates) are
//     handed to the new chain with the new limits, so a client over its
//     rate stays refused;
//   - greylisting's settings, on and off ([greylist]; greylist.db stays
//     open once opened, its entries kept);
//   - recipient verification ([verify], [verify_domains] and the list
//     files: verifycache.Verifier.Reconfigure) for the next RCPT, the
//     cache's entries kept;
//   - the fixed next hops ([routes]) and the outbound TLS policy
//     ([tls_policy], delivery.default_tls_policy, mta_sts, dane) for the
//     next delivery attempt and probe;
//   - the DKIM signing keys ([[dkim_sign]]) for the next message signed,
//     and the submission kinds' [[milter]] entries for the next message
//     filtered after the queue;
//   - the listeners' certificates (read again).
//
// What needs a restart is reported (restartNeeded) and keeps its old value
// until then: a listener's address or kind, or a new or removed listener
// (sockets are bound at start, before privileges could be dropped); a
// listener's session options (error limits, session caps, pregreet,
// max_sessions, TLS files and version: fixed in its SMTP server); the
// hostname, [limits], [timeouts] and case_sensitive_domains (in the
// sessions' options, the queue's and delivery's); data_dir, [queue] (the
// open queue and its scheduler); [dns] (the one resolver every stage
// holds); the rest of [delivery] (connection limits and caches built at
// start); [auth] (the open backend and its guard); [admin] (the bound
// HTTP endpoint).
func (r *relay) reloadConfig(ctx context.Context) (control.ReloadResult, error) {
	r.reloads.Lock()
	defer r.reloads.Unlock()
	var res control.ReloadResult
	r.reloadCerts()
	if r.demo {
		res.Applied = []string{"certificates"}
		res.Restart = []string{"the built-in demo configuration has nothing else to reload"}
		return res, nil
	}
	// Everything that can fail, before anything changes.
	cfg, from, err := loadConfig(r.path)
	if err != nil {
		return res, fmt.Errorf("reload: %w", err)
	}
	vo, err := verifyOptions(cfg, r.log)
	if err == nil {
		err = checkListenerFiles(cfg)
	}
	if err == nil {
		err = delivery.CheckSmarthostAuth(cfg.Delivery.SmarthostAuthFile)
	}
	if err != nil {
		return res, fmt.Errorf("reload: %w", err)
	}
	keys, err := loadDKIMKeys(cfg)
	if err != nil {
		return res, fmt.Errorf("reload: the old DKIM keys stay: %w", err)
	}
	tp, err := r.outTLS.policy(cfg)
	if err != nil {
		return res, fmt.Errorf("reload: %w", err)
	}
	grey, err := r.grey.check(cfg)
	if err != nil {
		return res, fmt.Errorf("reload: %w", err)
	}
	// The chains of the listeners that kept name, kind and address.
	parts := *r.parts
	parts.grey = asCheck(grey)
	chains := make([]*policy.Chain, len(r.cfg.Listeners))
	for i, old := range r.cfg.Listeners {
		if j := listenerIndex(cfg, old); j >= 0 {
			if chains[i], err = chainFor(cfg, cfg.Listeners[j], &parts); err != nil {
				return res, fmt.Errorf("reload: %w", err)
			}
		}
	}

	// Apply.
	res.Restart = restartNeeded(r.cfg, cfg)
	r.grey.use(grey)
	r.parts.grey = parts.grey
	for i, ch := range chains {
		if ch != nil {
			r.servers[i].SetChain(ch)
			res.Applied = append(res.Applied, fmt.Sprintf("listener %q: policy chain (%s)", r.cfg.Listeners[i].Name, chainSummary(ch)))
		}
	}
	r.ver.Reconfigure(vo)
	r.dl.SetRoutes(cfg.Routes)
	r.dl.SetTLSPolicy(tp)
	r.signer.SetKeys(keys)
	postMilters := postQueueMilters(cfg, r.log)
	r.milters.set(postMilters)
	res.Applied = append(res.Applied,
		fmt.Sprintf("greylist (%s)", onOff(grey != nil)),
		fmt.Sprintf("verify (%d domains)", len(vo.Domains)),
		"routes",
		fmt.Sprintf("tls_policy (default %s, %d domains, mta_sts %s, dane %s)", cfg.Delivery.DefaultTLSPolicy,
			len(cfg.TLSPolicy), onOff(cfg.Delivery.MTASTS), onOff(cfg.Delivery.DANE)),
		fmt.Sprintf("dkim_sign (%d keys)", len(keys)),
		fmt.Sprintf("milter after the queue (%d)", len(postMilters)),
		"certificates")
	r.adopt(cfg)
	r.log.Info("configuration reloaded", "from", from, "applied", strings.Join(res.Applied, "; "),
		"restart_needed", strings.Join(res.Restart, "; "))
	return res, nil
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// adopt makes what a reload applied part of the configuration in force
// (r.cfg), so that the next reload compares with it; what needs a restart
// keeps the value of the start.
func (r *relay) adopt(cfg *config.Config) {
	c := r.cfg
	copyKeys(c, cfg, liveKeys)
	copyKeys(&c.Delivery, &cfg.Delivery, deliveryLiveKeys)
	for i, old := range c.Listeners {
		j := listenerIndex(cfg, old)
		if j < 0 {
			continue
		}
		// The policy keys are new, the session keys stay.
		l := cfg.Listeners[j]
		copyKeys(&l, &old, sessionKeys)
		c.Listeners[i] = l
	}
}

// listenerIndex is the index in cfg of the listener with l's name, kind
// and address; -1 when there is none.
func listenerIndex(cfg *config.Config, l config.Listener) int {
	for j, n := range cfg.Listeners {
		if n.Name == l.Name && n.Kind == l.Kind && n.Address == l.Address {
			return j
		}
	}
	return -1
}

// sessionKeys are the [[listener]] keys that go into a listener's SMTP
// server when it starts (listenerOptions, the TLS configuration): a
// reload does not change them.
var sessionKeys = []string{"bare_line_endings", "max_sessions", "tls_cert", "tls_key", "tls_min_version", "hide_client_ip",
	"soft_error_limit", "hard_error_limit", "error_sleep", "junk_command_limit", "session_time_limit",
	"session_message_limit", "pregreet_wait", "pregreet_ttl", "lookup_timeout"}

// liveKeys are the top-level keys a reload applies (adopt; the
// listeners are matched one by one), and deliveryLiveKeys those of
// [delivery].
var (
	liveKeys = []string{"relay_domains", "routes", "tls_policy", "verify", "verify_domains", "submission", "dkim_sign",
		"milter", "auth_results", "spf", "dkim_verify", "dmarc", "greylist"}
	deliveryLiveKeys = []string{"default_tls_policy", "mta_sts", "dane"}
)

// restartKeys are the top-level keys a reload does not apply, and
// deliveryRestartKeys those of [delivery] (the TLS ones are applied).
var (
	restartKeys = []string{"hostname", "data_dir", "limits", "timeouts", "queue", "dns", "auth", "admin",
		"case_sensitive_domains"}
	deliveryRestartKeys = []string{"source_address", "mx_port", "smarthost", "smarthost_auth_file", "smarthost_tls",
		"max_rcpts_per_transaction", "destination_concurrency", "initial_destination_concurrency", "concurrency"}
)

// restartNeeded lists what differs between old and new that a reload
// does not apply (see reloadConfig).
func restartNeeded(old, new *config.Config) []string {
	var out []string
	for _, l := range old.Listeners {
		if listenerIndex(new, l) < 0 {
			out = append(out, fmt.Sprintf("listener %q on %s: gone or its address or kind changed", l.Name, l.Address))
		}
	}
	for _, l := range new.Listeners {
		if listenerIndex(old, l) < 0 {
			out = append(out, fmt.Sprintf("listener %q on %s: new", l.Name, l.Address))
		}
	}
	for _, l := range new.Listeners {
		i := listenerIndex(old, l)
		if i < 0 {
			continue
		}
		o := old.Listeners[i]
		keys := changedKeys(&o, &l, sessionKeys)
		if needsReverse(o) != needsReverse(l) {
			// Whether the server looks up the client's reverse DNS (for
			// Received and the checks that use it) is fixed at start.
			keys = append(keys, "reverse DNS lookup (client_no_ptr, client_ptr_mismatch, client_access turned on or off)")
		}
		if len(keys) > 0 {
			out = append(out, fmt.Sprintf("listener %q: %s changed", l.Name, strings.Join(keys, ", ")))
		}
	}
	if first(old.RelayDomains) != first(new.RelayDomains) {
		out = append(out, "relay_domains: the first (the listeners' postmaster domain) changed")
	}
	for _, k := range changedKeys(old, new, restartKeys) {
		out = append(out, k+": changed")
	}
	for _, k := range changedKeys(&old.Delivery, &new.Delivery, deliveryRestartKeys) {
		out = append(out, "delivery."+k+": changed")
	}
	return out
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// changedKeys returns those of keys (toml names of fields of the structs
// a and b point to, of one type) whose values differ, in keys' order.
func changedKeys(a, b any, keys []string) []string {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	var out []string
	for _, k := range keys {
		i := fieldByKey(va.Type(), k)
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out = append(out, k)
		}
	}
	return out
}

// copyKeys copies the fields named by keys (toml names) from *src to
// *dst, structs of one type.
func copyKeys(dst, src any, keys []string) {
	vd, vs := reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem()
	for _, k := range keys {
		i := fieldByKey(vd.Type(), k)
		vd.Field(i).Set(vs.Field(i))
	}
}

// fieldByKey is the index of the field of struct type t whose toml name
// is key; a key that is not there is a programming error.
func fieldByKey(t reflect.Type, key string) int {
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ","); name == key {
			return i
		}
	}
	panic(fmt.Sprintf("reload: %s has no key %q", t, key))
}
