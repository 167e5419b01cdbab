package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/mxedge/mxedge/control"
)

// adminCmd is one admin subcommand ("mxedge queue list", "mxedge verify
// show", ...) that talks to the running daemon over its control socket:
// its flags (-config and -json for all) and its output.
type adminCmd struct {
	group  string // "queue", "verify"
	name   string
	title  string // "mxedge queue list", "mxedge reload": for messages
	fs     *flag.FlagSet
	config *string
	json   *bool
	stdout io.Writer
	stderr io.Writer
	// lookedAt says where client looked for the daemon, for messages.
	lookedAt string
}

func newAdminCmd(group, name, argsUsage string, stdout, stderr io.Writer) *adminCmd {
	title := strings.Join(strings.Fields("mxedge "+group+" "+name), " ")
	fs := flag.NewFlagSet(strings.TrimPrefix(title, "mxedge "), flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, strings.TrimSpace("usage: "+title+" "+argsUsage))
		fs.PrintDefaults()
	}
	return &adminCmd{
		group:  group,
		name:   name,
		title:  title,
		fs:     fs,
		config: fs.String("config", "", "configuration file (default: $MXEDGE_CONFIG, "+defaultConfigPath+", the built-in demo)"),
		json:   fs.Bool("json", false, "print JSON"),
		stdout: stdout,
		stderr: stderr,
	}
}

// parse parses args, flags before or after the positional arguments
// ("show ID -json"), and returns the positional ones if there are min to
// max of them; otherwise it prints the usage and returns false.
func (c *adminCmd) parse(args []string, min, max int) ([]string, bool) {
	var pos []string
	for {
		if err := c.fs.Parse(args); err != nil {
			return nil, false
		}
		args = c.fs.Args()
		if len(args) == 0 {
			break
		}
		pos, args = append(pos, args[0]), args[1:]
	}
	if len(pos) < min || len(pos) > max {
		fmt.Fprintf(c.stderr, "%s: wrong number of arguments\n", c.title)
		c.fs.Usage()
		return nil, false
	}
	return pos, true
}

// client connects to the daemon of the configured data directory.
func (c *adminCmd) client() (*control.Client, error) {
	cfg, from, err := loadConfig(*c.config)
	if err != nil {
		return nil, err
	}
	c.lookedAt = fmt.Sprintf("data_dir %s of %s", cfg.DataDir, from)
	if !filepath.IsAbs(cfg.DataDir) {
		// The demo's ./mxedge-data is where serve was started: say which
		// directory this command looked in.
		if abs, err := filepath.Abs(cfg.DataDir); err == nil {
			c.lookedAt = fmt.Sprintf("data_dir %s (from this directory: %s) of %s", cfg.DataDir, abs, from)
		}
	}
	return control.NewClient(control.SocketPath(cfg.DataDir)), nil
}

// fail prints err and returns exit status 1. When no daemon answered, it
// says where it looked.
func (c *adminCmd) fail(err error) int {
	if errors.Is(err, control.ErrNotRunning) && c.lookedAt != "" {
		err = fmt.Errorf("%w; looked in %s: is mxedge running with this configuration? (-config FILE or $MXEDGE_CONFIG name another)", err, c.lookedAt)
	}
	fmt.Fprintf(c.stderr, "%s: %v\n", c.title, err)
	return 1
}

func (c *adminCmd) printJSON(v any) int {
	if err := json.NewEncoder(c.stdout).Encode(v); err != nil {
		return c.fail(err)
	}
	return 0
}

// fetch is the common part of the admin commands that read something from
// the daemon: parse args (exactly n positional), connect, call, and with
// -json print the result. done is true when the command is finished (JSON
// printed, or an error reported); code is then its exit status.
func fetch[T any](c *adminCmd, args []string, n int, call func(context.Context, *control.Client, []string) (T, error)) (v T, code int, done bool) {
	pos, ok := c.parse(args, n, n)
	if !ok {
		return v, 2, true
	}
	cl, err := c.client()
	if err != nil {
		return v, c.fail(err), true
	}
	if v, err = call(context.Background(), cl, pos); err != nil {
		return v, c.fail(err), true
	}
	if *c.json {
		return v, c.printJSON(v), true
	}
	return v, 0, false
}
