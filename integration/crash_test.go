package integration

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// sendOne submits one message carrying token to the relay and reports
// whether the relay acknowledged it with 250.
func sendOne(addr, token string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	c.CommandTimeout = 10 * time.Second
	c.SubmissionTimeout = 10 * time.Second
	if err := c.Hello("loadgen.test"); err != nil {
		return err
	}
	if err := c.Mail("sender@src.test", nil); err != nil {
		return err
	}
	if err := c.Rcpt("alice@relay.test", nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Subject: %s\r\nX-Token: %s\r\n\r\n%s\r\n", token, token, strings.Repeat("crash safety body line\r\n", 40))
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

var tokenRe = regexp.MustCompile(`X-Token: (tok-\d+)`)

// Operator's story: the relay is killed with SIGKILL while clients are
// sending. After a restart, every message that got a 250 reaches the
// backend (at least once).
func TestKill9LosesNoAcknowledgedMessage(t *testing.T) {
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	cfg := writeConfig(t, dir, relayConfig(filepath.Join(dir, "data"), mx, be.Addr()))

	var mu sync.Mutex
	acked := map[string]bool{}
	next := 0
	const rounds, perRound, workers = 3, 60, 8
	for round := 0; round < rounds; round++ {
		r := startRelay(t, dir, "-config", cfg)
		killAt := make(chan struct{})
		var once sync.Once
		var wg sync.WaitGroup
		roundAcked := 0
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					mu.Lock()
					next++
					tok := fmt.Sprintf("tok-%d", next)
					mu.Unlock()
					if err := sendOne(mx, tok); err != nil {
						select {
						case <-killAt:
							return // the relay is gone: stop this client
						default:
							t.Errorf("send %s before the kill: %v", tok, err)
							return
						}
					}
					mu.Lock()
					acked[tok] = true
					roundAcked++
					if roundAcked == perRound {
						once.Do(func() { close(killAt) })
					}
					mu.Unlock()
				}
			}()
		}
		<-killAt
		r.kill() // mid-traffic: sessions in DATA, commits, deliveries in flight
		wg.Wait()
	}

	// Restart once more and let the queue drain.
	startRelay(t, dir, "-config", cfg)
	deadline := time.Now().Add(60 * time.Second)
	for {
		seen := map[string]int{}
		msgs := be.Messages()
		for _, m := range msgs {
			if tm := tokenRe.FindSubmatch(m.Body()); tm != nil {
				seen[string(tm[1])]++
			}
		}
		var missing []string
		dups := 0
		for tok := range acked {
			if seen[tok] == 0 {
				missing = append(missing, tok)
			}
		}
		for _, n := range seen {
			dups += n - 1
		}
		if len(missing) == 0 {
			t.Logf("%d acknowledged over %d kill -9 cycles, all delivered; %d delivered twice; %d delivered without a 250 (acked at commit, reply lost)",
				len(acked), rounds, dups, len(seen)-len(acked))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged messages never reached the backend, e.g. %v", len(missing), len(acked), missing[:min(5, len(missing))])
		}
		be.WaitMessages(len(msgs)+1, time.Until(deadline))
	}
}

// Operator's story: the backend is down, the relay queues the message;
// SIGTERM stops the relay cleanly; after the backend and the relay are
// back, the queued message is delivered.
func TestGracefulStopAndRestartContinues(t *testing.T) {
	dir := t.TempDir()
	beAddr := freeAddr(t, "127.0.0.3") // nothing listens here yet
	mx := freeAddr(t, "127.0.0.2")
	cfg := writeConfig(t, dir, relayConfig(filepath.Join(dir, "data"), mx, beAddr))
	r := startRelay(t, dir, "-config", cfg)
	if err := sendOne(mx, "tok-graceful"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.logs.wait("msg=delivery|status=deferred|connect", 1, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	code, err := r.stop(15 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("SIGTERM: exit %d, %v", code, err)
	}
	if _, err := r.logs.wait("msg=\"mxedge stopped\"", 1, time.Second); err != nil {
		t.Error(err)
	}

	be := startBackend(t, beAddr)
	startRelay(t, dir, "-config", cfg)
	msgs, err := be.WaitMessages(1, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(msgs[0].Body()), "X-Token: tok-graceful") {
		t.Errorf("unexpected message %q", msgs[0].Raw)
	}
}
