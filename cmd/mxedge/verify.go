package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/mxedge/mxedge/config"
	"github.com/mxedge/mxedge/control"
	"github.com/mxedge/mxedge/delivery"
	"github.com/mxedge/mxedge/internal/probedial"
	"github.com/mxedge/mxedge/verifycache"
)

// openVerifier opens the recipient verification cache of cfg,
// <data_dir>/verify.db, and reads the recipient lists. Probes go out
// through d, delivery's client layer.
func openVerifier(cfg *config.Config, d *delivery.Deliverer, log *slog.Logger) (*verifycache.Verifier, error) {
	o, err := verifyOptions(cfg, log)
	if err != nil {
		return nil, err
	}
	o.Dialer = probedial.Dialer(d)
	if err != nil {
		return nil, err
	}
	return verifycache.Open(filepath.Join(cfg.DataDir, verifycache.FileName), o)
}

// verifyOptions maps [verify] and [verify_domains] onto the verifier's
// options (all but the Dialer). Every relay domain gets a policy: its
// entry in verify_domains, else verify.mode. Recipient list files are read
// here, so their errors (file:line) come out like the configuration's.
func verifyOptions(cfg *config.Config, log *slog.Logger) (verifycache.Options, error) {
	v := cfg.Verify
	domains := map[string]verifycache.Policy{}
	var errs []error
	for _, d := range cfg.RelayDomains {
		p := verifycache.Policy{Mode: v.Mode}
		if vd, ok := cfg.VerifyDomains[d]; ok {
			p.Mode = vd.Mode
			if vd.Mode == verifycache.ModeList {
				l, err := verifycache.LoadList(vd.List, d)
				if err != nil {
					errs = append(errs, err)
				}
				p.List = l
			}
		}
		domains[d] = p
	}
	if len(errs) > 0 {
		return verifycache.Options{}, errors.Join(errs...)
	}
	sender := v.ProbeSender
	switch sender {
	case "":
		sender = "double-bounce@" + cfg.Hostname // Postfix's address_verify_sender
	case "<>":
		sender = ""
	}
	// In the configuration "0s" means off; in Options a negative value does.
	off := func(d config.Duration) time.Duration {
		if d == 0 {
			return -1
		}
		return d.D()
	}
	return verifycache.Options{
		ProbeSender:      sender,
		Domains:          domains,
		PositiveTTL:      v.PositiveTTL.D(),
		RefreshAfter:     v.PositiveRefresh.D(),
		NegativeTTL:      v.NegativeTTL.D(),
		TempfailTTL:      v.TempfailTTL.D(),
		InlineWait:       v.InlineWait.D(),
		ProbeTimeout:     v.ProbeTimeout.D(),
		ReplyTimeout:     cfg.Timeouts.Reply.D(),
		Concurrency:      v.ProbeConcurrency,
		Rate:             float64(v.ProbeRate),
		DictLimit:        v.DictionaryLimit,
		DictDisconnect:   v.DictionaryDisconnect,
		DictWindow:       v.DictionaryWindow.D(),
		DictDelay:        off(v.DictionaryDelay),
		CatchAllInterval: off(v.CatchAllInterval),
		Logger:           log,
	}, nil
}

const verifyUsage = `usage:
  mxedge verify show ADDR [-json]      the cache entry of ADDR and what RCPT would get now
  mxedge verify probe ADDR [-json]     probe ADDR now (new connection), print the dialogue,
                                       cache the result (a failure never drops a known address)
  mxedge verify forget ADDR [-json]    remove ADDR from the cache: the next RCPT probes again
  mxedge verify stats [-json]          entries by state, hit rate, probes, latency, catch-all domains
Every command takes -config FILE (default: $MXEDGE_CONFIG, /etc/mxedge/mxedge.toml,
the built-in demo) to find the data directory, and the running daemon's control
socket in it. ADDR as in RCPT TO, with or without <>; the domain's case does not
matter, the local part's does.
Exit status: 0 ok, 1 error, 2 usage.
`

func cmdVerify(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, verifyUsage)
		return 2
	}
	name, args := args[0], args[1:]
	switch name {
	case "show":
		return verifyShow(args, stdout, stderr)
	case "probe":
		return verifyProbe(args, stdout, stderr)
	case "forget":
		return verifyForget(args, stdout, stderr)
	case "stats":
		return verifyStats(args, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, verifyUsage)
		return 0
	}
	fmt.Fprintf(stderr, "mxedge: unknown command \"verify %s\"\n%s", name, verifyUsage)
	return 2
}

func verifyShow(args []string, stdout, stderr io.Writer) int {
	c := newAdminCmd("verify", "show", "ADDR [-json]", stdout, stderr)
	l, code, done := fetch(c, args, 1, func(ctx context.Context, cl *control.Client, pos []string) (verifycache.Lookup, error) {
		return cl.VerifyShow(ctx, pos[0])
	})
	if done {
		return code
	}
	w := bufio.NewWriter(stdout)
	now := time.Now()
	field := func(name, format string, a ...any) {
		fmt.Fprintf(w, "%-12s %s\n", name+":", fmt.Sprintf(format, a...))
	}
	field("Address", "%s", printable(l.Addr))
	mode := l.Mode
	if mode == "" {
		mode = "not a relay domain"
	}
	field("Mode", "%s", mode)
	answer := l.Answer
	switch l.Answer {
	case "probe":
		answer = "probe (nothing valid cached: the next RCPT probes)"
	case "defer":
		answer = "defer (450 4.1.1: a probe failed temporarily)"
	}
	if l.RefreshDue {
		answer += " (refresh due: the next RCPT probes again in the background)"
	}
	if l.Probing {
		answer += " (a probe is in flight)"
	}
	field("RCPT", "%s", answer)
	if e := l.Entry; e != nil {
		state := string(e.State)
		if !l.Valid {
			state += ", expired"
		}
		field("State", "%s", state)
		if !e.Verified.IsZero() {
			field("Verified", "%s (%s ago)", localTime(e.Verified), ago(now, e.Verified))
		}
		field("Expires", "%s (%s)", localTime(e.Expires), until(now, e.Expires))
		if e.Reply != "" {
			field("Reply", "%s", printable(e.Reply))
		}
		if e.Route != "" {
			field("Route", "%s", printable(e.Route))
		}
		if !e.LastProbe.IsZero() && !e.LastProbe.Equal(e.Verified) {
			field("Last probe", "%s (%s ago)", localTime(e.LastProbe), ago(now, e.LastProbe))
		}
		if e.LastResult != "" {
			field("Last result", "%s", printable(e.LastResult))
		}
	} else if l.Mode == verifycache.ModeProbe {
		field("State", "not in the cache")
	}
	if err := w.Flush(); err != nil {
		return c.fail(err)
	}
	return 0
}

func verifyProbe(args []string, stdout, stderr io.Writer) int {
	c := newAdminCmd("verify", "probe", "ADDR [-json]", stdout, stderr)
	rep, code, done := fetch(c, args, 1, func(ctx context.Context, cl *control.Client, pos []string) (verifycache.ProbeReport, error) {
		return cl.VerifyProbe(ctx, pos[0])
	})
	if done {
		return code
	}
	w := bufio.NewWriter(stdout)
	for _, line := range rep.Transcript {
		fmt.Fprintln(w, printable(line))
	}
	route := rep.Route
	if route == "" {
		route = "(no route)"
	}
	fmt.Fprintf(w, "result: %s via %s in %s: %s\n", rep.Result, printable(route),
		rep.Latency.Round(10*time.Microsecond), printable(rep.Reply))
	if rep.Refused {
		fmt.Fprintln(w, "note: the next hop refused the probe itself, not the address (check verify.probe_sender and the backend)")
	}
	switch {
	case rep.Kept:
		fmt.Fprintf(w, "cache: exists kept until %s (a failed probe never drops a known address; mxedge verify forget %s drops it)\n",
			localTime(rep.Cached.Expires), printable(rep.Addr))
	case rep.Cached != nil:
		fmt.Fprintf(w, "cache: %s until %s\n", rep.Cached.State, localTime(rep.Cached.Expires))
	default:
		fmt.Fprintln(w, "cache: temporary failure, held in memory for verify.tempfail_ttl")
	}
	if err := w.Flush(); err != nil {
		return c.fail(err)
	}
	return 0
}

func verifyForget(args []string, stdout, stderr io.Writer) int {
	c := newAdminCmd("verify", "forget", "ADDR [-json]", stdout, stderr)
	pos, ok := c.parse(args, 1, 1)
	if !ok {
		return 2
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	addr, err := cl.VerifyForget(context.Background(), pos[0])
	if err != nil {
		return c.fail(err)
	}
	if *c.json {
		return c.printJSON(control.ForgetResult{Addr: addr, Result: "forgotten"})
	}
	fmt.Fprintf(stdout, "%s: forgotten\n", printable(addr))
	return 0
}

func verifyStats(args []string, stdout, stderr io.Writer) int {
	c := newAdminCmd("verify", "stats", "[-json]", stdout, stderr)
	st, code, done := fetch(c, args, 0, func(ctx context.Context, cl *control.Client, _ []string) (verifycache.Stats, error) {
		return cl.VerifyStats(ctx)
	})
	if done {
		return code
	}
	w := bufio.NewWriter(stdout)
	e := st.Entries
	fmt.Fprintf(w, "entries:        %d exists, %d unknown, %d tempfail, %d expired\n",
		e["exists"], e["unknown"], e["tempfail"], e["expired"])
	fmt.Fprintf(w, "lookups:        %d, hit rate %.1f%% (%d from the cache, %d probed; %d joined a probe in flight, %d gave up waiting)\n",
		st.Lookups, 100*st.HitRate, st.Hits, st.Misses, st.Coalesced, st.InlineTimeouts)
	r := st.ProbeResults
	fmt.Fprintf(w, "probes:         %d sent (%d exists, %d unknown, %d tempfail), %d background refreshes\n",
		st.Probes, r["exists"], r["unknown"], r["tempfail"], st.Refreshes)
	ms := func(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }
	fmt.Fprintf(w, "probe latency:  avg %s, p50 %s, p95 %s, max %s\n", ms(st.LatencyAvg), ms(st.LatencyP50), ms(st.LatencyP95), ms(st.LatencyMax))
	fmt.Fprintf(w, "dictionary:     %d answered without a probe, %d disconnects; clients over the limit now %d (%d cut off)\n",
		st.DictionaryDeferred, st.DictionaryDisconnects, st.ClientsLimited, st.ClientsCut)
	if len(st.CatchAll) == 0 {
		fmt.Fprintln(w, "catch-all:      none found")
	} else {
		fmt.Fprintf(w, "catch-all:      %s (the next hop accepts any address: verification is useless there)\n",
			printable(strings.Join(st.CatchAll, ", ")))
	}
	fmt.Fprintln(w, "domains:")
	for _, d := range st.Domains {
		line := fmt.Sprintf("    %-30s %-5s", printable(d.Domain), d.Mode)
		switch {
		case d.Mode == verifycache.ModeList:
			line += fmt.Sprintf("  %s", plural(d.ListSize, "recipient"))
		case d.CatchAll != nil && d.CatchAll.Checked.IsZero():
			line += "  catch-all test pending (last try " + localTime(d.CatchAll.LastTry) + ")"
		case d.CatchAll != nil && d.CatchAll.CatchAll:
			line += "  CATCH-ALL: accepted " + printable(d.CatchAll.Probe) + " at " + localTime(d.CatchAll.Checked)
		case d.CatchAll != nil:
			line += "  rejects unknown recipients (tested " + localTime(d.CatchAll.Checked) + ")"
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
	if err := w.Flush(); err != nil {
		return c.fail(err)
	}
	return 0
}

func ago(now, t time.Time) string { return span(now.Sub(t)) }

func until(now, t time.Time) string {
	if d := t.Sub(now); d > 0 {
		return "in " + span(d)
	}
	return "expired"
}

// span writes d to the second, with days from two days on ("29d4h").
func span(d time.Duration) string {
	const day = 24 * time.Hour
	d = d.Round(time.Second)
	if d < 2*day {
		return d.String()
	}
	d = d.Round(time.Hour) // 29d23h59m59s is "30d", not "29d24h"
	days, rest := d/day, d%day
	if rest == 0 {
		return fmt.Sprintf("%dd", days)
	}
	return fmt.Sprintf("%dd%dh", days, rest/time.Hour)
}
