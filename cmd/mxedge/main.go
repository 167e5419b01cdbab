// Command mxedge is the mxedge MTA edge relay: one binary for the daemon
// and its admin subcommands.
//
//	mxedge serve [-config FILE] [-log-format text|json] [-recover]  run the relay
//	mxedge version                      module version and VCS revision of the build
//	mxedge config check [-config FILE]  validate a configuration and print it with defaults filled in
//	mxedge queue list [filters] [-json] list queued messages (like mailq)
//	mxedge queue show ID [-json|-body]  one message: envelope, state, headers; or the message
//	mxedge queue flush [IDS | filters]  attempt delivery now
//	mxedge queue hold|release IDS       stop / resume delivery attempts
//	mxedge queue requeue IDS            attempt now, the retry backoff started over (postsuper -r)
//	mxedge queue delete|bounce IDS      remove silently / return to the sender
//	mxedge queue stats [-json]          queue counters
//	mxedge queue compact|check [-repair]|recover  offline maintenance of queue.db (stop mxedge first)
//	mxedge queue backup FILE            online copy of queue.db
//	mxedge doctor, reload, drain        DNS and relay checks; SIGHUP; 421 for maintenance
//	mxedge verify show|probe|forget ADDR recipient verification cache: an entry, a fresh probe, removal
//	mxedge verify stats [-json]         verification counters and catch-all domains
//	mxedge user add|passwd|del|list|show  submission users (the [auth] users file) and their counters
//	mxedge dkim keygen|show             DKIM signing keys and their DNS records
//
// IDS are queue IDs, ALL or - (IDs on stdin), as in postsuper. The queue,
// verify, reload and drain commands talk to the running daemon over its
// control socket, <data_dir>/control.sock (package control); every command
// finds its configuration (and so the data directory) by -config FILE, else
// $MXEDGE_CONFIG, else /etc/mxedge/mxedge.toml, else the built-in demo.
// Exit status: 0 ok, 1 error, 2 usage.
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `usage:
  mxedge serve [-config FILE] [-log-format text|json] [-recover]
                                       run the relay (-recover: rebuild the queue index
                                       from the spool files first); without a configuration, a built-in
                                       local demo (MX on 127.0.0.1:2525, domain
                                       example.test, mailboxes under ./mxedge-data,
                                       /metrics on 127.0.0.1:9325)
  mxedge version                       module version and VCS revision of this build
  mxedge config check [-config FILE]   validate FILE and print the effective
                                       configuration (defaults filled in); exit 1 on errors
  mxedge queue list [-sender A] [-recipient A] [-domain D] [-state S] [-json]
  mxedge queue show ID [-json | -body]
  mxedge queue flush [IDS | -domain D | -sender A | -recipient A]
  mxedge queue hold|release|requeue|delete|bounce IDS   IDS: queue IDs, ALL, or - (stdin)
  mxedge queue stats [-json]
  mxedge queue backup FILE
  mxedge queue compact|check [-repair]|recover
                                       administer the queue of the running relay
                                       (compact, check, recover: offline);
                                       "mxedge queue help" for details
  mxedge doctor [-json] [-ip A] [-partner H] [-mx ADDR|off] [-relay-sender A]
                                       deliverability checks of the hostname and relay
                                       domains (DNS via [dns]): ✓/✗ with the record to publish;
                                       an open-relay self-test against every MX listener (-mx: one)
  mxedge reload                        re-read the configuration (as SIGHUP): policy
                                       chains, limits (counters kept), greylist, verify,
                                       routes, TLS policy, DKIM keys, milters and
                                       certificates live; the rest reported as restart
  mxedge drain [-off]                  MX listeners answer 421 4.3.2 to new connections
                                       while the queue empties (maintenance); -off: accept
  mxedge verify show|probe|forget ADDR [-json]
  mxedge verify stats [-json]          recipient verification cache of the running relay;
                                       all take -config FILE; "mxedge verify help" for details
  mxedge user add NAME [-senders A,B] | passwd NAME | del NAME | list | show NAME
                                       submission users ([auth] users_file; password on
                                       stdin) and their rate limit counters
  mxedge dkim keygen -domain D -selector S [-type rsa|ed25519] | show
                                       DKIM signing keys and the DNS records to publish
Every command takes -config FILE; without it: $MXEDGE_CONFIG, else
/etc/mxedge/mxedge.toml, else the built-in demo.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return cmdServe(args[1:], stdout, stderr)
	case "queue":
		return cmdQueue(args[1:], stdout, stderr)
	case "verify":
		return cmdVerify(args[1:], stdout, stderr)
	case "user":
		return cmdUser(args[1:], os.Stdin, stdout, stderr)
	case "dkim":
		return cmdDKIM(args[1:], stdout, stderr)
	case "config":
		return cmdConfig(args[1:], stdout, stderr)
	case "drain":
		return cmdDrain(args[1:], stdout, stderr)
	case "doctor":
		return cmdDoctor(args[1:], stdout, stderr)
	case "reload":
		return cmdReload(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "mxedge", version())
		return 0
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "mxedge: unknown command %q\n%s", args[0], usage)
	return 2
}
