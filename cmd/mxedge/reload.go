package main

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/mxedge/mxedge/config"
	"github.com/mxedge/mxedge/control"
	"github.com/mxedge/mxedge/delivery"
)

// reloadConfig is SIGHUP and "mxedge reload": the configuration file is
// read again and checked as at start (file:line errors, list files); an
// invalid one changes nothing and its error is returned. Of a valid one,
// what a new session can take is applied at once, without closing
// sessions or pausing the queue:
//   - each listener's policy chain (relay domains, edge defenses and their
//     list files, limits), swapped for the sessions that start from now on
//     (smtpd.Server.SetChain);
//   - the fixed next hops ([routes], delivery.Deliverer.SetRoutes), for
//     the next delivery attempt;
//   - the listeners' certificates (read again).
//
// Everything else that changed is reported as needing a restart, the
// listeners' addresses first; the running relay keeps its old values for
// those until then.
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
	cfg, from, err := loadConfig(r.path)
	if err == nil {
		_, err = verifyOptions(cfg, nil)
	}
	if err == nil {
		err = checkListenerFiles(cfg)
	}
	if err == nil {
		err = delivery.CheckSmarthostAuth(cfg.Delivery.SmarthostAuthFile)
	}
	if err != nil {
		return res, fmt.Errorf("reload: %w", err)
	}
	res.Restart = restartNeeded(r.cfg, cfg)
	// Listeners that kept name, kind and address take their new chain.
	for i, old := range r.cfg.Listeners {
		j := listenerIndex(cfg, old)
		if j < 0 {
			continue
		}
		ch, err := chainFor(cfg, cfg.Listeners[j], r.ver, r.res, r.sub, r.log)
		if err != nil {
			return control.ReloadResult{}, fmt.Errorf("reload: %w", err)
		}
		if r.grey != nil && old.Kind == config.KindMX {
			ch.Add(r.grey) // as build does: the last RCPT check
		}
		r.servers[i].SetChain(ch)
		res.Applied = append(res.Applied, fmt.Sprintf("listener %q: policy chain (%s)", old.Name, chainSummary(ch)))
	}
	r.dl.SetRoutes(cfg.Routes)
	res.Applied = append(res.Applied, "routes", "certificates")
	// What the chains take from the top level is now the new value.
	r.cfg.RelayDomains, r.cfg.Routes = cfg.RelayDomains, cfg.Routes
	for i, old := range r.cfg.Listeners {
		if j := listenerIndex(cfg, old); j >= 0 {
			certs := r.cfg.Listeners[i].TLSCert
			keys := r.cfg.Listeners[i].TLSKey
			r.cfg.Listeners[i] = cfg.Listeners[j]
			r.cfg.Listeners[i].TLSCert, r.cfg.Listeners[i].TLSKey = certs, keys
		}
	}
	r.log.Info("configuration reloaded", "from", from, "applied", strings.Join(res.Applied, "; "),
		"restart_needed", strings.Join(res.Restart, "; "))
	return res, nil
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

// restartNeeded lists what differs between old and new that a reload
// does not apply.
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
		if i := listenerIndex(old, l); i >= 0 {
			o := old.Listeners[i]
			if !reflect.DeepEqual(o.TLSCert, l.TLSCert) || !reflect.DeepEqual(o.TLSKey, l.TLSKey) ||
				o.TLSMinVersion != l.TLSMinVersion || o.MaxSessions != l.MaxSessions {
				out = append(out, fmt.Sprintf("listener %q: certificate files, TLS version or max_sessions", l.Name))
			}
		}
	}
	// Top-level tables, compared as the configuration prints them.
	for _, k := range []struct {
		key      string
		old, new any
	}{
		{"hostname", old.Hostname, new.Hostname},
		{"data_dir", old.DataDir, new.DataDir},
		{"limits", old.Limits, new.Limits},
		{"timeouts", old.Timeouts, new.Timeouts},
		{"queue", old.Queue, new.Queue},
		{"dns", old.DNS, new.DNS},
		{"delivery", old.Delivery, new.Delivery},
		{"tls_policy", old.TLSPolicy, new.TLSPolicy},
		{"verify", old.Verify, new.Verify},
		{"verify_domains", old.VerifyDomains, new.VerifyDomains},
		{"auth", old.Auth, new.Auth},
		{"submission", old.Submission, new.Submission},
		{"dkim_sign", old.DKIMSign, new.DKIMSign},
		{"milter (the mx kind's are applied with the chains; the submission kinds' need a restart)", old.Milters, new.Milters},
		{"greylist", old.Greylist, new.Greylist},
		{"admin", old.Admin, new.Admin},
		{"case_sensitive_domains", old.CaseSensitiveDomains, new.CaseSensitiveDomains},
	} {
		a, _ := json.Marshal(k.old)
		b, _ := json.Marshal(k.new)
		if string(a) != string(b) {
			out = append(out, k.key+": changed")
		}
	}
	return out
}
