package integration

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Operator's story: a second domain moves onto the relay and the
// backend moves to a new host. The postmaster edits the file and runs
// "mxedge reload": the next message takes the new route, the new domain
// is accepted, a session opened before the reload is not closed. A broken
// edit is refused with file:line and the old configuration stays; a
// listener address change is reported as needing a restart.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	oldBE := startBackend(t, "127.0.0.3:0")
	newBE := startBackend(t, "127.0.0.4:0")
	mx := freeAddr(t, "127.0.0.2")
	data := filepath.Join(dir, "data")
	base := relayConfig(data, mx, oldBE.Addr())
	cfg := writeConfig(t, dir, base)
	r := startRelay(t, dir, "-config", cfg)

	if err := sendFrom(mx, "sender@src.test", "alice@relay.test", "before"); err != nil {
		t.Fatal(err)
	}
	if _, err := oldBE.WaitMessages(1, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := sendFrom(mx, "sender@src.test", "alice@other.test", "not yet"); err == nil || !strings.Contains(err.Error(), "554") {
		t.Fatalf("other.test before the reload: %v, want 554", err)
	}
	open := startTransaction(t, mx) // in DATA across the reload

	moved := strings.Replace(base, `relay_domains = ["relay.test"]`, `relay_domains = ["relay.test", "other.test"]`, 1)
	moved = strings.Replace(moved, fmt.Sprintf("%q = %q", "relay.test", oldBE.Addr()),
		fmt.Sprintf("%q = %q\n%q = %q", "relay.test", newBE.Addr(), "other.test", newBE.Addr()), 1)
	writeConfig(t, dir, moved)
	out := mustMxedge(t, "reload", "-config", cfg)
	if !strings.Contains(out, "applied: routes") || !strings.Contains(out, `applied: listener "mx": policy chain`) ||
		strings.Contains(out, "needs a restart") {
		t.Errorf("mxedge reload:\n%s", out)
	}
	open.finishData() // the session from before the reload was not closed
	if err := sendFrom(mx, "sender@src.test", "alice@relay.test", "after"); err != nil {
		t.Fatal(err)
	}
	if err := sendFrom(mx, "sender@src.test", "bob@other.test", "new domain"); err != nil {
		t.Fatalf("other.test after the reload: %v", err)
	}
	msgs, err := newBE.WaitMessages(3, 30*time.Second) // the open one, "after", "new domain"
	if err != nil {
		t.Fatal(err)
	}
	if n := len(oldBE.Messages()); n != 1 {
		t.Errorf("old backend got %d messages, want only the one from before the reload", n)
	}
	_ = msgs

	// A broken edit: refused with file:line, the old (moved) config stays.
	writeConfig(t, dir, moved+"\n[limits]\nrecipients = \"many\"\n")
	_, errOut, code := mxedge(t, "reload", "-config", cfg)
	if code != 1 || !strings.Contains(errOut, "mxedge.toml:") || !strings.Contains(errOut, "limits.recipients") {
		t.Errorf("reload of a broken file: exit %d, stderr %q; want 1 and file:line", code, errOut)
	}
	if err := sendFrom(mx, "sender@src.test", "alice@other.test", "still"); err != nil {
		t.Errorf("after a refused reload: %v (the old configuration should stay)", err)
	}
	// SIGHUP with the broken file: logged, the relay goes on.
	r.cmd.Process.Signal(syscall.SIGHUP)
	if _, err := r.logs.wait("configuration not reloaded|limits.recipients", 1, 10*time.Second); err != nil {
		t.Error(err)
	}

	// A listener address change needs a restart.
	writeConfig(t, dir, strings.Replace(moved, fmt.Sprintf("address = %q", mx), fmt.Sprintf("address = %q", freeAddr(t, "127.0.0.2")), 1))
	out = mustMxedge(t, "reload", "-config", cfg)
	if !strings.Contains(out, `needs a restart: listener "mx" on `+mx) {
		t.Errorf("reload with a new listener address:\n%s", out)
	}
}

// Reload under load: 20 sessions keep sending while the configuration is
// reloaded again and again; every message is accepted and delivered.
func TestReloadUnderLoad(t *testing.T) {
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	cfg := writeConfig(t, dir, relayConfig(filepath.Join(dir, "data"), mx, be.Addr()))
	r := startRelay(t, dir, "-config", cfg)

	const senders, each = 20, 5
	var wg sync.WaitGroup
	errs := make(chan error, senders*each)
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				if err := sendFrom(mx, "sender@src.test", "alice@relay.test", fmt.Sprintf("load %d-%d", i, j)); err != nil {
					errs <- err
				}
			}
		}()
	}
	reloads := 0
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
loop:
	for {
		select {
		case <-done:
			break loop
		default:
		}
		if reloads%2 == 0 {
			mustMxedge(t, "reload", "-config", cfg)
		} else {
			r.cmd.Process.Signal(syscall.SIGHUP)
			if _, err := r.logs.wait("configuration reloaded", reloads+1, 10*time.Second); err != nil {
				t.Fatal(err)
			}
		}
		reloads++
	}
	close(errs)
	for err := range errs {
		t.Errorf("refused during reloads: %v", err)
	}
	if _, err := be.WaitMessages(senders*each, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := len(be.Messages()); n != senders*each {
		t.Errorf("backend got %d messages, want %d", n, senders*each)
	}
	if reloads < 2 {
		t.Errorf("only %d reloads during the load", reloads)
	}
	t.Logf("%d messages, %d reloads", senders*each, reloads)
}
