package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/mxedge/mxedge/internal/fileowner"
	"github.com/mxedge/mxedge/submission"
)

const dkimUsage = `usage:
  mxedge dkim keygen -domain D -selector S [-type rsa|ed25519] [-out FILE] [-config FILE]
        write a new key (mode 0600; default <data_dir>/dkim/D.S.key) and print the
        DNS TXT record to publish and the [[dkim_sign]] entry to add
  mxedge dkim show [-config FILE]
        print the DNS TXT record of every [[dkim_sign]] key
`

func cmdDKIM(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		fmt.Fprint(stdout, dkimUsage)
		return 0
	}
	if len(args) == 0 || (args[0] != "keygen" && args[0] != "show") {
		fmt.Fprint(stderr, dkimUsage)
		return 2
	}
	fs := flag.NewFlagSet("dkim "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (default: $MXEDGE_CONFIG, "+defaultConfigPath+", the built-in demo)")
	domain := fs.String("domain", "", "signing domain (d=)")
	selector := fs.String("selector", "", "selector (s=)")
	kind := fs.String("type", "rsa", "rsa (2048 bits) or ed25519")
	out := fs.String("out", "", "key file to write")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	cfg, _, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if args[0] == "show" {
		if len(cfg.DKIMSign) == 0 {
			fmt.Fprintln(stderr, "mxedge dkim: no [[dkim_sign]] keys configured")
			return 1
		}
		keys, err := loadDKIMKeys(cfg)
		for _, k := range keys {
			fmt.Fprintf(stdout, "; %s %s, %s\n%s\n\n", k.Algorithm(), k.TXTName(), k.File, k.ZoneLine())
		}
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	}
	if *domain == "" || *selector == "" {
		fmt.Fprint(stderr, dkimUsage)
		return 2
	}
	d, s := strings.ToLower(*domain), *selector
	file := *out
	if file == "" {
		file = filepath.Join(cfg.DataDir, "dkim", d+"."+s+".key")
	}
	pemKey, err := submission.GenerateKey(*kind)
	dir := filepath.Dir(file)
	if _, serr := os.Stat(dir); err == nil && errors.Is(serr, os.ErrNotExist) {
		// Run as root, the new directory and key belong to the owner of
		// the directory above (the data directory: the relay's user),
		// who must read the key (internal/fileowner).
		if err = os.MkdirAll(dir, 0o700); err == nil {
			err = fileowner.Match(dir, filepath.Dir(dir))
		}
	}
	if err == nil {
		// O_EXCL: never overwrite a key that may be published.
		var f *os.File
		if f, err = os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
			_, err = f.Write(pemKey)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
	}
	if err == nil {
		err = fileowner.Match(file, dir)
	}
	if err != nil {
		fmt.Fprintln(stderr, "mxedge dkim keygen:", err)
		return 1
	}
	k, err := submission.LoadKey(d, s, file)
	if err != nil {
		fmt.Fprintln(stderr, "mxedge dkim keygen:", err)
		return 1
	}
	fmt.Fprintf(stdout, "key written to %s (%s)\n\npublish in DNS:\n%s\n\nand add to the configuration:\n[[dkim_sign]]\ndomain = %q\nselector = %q\nkey_file = %q\n",
		file, k.Algorithm(), k.ZoneLine(), d, s, file)
	return 0
}
