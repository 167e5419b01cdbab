package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime/debug"
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

// The demo's data directory is relative: an admin command run from
// another directory than "mxedge serve" says which directory it looked
// in, and a command without a subcommand name has no stray blank in its
// messages.
func TestNotRunningSaysWhereItLooked(t *testing.T) {
	if _, err := os.Stat(defaultConfigPath); err == nil {
		t.Skip(defaultConfigPath + " exists on this machine: the demo default is not used")
	}
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv("MXEDGE_CONFIG", "")
	_, errOut, code := runCmd(t, "reload")
	want := "mxedge reload: mxedge is not running (no control socket at mxedge-data/control.sock); looked in data_dir ./mxedge-data (from this directory: " +
		filepath.Join(dir, "mxedge-data") + ") of " + demoSource
	if code != 1 || !strings.HasPrefix(errOut, want) {
		t.Errorf("reload without a daemon: exit %d\n%s\nwant it to begin with\n%s", code, errOut, want)
	}
}

// "mxedge config check" reports a type error, an unknown key and a
// validation problem of one file in one run, each with file:line, in the
// order of the file, and prints no configuration.
func TestConfigCheckReportsEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mxedge.toml")
	os.WriteFile(path, []byte(`hostname = "mx1.example.net"
relay_domains = ["example.org"]
[routes]
"example.org" = "[10.0.0.25]:25"
[limits]
recipients = "many"
[[listener]]
adress = ":25"
[queue]
concurrency = 0
`), 0o600)
	out, errOut, code := runCmd(t, "config", "check", "-config", path)
	want := path + `:6:14: key "limits.recipients": expected integer, got string` + "\n" +
		path + `:7:3: listener[0].address "": not "host:port" or "[host]:port": missing port in address` + "\n" +
		path + `:8:1: key "listener[0].adress": unknown key` + "\n" +
		path + `:10:1: queue.concurrency 0: must be at least 1` + "\n"
	if code != 1 || out != "" || errOut != want {
		t.Errorf("config check: exit %d, stdout %q\nstderr\n%s\nwant\n%s", code, out, errOut, want)
	}
}

// "mxedge version" names the revision once, whether Go put it into a
// pseudo-version or only into the VCS settings.
func TestVersionOf(t *testing.T) {
	vcs := []debug.BuildSetting{{Key: "vcs.revision", Value: "304a6a88be14a76d2a7076698cdd9adcf3b6a443"},
		{Key: "vcs.time", Value: "2026-12-02T15:10:46Z"}}
	for _, tc := range []struct {
		main     string
		settings []debug.BuildSetting
		want     string
	}{
		{"v1.2.3", nil, "v1.2.3 go1.26.0"},
		{"(devel)", vcs, "(devel) 304a6a88be14 2026-12-02T15:10:46Z go1.26.0"},
		{"(devel)", append(vcs, debug.BuildSetting{Key: "vcs.modified", Value: "true"}), "(devel) 304a6a88be14+dirty 2026-12-02T15:10:46Z go1.26.0"},
		{"v0.0.0-20261202151046-304a6a88be14", vcs, "v0.0.0-20261202151046-304a6a88be14 go1.26.0"},
		{"(devel)", nil, "(devel) go1.26.0"},
	} {
		bi := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: tc.main}, Settings: tc.settings}
		if got := versionOf(bi); got != tc.want {
			t.Errorf("%s %v: %q, want %q", tc.main, tc.settings, got, tc.want)
		}
	}
}
