package main

import (
	"context"
	"fmt"
	"io"

	"github.com/mxedge/mxedge/config"
	"github.com/mxedge/mxedge/smtpd"
)

// cmdDrain is "mxedge drain [-off]": the MX listeners of the running
// relay answer 421 4.3.2 to new connections (sending MTAs use the pair's
// other MX) while sessions in flight finish and the queue empties; -off
// accepts again. docs/deploy.md has the maintenance sequence.
func cmdDrain(args []string, stdout, stderr io.Writer) int {
	c := newAdminCmd("drain", "[-off]", "", stdout, stderr)
	off := c.fs.Bool("off", false, "accept new connections again")
	if _, ok := c.parse(args, 0, 0); !ok {
		return 2
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	st, err := cl.Drain(context.Background(), !*off)
	if err != nil {
		return c.fail(err)
	}
	if *c.json {
		return c.printJSON(st)
	}
	if st.Draining {
		fmt.Fprintln(stdout, "draining: MX listeners answer 421 4.3.2 to new connections; watch \"mxedge queue stats\" empty, \"mxedge drain -off\" to accept again")
	} else {
		fmt.Fprintln(stdout, "accepting: MX listeners take new connections")
	}
	return 0
}

// mxDrainer switches the MX listeners of a relay (submission listeners
// keep serving users: they are not part of the MX pair).
type mxDrainer []*smtpd.Server

func (d mxDrainer) Drain(on bool) {
	for _, s := range d {
		s.Drain(on)
	}
}

func (d mxDrainer) Draining() bool { return len(d) > 0 && d[0].Draining() }

// mxServers are the relay's MX listeners.
func (r *relay) mxServers() mxDrainer {
	var d mxDrainer
	for i, s := range r.servers {
		if r.cfg.Listeners[i].Kind == config.KindMX {
			d = append(d, s)
		}
	}
	return d
}

// cmdReload is "mxedge reload": the running relay re-reads its
// configuration (as SIGHUP does) and says what it applied ("applied:"
// lines: the policy chains, greylist, verify, routes, tls_policy,
// dkim_sign, the submission milters, certificates) and what changed but
// needs a restart ("needs a restart:", one line per key; else "no restart
// needed"); an invalid file or DKIM key file is reported (file:line or the
// key file's path, exit 1) and changes nothing.
func cmdReload(args []string, stdout, stderr io.Writer) int {
	c := newAdminCmd("reload", "", "", stdout, stderr)
	if _, ok := c.parse(args, 0, 0); !ok {
		return 2
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	res, err := cl.Reload(context.Background())
	if err != nil {
		return c.fail(err)
	}
	if *c.json {
		return c.printJSON(res)
	}
	for _, a := range res.Applied {
		fmt.Fprintln(stdout, "applied:", a)
	}
	for _, a := range res.Restart {
		fmt.Fprintln(stdout, "needs a restart:", a)
	}
	if len(res.Restart) == 0 {
		fmt.Fprintln(stdout, "no restart needed")
	}
	return 0
}
