package integration

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxedge/mxedge/internal/smtptest"
	"github.com/mxedge/mxedge/resolver/dnstest"
)

// pairPort returns a port free on both 127.0.0.2 and 127.0.0.3: the two
// MX hosts of a pair listen on the same port, which stands in for 25
// (delivery.mx_port of the relay that delivers to them).
func pairPort(t *testing.T) string {
	t.Helper()
	for range 20 {
		_, port, _ := net.SplitHostPort(freeAddr(t, "127.0.0.2"))
		if ln, err := net.Listen("tcp", "127.0.0.3:"+port); err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no port free on 127.0.0.2 and 127.0.0.3")
	return ""
}

// pairConfig is one relay of the MX-10 pair of pair.test: the identical
// configuration on both but for hostname, address and data directory.
func pairConfig(hostname, dataDir, listen, backend, dns string) string {
	return fmt.Sprintf(`hostname = %q
data_dir = %q
relay_domains = ["pair.test"]

[[listener]]
address = %q
# The pair's story is failover, not the edge defenses (edge_test.go).
client_no_ptr = "off"
client_ptr_mismatch = "off"
helo_invalid = "off"
helo_unknown = "off"
sender_unknown_domain = "off"
pregreet_wait = "0s"

[routes]
"pair.test" = %q

[dns]
servers = [%q]

[queue]
min_backoff = "1s"
max_backoff = "2s"

[timeouts]
shutdown = "5s"

[verify]
mode = "off"
`, hostname, dataDir, listen, backend, dns)
}

// The MX-10 pair (shared/PRINCIPLES.md: two equal MX 10 relays, no backup
// MX, no load balancer): pair.test has two MX 10 hosts, both mxedge in
// front of one backend. A third mxedge (relay C) sends mail to pair.test
// by MX: the delivery status notifications it returns to senders at
// pair.test, the mail an edge relay sends out by itself.
//
// One relay of the pair stops: relay C fails over to the other within the
// same delivery attempt: no deferral, no bounce, no message lost. It comes
// back: relay C spreads the load over both again.
func TestMX10PairFailover(t *testing.T) {
	dir := t.TempDir()
	port := pairPort(t)
	dns := dnstest.StartTB(t,
		"pair.test. 300 IN MX 10 mxa.pair.test.",
		"pair.test. 300 IN MX 10 mxb.pair.test.",
		"mxa.pair.test. 300 IN A 127.0.0.2",
		"mxb.pair.test. 300 IN A 127.0.0.3",
	)
	pairBackend, err := smtptest.Start("127.0.0.5:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pairBackend.Close)

	startPair := func(name, ip string) *relay {
		d := filepath.Join(dir, name)
		cfg := pairConfig(name+".pair.test", filepath.Join(d, "data"), ip+":"+port, pairBackend.Addr(), dns.Addr())
		return startRelay(t, dir, "-config", writeConfig(t, t.TempDir(), cfg))
	}
	a := startPair("mxa", "127.0.0.2")
	startPair("mxb", "127.0.0.3")

	// Relay C: its own relay domain origin.test, whose backend knows
	// alice only; pair.test by MX through the test DNS server.
	originBackend := startBackend(t, "127.0.0.3:0")
	cAddr := freeAddr(t, "127.0.0.4")
	cDir := t.TempDir()
	cfg := relayConfig(filepath.Join(cDir, "data"), cAddr, originBackend.Addr()) + fmt.Sprintf(`
[delivery]
mx_port = %s
`, port)
	cfg = strings.Replace(cfg, `hostname = "mx1.relay.test"`, `hostname = "relay-c.test"`, 1)
	cfg = withDNS(cfg, dns.Addr())
	c := startRelay(t, cDir, "-config", writeConfig(t, cDir, cfg))

	// send makes relay C return a message to user<i>@pair.test: accepted
	// for nobody@relay.test, refused by its backend, bounced by MX.
	send := func(i int) {
		t.Helper()
		out, code := swaks(t, cAddr, "--from", fmt.Sprintf("user%d@pair.test", i), "--to", "nobody@relay.test",
			"--header", fmt.Sprintf("Subject: pair test %d", i))
		if code != 0 {
			t.Fatalf("swaks (%d):\n%s", code, out)
		}
	}
	// relayedBy counts the DSNs at the pair's backend by the pair relay
	// that took them (its Received header), from message from on.
	relayedBy := func(from int) (na, nb int) {
		for _, m := range pairBackend.Messages()[from:] {
			switch raw := string(m.Raw); {
			case strings.Contains(raw, "by mxa.pair.test (mxedge)"):
				na++
			case strings.Contains(raw, "by mxb.pair.test (mxedge)"):
				nb++
			}
		}
		return na, nb
	}

	// Both up: delivered by MX.
	send(0)
	if _, err := pairBackend.WaitMessages(1, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	// mxa stops.
	if code, err := a.stop(10 * time.Second); err != nil || code != 0 {
		t.Fatalf("stopping mxa: exit %d, %v", code, err)
	}
	const down = 8
	for i := 1; i <= down; i++ {
		send(i)
	}
	if _, err := pairBackend.WaitMessages(1+down, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if na, nb := relayedBy(1); na != 0 || nb != down {
		t.Errorf("while mxa is down: %d via mxa, %d via mxb; want 0 and %d", na, nb, down)
	}
	for i := 1; i <= down; i++ {
		to := fmt.Sprintf("to=<user%d@pair.test>", i)
		if _, err := c.logs.wait("msg=delivery|"+to+"|mxb.pair.test:"+port+" [127.0.0.3:"+port+"]|status=sent", 1, 10*time.Second); err != nil {
			t.Error(err)
		}
	}
	// Failed over within the attempt: nothing deferred, nothing bounced.
	for _, bad := range []string{"status=deferred", "status=bounced"} {
		if hits, _ := c.logs.wait("@pair.test>|"+bad, 1, 0); len(hits) > 0 {
			t.Errorf("relay C: %s", hits[0])
		}
	}

	// mxa is back: after relay C's memory of the failure ends
	// (queue.min_backoff, dead period at most queue.max_backoff), the load
	// spreads over both again.
	startPair("mxa", "127.0.0.2")
	time.Sleep(3 * time.Second)
	const up = 20
	for i := 1; i <= up; i++ {
		send(100 + i)
	}
	if _, err := pairBackend.WaitMessages(1+down+up, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	// Binomial(20, 1/2): fewer than 2 on one side has probability 4e-5.
	na, nb := relayedBy(1 + down)
	if na < 2 || nb < 2 || na+nb != up {
		t.Errorf("after mxa is back: %d via mxa, %d via mxb", na, nb)
	}
	t.Logf("after mxa is back: %d via mxa, %d via mxb", na, nb)
	if n := len(pairBackend.Messages()); n != 1+down+up {
		t.Errorf("%d messages at the backend, want %d: one each", n, 1+down+up)
	}
}
