package integration

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The example unit file has the settings docs/deploy.md promises
// (Type=notify, no root, port 25 by capability, a read-only system but
// the data directory) and passes systemd-analyze verify (with ExecStart
// pointing at the binary under test, which must exist for the check).
func TestSystemdUnitVerifies(t *testing.T) {
	unit, err := os.ReadFile("../examples/mxedge.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "User=mxedge", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
		"NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/mxedge", "ExecReload=/bin/kill -HUP $MAINPID",
		"ExecStart=/usr/local/bin/mxedge serve -config /etc/mxedge/mxedge.toml"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `$`).Match(unit) {
			t.Errorf("examples/mxedge.service lacks the line %q", want)
		}
	}
	// Without AF_NETLINK net.InterfaceAddrs fails, and a relay on ":25"
	// no longer knows its own addresses in the MX walk (delivery/self.go).
	if m := regexp.MustCompile(`(?m)^RestrictAddressFamilies=(.*)$`).FindSubmatch(unit); m != nil && !strings.Contains(string(m[1]), "AF_NETLINK") {
		t.Errorf("examples/mxedge.service: RestrictAddressFamilies=%s lacks AF_NETLINK", m[1])
	}
	path, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze is not installed (Debian package systemd)")
		}
		t.Skip("systemd-analyze is not installed")
	}
	text := strings.Replace(string(unit), "ExecStart=/usr/local/bin/mxedge", "ExecStart="+binary, 1)
	dir := t.TempDir()
	file := filepath.Join(dir, "mxedge.service")
	os.WriteFile(file, []byte(text), 0o644)
	out, err := exec.Command(path, "verify", file).CombinedOutput()
	// systemd-analyze complains about the User= not existing on this
	// machine only as a warning; anything about the unit's own syntax or
	// an unknown setting is an error and a non-zero exit.
	if err != nil || strings.Contains(string(out), "Unknown key") || strings.Contains(string(out), "Failed to parse") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// Under Type=notify the relay says READY=1 once it serves, RELOADING=1 and
// READY=1 around SIGHUP, STOPPING=1 at SIGTERM.
func TestSystemdNotify(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	t.Setenv("NOTIFY_SOCKET", sock)
	r := startRelay(t, dir, "-config", writeConfig(t, dir, relayConfig(filepath.Join(dir, "data"), mx, be.Addr())))
	next := func() string {
		t.Helper()
		ln.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 512)
		n, err := ln.Read(b)
		if err != nil {
			t.Fatal(err)
		}
		return string(b[:n])
	}
	if m := next(); !strings.HasPrefix(m, "READY=1") {
		t.Fatalf("first notification %q", m)
	}
	r.cmd.Process.Signal(syscall.SIGHUP)
	if m := next(); !strings.HasPrefix(m, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("at SIGHUP: %q", m)
	}
	if m := next(); !strings.HasPrefix(m, "READY=1") {
		t.Errorf("after the reload: %q", m)
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	if m := next(); !strings.HasPrefix(m, "STOPPING=1") {
		t.Errorf("at SIGTERM: %q", m)
	}
}
