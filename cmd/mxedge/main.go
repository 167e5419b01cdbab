// Command mxedge is the mxedge MTA edge relay: one binary for the daemon
// and its admin subcommands.
//
//	mxedge serve [-config FILE]         run the relay (built-in local default without -config)
//	mxedge config check [-config FILE]  validate a configuration and print it with defaults filled in
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `usage:
  mxedge serve [-config FILE]          run the relay; without -config, a built-in
                                       local demo (MX on 127.0.0.1:2525, domain
                                       example.test, mailboxes under ./mxedge-data)
  mxedge config check [-config FILE]   validate FILE and print the effective
                                       configuration (defaults filled in); exit 1 on errors
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
	case "config":
		if len(args) > 1 && args[1] == "check" {
			return cmdConfigCheck(args[2:], stdout, stderr)
		}
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "mxedge: unknown command %q\n%s", args[0], usage)
	return 2
}
