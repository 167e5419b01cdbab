package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxedge/mxedge/resolver/dnstest"
)

// The MX listener's edge defenses, told as an operator would see them on
// the internet: spambots that talk early, clients without reverse DNS,
// listed clients, a flood of connections.

// edgeConfig is a relay with the listener's defenses at their defaults
// (plus listenerKeys), DNS from dns, verification off.
func edgeConfig(dataDir, mx, backend, dns, listenerKeys string) string {
	return fmt.Sprintf(`hostname = "mx1.relay.test"
data_dir = %q
relay_domains = ["relay.test"]

[[listener]]
address = %q
%s

[routes]
"relay.test" = %q

[queue]
min_backoff = "1s"
max_backoff = "2s"

[timeouts]
shutdown = "5s"

[dns]
servers = [%q]
timeout = "1s"

[verify]
mode = "off"
`, dataDir, mx, listenerKeys, backend, dns)
}

// readLine reads one line of a reply, without CRLF.
func readLine(t *testing.T, nc net.Conn, r *bufio.Reader) string {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	l, err := r.ReadString('\n')
	if err != nil {
		return "EOF " + l
	}
	return strings.TrimRight(l, "\r\n")
}

// A spambot that talks before the banner's last line is dropped with 554;
// swaks, which waits, gets the two-line banner after the wait and its
// mail through, and on its next connection the banner at once.
func TestEdgePregreet(t *testing.T) {
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	cfg := edgeConfig(filepath.Join(dir, "data"), mx, be.Addr(), "127.0.0.1:9",
		"pregreet_wait = \"700ms\"\nclient_no_ptr = \"off\"\nhelo_unknown = \"off\"\nsender_unknown_domain = \"off\"")
	r := startRelay(t, dir, "-config", writeConfig(t, dir, cfg))

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.41")}}
	nc, err := d.Dial("tcp", mx)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	if l := readLine(t, nc, br); l != "220-mx1.relay.test ESMTP" {
		t.Fatalf("first line %q", l)
	}
	io.WriteString(nc, "EHLO bot.example\r\nMAIL FROM:<spam@bot.example>\r\n")
	if rest, _ := io.ReadAll(br); string(rest) != "554 5.5.1 Protocol error\r\n" {
		t.Errorf("early talker got %q", rest)
	}
	if _, err := r.logs.wait(`msg="connection refused"|stage=pregreet|client_ip=127.0.0.41|reply="554 5.5.1 Protocol error"`, 1, 10*time.Second); err != nil {
		t.Error(err)
	}

	t0 := time.Now()
	out, code := swaks(t, mx, "--local-interface", "127.0.0.42", "--helo", "client.src.test",
		"--from", "s@src.test", "--to", "alice@relay.test")
	if code != 0 || !strings.Contains(out, "<-  220-mx1.relay.test ESMTP") || !strings.Contains(out, "<-  220 mx1.relay.test ESMTP Service Ready") {
		t.Fatalf("patient client: exit %d\n%s", code, out)
	}
	if d := time.Since(t0); d < 700*time.Millisecond {
		t.Errorf("the first session took %v: no wait", d)
	}
	out, code = swaks(t, mx, "--local-interface", "127.0.0.42", "--helo", "client.src.test",
		"--from", "s@src.test", "--to", "alice@relay.test")
	if code != 0 || strings.Contains(out, "220-mx1.relay.test") {
		t.Errorf("the second session was tested again: exit %d\n%s", code, out)
	}
	if _, err := be.WaitMessages(2, 30*time.Second); err != nil {
		t.Error(err)
	}
}

// The client checks against the in-process DNS server: a client with a
// forward-confirmed name gets its mail through and named in Received; one
// without a PTR record, one on a block list above the threshold, a sender
// domain that does not exist and a HELO without a dot are refused in the
// session; an allow list weight cancels a block list hit; an allowlisted
// client passes without any of it.
func TestEdgeClientChecks(t *testing.T) {
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	dns := dnstest.StartTB(t,
		"51.0.0.127.in-addr.arpa. PTR good.src.test.", "good.src.test. A 127.0.0.51",
		"52.0.0.127.in-addr.arpa. PTR listed.src.test.", "listed.src.test. A 127.0.0.52",
		"52.0.0.127.bl1.test. A 127.0.0.2", "52.0.0.127.bl2.test. A 127.0.0.2",
		"53.0.0.127.in-addr.arpa. PTR white.src.test.", "white.src.test. A 127.0.0.53",
		"53.0.0.127.bl1.test. A 127.0.0.2", "53.0.0.127.wl.test. A 127.0.10.1",
		"54.0.0.127.bl1.test. A 127.0.0.2", // 54: no PTR, listed, but allowlisted
		"src.test. MX 10 mx.src.test.", "mx.src.test. A 192.0.2.25",
	)
	allow := filepath.Join(dir, "allow.cidr")
	os.WriteFile(allow, []byte("# trusted\n127.0.0.54\n"), 0o600)
	cfg := edgeConfig(filepath.Join(dir, "data"), mx, be.Addr(), dns.Addr(), fmt.Sprintf(`pregreet_wait = "0s"
allowlist = %q
dnsbl_sites = ["bl1.test=127.0.0.[2..11]*2", "bl2.test", "wl.test=127.0.[0..255].[1..3]*-5"]`, allow))
	r := startRelay(t, dir, "-config", writeConfig(t, dir, cfg))

	send := func(ip, helo, from string, args ...string) string {
		t.Helper()
		out, _ := swaks(t, mx, append([]string{"--local-interface", ip, "--helo", helo, "--from", from, "--to", "alice@relay.test"}, args...)...)
		return out
	}
	if out := send("127.0.0.51", "client.src.test", "s@src.test"); !strings.Contains(out, "<-  250 2.0.0 Ok: queued as") {
		t.Errorf("confirmed client:\n%s", out)
	}
	msgs, err := be.WaitMessages(1, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(msgs[0].Body()), "Received: from client.src.test (good.src.test [127.0.0.51])\r\n") {
		t.Errorf("Received: %q", msgs[0].Body()[:80])
	}
	for _, tc := range []struct {
		ip, helo, from, want string
	}{
		{"127.0.0.52", "client.src.test", "s@src.test", "<** 554 5.7.1 Service unavailable; client [127.0.0.52] blocked using bl1.test"},
		{"127.0.0.55", "client.src.test", "s@src.test", "<** 550 5.7.25 Client host rejected: cannot find your reverse hostname, [127.0.0.55]"},
		{"127.0.0.51", "client.src.test", "s@nowhere.test", "<** 550 5.1.8 <s@nowhere.test>: Sender address rejected: Domain not found"},
		{"127.0.0.51", "client", "s@src.test", "<** 504 5.5.2 <client>: Helo command rejected: need fully-qualified hostname"},
		{"127.0.0.51", "mx1.relay.test", "s@src.test", "<** 550 5.7.1 <mx1.relay.test>: Helo command rejected: you are not me"},
	} {
		if out := send(tc.ip, tc.helo, tc.from); !strings.Contains(out, tc.want) || strings.Contains(out, "queued as") {
			t.Errorf("%s helo %s from %s: want %q\n%s", tc.ip, tc.helo, tc.from, tc.want, out)
		}
	}
	// The DNSBL refusal is logged at RCPT with the client's HELO, sender
	// and recipient (postscreen's "enforce").
	if _, err := r.logs.wait(`msg="recipient rejected"|stage=dnsbl|client_ip=127.0.0.52|helo=client.src.test|from=<s@src.test>|to=<alice@relay.test>|reason="score=3 bl1.test=127.0.0.2*2 bl2.test=127.0.0.2*1"`, 1, 10*time.Second); err != nil {
		t.Error(err)
	}
	// Allow list weight: 2 - 5 < 3. Allowlisted: no PTR and listed, but
	// trusted.
	for _, ip := range []string{"127.0.0.53", "127.0.0.54"} {
		if out := send(ip, "client.src.test", "s@src.test"); !strings.Contains(out, "<-  250 2.0.0 Ok: queued as") {
			t.Errorf("%s:\n%s", ip, out)
		}
	}
	// The allowlisted client's address was never asked of the lists.
	if n := dns.Count("54.0.0.127.bl1.test.", 1); n != 0 {
		t.Errorf("allowlisted client looked up %d times", n)
	}
}

// A broken list file stops the start with file and line.
func TestEdgeListFileErrors(t *testing.T) {
	dir := t.TempDir()
	allow := filepath.Join(dir, "allow.cidr")
	os.WriteFile(allow, []byte("192.0.2.0/24\n192.0.2.1/24\n"), 0o600)
	cfg := writeConfig(t, dir, edgeConfig(filepath.Join(dir, "data"), freeAddr(t, "127.0.0.2"), "127.0.0.3:25", "127.0.0.1:9",
		fmt.Sprintf("allowlist = %q", allow)))
	for _, args := range [][]string{{"serve", "-config", cfg}, {"config", "check", "-config", cfg}} {
		_, errOut, code := mxedge(t, args...)
		if code != 1 || !strings.Contains(errOut, allow+`:2: "192.0.2.1/24" has bits set beyond its /24 (write 192.0.2.0/24)`) {
			t.Errorf("%v: exit %d, stderr:\n%s", args, code, errOut)
		}
	}
}

// STARTTLS command injection (CVE-2011-0411 class): a command pipelined
// after STARTTLS in the same packet gets no reply, neither before the
// handshake nor after it.
func TestEdgeSTARTTLSInjection(t *testing.T) {
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	caFile, cert := newCA(t, "mx1.relay.test")
	certFile, keyFile := writeCertFiles(t, dir, "mx", cert)
	cfg := strings.Replace(relayConfig(filepath.Join(dir, "data"), mx, be.Addr()), "[[listener]]\n",
		fmt.Sprintf("[[listener]]\ntls_cert = [%q]\ntls_key = [%q]\n", certFile, keyFile), 1)
	startRelay(t, dir, "-config", writeConfig(t, dir, cfg))

	nc, err := net.Dial("tcp", mx)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	readLine(t, nc, br) // banner
	io.WriteString(nc, "EHLO client.src.test\r\n")
	for l := readLine(t, nc, br); strings.HasPrefix(l, "250-"); l = readLine(t, nc, br) {
	}
	io.WriteString(nc, "STARTTLS\r\nEHLO injected.example\r\n") // one write, one packet
	if l := readLine(t, nc, br); l != "220 2.0.0 Ready to start TLS" {
		t.Fatalf("STARTTLS: %q", l)
	}
	if br.Buffered() != 0 {
		t.Fatalf("more than one reply before the handshake: %d bytes buffered", br.Buffered())
	}
	pool := x509.NewCertPool()
	ca, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(ca)
	tc := tls.Client(nc, &tls.Config{ServerName: "mx1.relay.test", RootCAs: pool})
	tc.SetDeadline(time.Now().Add(20 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake (a plaintext reply to the injected EHLO would break it): %v", err)
	}
	tr := bufio.NewReader(tc)
	io.WriteString(tc, "NOOP\r\n")
	// The first reply after the handshake is NOOP's: nothing unsolicited
	// for the injected EHLO.
	if l, _ := tr.ReadString('\n'); l != "250 2.0.0 Ok\r\n" {
		t.Errorf("first reply after the handshake: %q", l)
	}
	// After STARTTLS the session starts over (RFC 3207 section 4.2).
	io.WriteString(tc, "MAIL FROM:<s@src.test>\r\n")
	if l, _ := tr.ReadString('\n'); !strings.HasPrefix(l, "503 5.5.1") {
		t.Errorf("MAIL before a new EHLO: %q", l)
	}
}

// A connection flood on a relay with few file descriptors: the relay
// lowers max_sessions to what its descriptors allow, refuses the flood
// beyond it with 421, keeps answering the control socket meanwhile, and
// delivers mail once the flood is over.
func TestEdgeConnectionFloodControlSocket(t *testing.T) {
	dir := t.TempDir()
	be := startBackend(t, "127.0.0.3:0")
	mx := freeAddr(t, "127.0.0.2")
	cfg := writeConfig(t, dir, edgeConfig(filepath.Join(dir, "data"), mx, be.Addr(), "127.0.0.1:9",
		"max_sessions = 1000\nclient_sessions = 0\nclient_connection_rate = 0\npregreet_wait = \"0s\"\n"+
			"client_no_ptr = \"off\"\nhelo_unknown = \"off\"\nsender_unknown_domain = \"off\""))
	// 1000 descriptors for a relay that would allow 1000 sessions: beside
	// its reserve (988 with the defaults) 12 sessions fit.
	cmd := exec.Command("sh", "-c", `ulimit -n 1000 && exec "$0" serve -config "$1"`, binary, cfg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	r := startRelayCmd(t, cmd)
	if _, err := r.logs.wait(`max_sessions lowered to fit the file descriptor limit|max_sessions=1000|now=12|rlimit_nofile=1000`, 1, 5*time.Second); err != nil {
		t.Fatal(err)
	}

	const flood = 3000
	var (
		mu      sync.Mutex
		conns   []net.Conn
		dialed  atomic.Int64
		stopped = make(chan struct{})
	)
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	go func() {
		defer close(stopped)
		for i := 0; i < flood; i++ {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(10+i%100))}, Timeout: 5 * time.Second}
			c, err := d.Dial("tcp", mx)
			if err != nil {
				continue
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			dialed.Add(1)
		}
	}()
	for dialed.Load() < flood/3 {
		time.Sleep(10 * time.Millisecond) // the flood's progress: pacing, not synchronisation
	}
	// In the middle of the flood, the admin socket answers.
	for i := 0; i < 3; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, binary, "queue", "stats", "-config", cfg)
		cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil || !strings.Contains(string(out), "messages") {
			t.Fatalf("queue stats under the flood: %v\n%s", err, out)
		}
	}
	<-stopped
	if n := dialed.Load(); n < flood/2 {
		t.Fatalf("only %d of %d flood connections made", n, flood)
	}
	// The flood beyond the sessions was refused at once.
	mu.Lock()
	refused := 0
	for _, c := range conns[len(conns)-50:] {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 64)
		n, _ := io.ReadFull(c, b[:len("421 4.7.0 Too many connections")])
		if strings.HasPrefix(string(b[:n]), "421 4.7.0 Too many connections") {
			refused++
		}
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	mu.Unlock()
	if refused != 50 {
		t.Errorf("%d of the last 50 flood connections got 421", refused)
	}
	// The listener is still there: mail goes through.
	var out string
	var code int
	for i := 0; i < 50; i++ { // the sessions of the flood end as its sockets close
		if out, code = swaks(t, mx, "--from", "s@src.test", "--to", "alice@relay.test", "--helo", "client.src.test"); code == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code != 0 {
		t.Fatalf("after the flood: exit %d\n%s", code, out)
	}
	if _, err := be.WaitMessages(1, 30*time.Second); err != nil {
		t.Error(err)
	}
}
