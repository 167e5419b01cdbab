package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/mxedge/mxedge/config"
)

// defaultConfigPath is where every command looks for the configuration
// when neither -config nor $MXEDGE_CONFIG names one.
const defaultConfigPath = "/etc/mxedge/mxedge.toml"

// loadConfig returns the configuration a command uses and where it came
// from, in this order: the -config flag (path), $MXEDGE_CONFIG,
// /etc/mxedge/mxedge.toml if it exists, else the built-in local demo
// default. from says which, for messages ("built-in demo default (no
// -config, $MXEDGE_CONFIG unset, no /etc/mxedge/mxedge.toml)").
func loadConfig(path string) (cfg *config.Config, from string, err error) {
	switch env := os.Getenv("MXEDGE_CONFIG"); {
	case path != "":
		from = path
	case env != "":
		path, from = env, env+" (from $MXEDGE_CONFIG)"
	default:
		if _, err := os.Stat(defaultConfigPath); err == nil {
			path, from = defaultConfigPath, defaultConfigPath
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("configuration %s: %w", defaultConfigPath, err)
		}
	}
	if path == "" {
		cfg = config.Default()
		// A second demo beside the first (tests, a newcomer trying two
		// relays) moves its listener, backend and metrics.
		if a := os.Getenv("MXEDGE_DEMO_MX"); a != "" {
			cfg.Listeners[0].Address = a
		}
		if a := os.Getenv("MXEDGE_DEMO_BACKEND"); a != "" {
			cfg.Routes["example.test"] = a
		}
		if a, ok := os.LookupEnv("MXEDGE_DEMO_ADMIN"); ok {
			cfg.Admin.HTTP = a // "": off
		}
		return cfg, demoSource, nil
	}
	cfg, err = config.Load(path)
	return cfg, from, err
}

// demoSource is loadConfig's "from" for the built-in demo default.
const demoSource = "built-in demo default (no -config, $MXEDGE_CONFIG unset, no " + defaultConfigPath + ")"

const configUsage = `usage:
  mxedge config check [-config FILE]   validate the configuration and print it with every
                                       default filled in; every problem is reported, each
                                       with file:line; exit 1 on errors
Without -config: $MXEDGE_CONFIG, else /etc/mxedge/mxedge.toml, else the built-in demo.
`

func cmdConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "check":
			return cmdConfigCheck(args[1:], stdout, stderr)
		case "-h", "-help", "--help", "help":
			fmt.Fprint(stdout, configUsage)
			return 0
		}
		fmt.Fprintf(stderr, "mxedge: unknown command \"config %s\"\n", args[0])
	}
	fmt.Fprint(stderr, configUsage)
	return 2
}

func cmdConfigCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (default: $MXEDGE_CONFIG, "+defaultConfigPath+", the built-in demo)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, from, err := loadConfig(*path)
	if err == nil {
		// The list files belong to the configuration.
		err = checkListenerFiles(cfg)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "# effective configuration of %s\n", from)
	if err := cfg.WriteTOML(stdout); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}
