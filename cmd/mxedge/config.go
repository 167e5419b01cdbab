package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/mxedge/mxedge/config"
)

// loadConfig returns the configuration at path, or the built-in local
// default when path is empty.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Default(), nil
	}
	return config.Load(path)
}

func cmdConfigCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (default: the built-in local default)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := cfg.WriteTOML(stdout); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}
