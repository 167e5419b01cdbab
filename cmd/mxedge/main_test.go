package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return o.String(), e.String(), code
}

func TestVersionAndConfigHelp(t *testing.T) {
	if out, _, code := runCmd(t, "version"); code != 0 || !strings.HasPrefix(out, "mxedge ") || !strings.Contains(out, "go1.") {
		t.Errorf("version: %d %q", code, out)
	}
	if _, errOut, code := runCmd(t, "config"); code != 2 || !strings.Contains(errOut, "mxedge config check") {
		t.Errorf("config without a subcommand: %d %q", code, errOut)
	}
	if _, errOut, code := runCmd(t, "config", "lint"); code != 2 || !strings.Contains(errOut, `unknown command "config lint"`) {
		t.Errorf("config lint: %d %q", code, errOut)
	}
}

// Without -config, $MXEDGE_CONFIG names the file; a missing daemon is
// reported with where it was looked for.
func TestConfigFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mx.toml")
	os.WriteFile(path, []byte("hostname = \"mx1.env.test\"\ndata_dir = \""+dir+"\"\nrelay_domains = []\n"), 0o600)
	t.Setenv("MXEDGE_CONFIG", path)
	out, errOut, code := runCmd(t, "config", "check")
	if code != 0 || !strings.Contains(out, path+" (from $MXEDGE_CONFIG)") || !strings.Contains(out, "hostname = 'mx1.env.test'") {
		t.Errorf("config check: %d\n%s%s", code, out, errOut)
	}
	_, errOut, code = runCmd(t, "queue", "stats")
	if code != 1 || !strings.Contains(errOut, "is not running") || !strings.Contains(errOut, "data_dir "+dir+" of "+path+" (from $MXEDGE_CONFIG)") {
		t.Errorf("queue stats without a daemon: %d %q", code, errOut)
	}
	if _, errOut, code = runCmd(t, "serve", "-log-format", "xml"); code != 2 || !strings.Contains(errOut, `-log-format "xml"`) {
		t.Errorf("bad log format: %d %q", code, errOut)
	}
}
