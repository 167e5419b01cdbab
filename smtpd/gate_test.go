package smtpd

import (
	"bufio"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mxedge/mxedge/internal/testlog"
	"github.com/mxedge/mxedge/policy"
	"github.com/mxedge/mxedge/queue"
)

// dialFrom connects to addr from the local address ip (127.0.0.x) and
// returns the connection and the first line the listener sent.
func dialFrom(t *testing.T, ip, addr string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(nc)
	line, err := r.ReadString('\n')
	if err != nil && line == "" {
		return nc, r, "EOF"
	}
	return nc, r, strings.TrimRight(line, "\r\n")
}

// 300 idle connections from 127.0.0.5 are capped at the per-client limit
// (50), while a client on 127.0.0.6 is still served; the refusals are one
// log line per client per minute, not one per connection.
func TestPerClientSessionLimit(t *testing.T) {
	var logs testlog.Buffer
	lim := &policy.Limits{Sessions: 50}
	s, addr, q, _ := startServer(t, func(o *Options) { o.Logger = logs.Logger() }, queue.Options{}, lim)
	admitted, refused := 0, 0
	for i := 0; i < 300; i++ {
		_, _, first := dialFrom(t, "127.0.0.5", addr)
		switch first {
		case "220 mx.example.test ESMTP Service Ready":
			admitted++
		case "421 4.7.0 Error: too many connections from 127.0.0.5":
			refused++
		default:
			t.Fatalf("connection %d: %q", i, first)
		}
	}
	if admitted != 50 || refused != 250 {
		t.Errorf("admitted %d, refused %d; want 50 and 250", admitted, refused)
	}
	// Another client is served, and its mail accepted.
	nc, r, first := dialFrom(t, "127.0.0.6", addr)
	if !strings.HasPrefix(first, "220 ") {
		t.Fatalf("other client: %q", first)
	}
	c := &client{t: t, c: nc, r: r}
	c.envelope("user@relay.test")
	c.send("Subject: x\r\n\r\nhi\r\n.\r\n")
	queuedID(t, c.reply())
	if st, _ := q.Stats(); st.Messages != 1 {
		t.Errorf("queued %+v", st)
	}
	if n := strings.Count(logs.String(), `msg="connection refused" listener=mx stage=limit client_ip=127.0.0.5`); n != 1 {
		t.Errorf("%d log lines for the refusals of 127.0.0.5, want 1:\n%s", n, logs.String())
	}
	if got := s.Refusals()["limit"]; got != 250 {
		t.Errorf("limit refusals counted: %d", got)
	}
}

// The pregreet test: a client that sends EHLO before the banner's last
// line is dropped; a patient one passes, after the wait, and the next
// time gets the banner at once. Allowlisted clients are not tested.
func TestPregreet(t *testing.T) {
	const wait = 300 * time.Millisecond
	var logs testlog.Buffer
	allow, _ := policy.ParseCIDRList("allow", strings.NewReader("127.0.0.9\n"))
	s, addr, _, _ := startServer(t, func(o *Options) {
		o.PregreetWait = wait
		o.Logger = logs.Logger()
	}, queue.Options{}, &policy.Allowlist{List: allow})

	// The early talker.
	nc, r, first := dialFrom(t, "127.0.0.7", addr)
	if first != "220-mx.example.test ESMTP" {
		t.Fatalf("first banner line %q", first)
	}
	io.WriteString(nc, "EHLO bot.test\r\n")
	rest, _ := io.ReadAll(r)
	if string(rest) != "554 5.5.1 Protocol error\r\n" {
		t.Errorf("early talker got %q", rest)
	}
	if !strings.Contains(logs.String(), `msg="connection refused" listener=mx stage=pregreet client_ip=127.0.0.7`) ||
		!strings.Contains(logs.String(), `input="\"EHLO bot.test\\r\\n\""`) {
		t.Errorf("log:\n%s", logs.String())
	}
	// It is tested again next time.
	if _, _, first := dialFrom(t, "127.0.0.7", addr); first != "220-mx.example.test ESMTP" {
		t.Errorf("early talker's next connection: %q", first)
	}

	// The patient client.
	t0 := time.Now()
	nc, r, first = dialFrom(t, "127.0.0.8", addr)
	if first != "220-mx.example.test ESMTP" {
		t.Fatalf("first banner line %q", first)
	}
	c := &client{t: t, c: nc, r: r}
	c.expect("220 mx.example.test ESMTP Service Ready")
	if d := time.Since(t0); d < wait {
		t.Errorf("last banner line after %v, before the wait of %v", d, wait)
	}
	c.cmd("EHLO client.test", "250")
	c.cmd("QUIT", "221")
	// Next time: the banner at once, one line.
	t0 = time.Now()
	if _, _, first := dialFrom(t, "127.0.0.8", addr); first != "220 mx.example.test ESMTP Service Ready" {
		t.Errorf("second connection: %q", first)
	}
	if d := time.Since(t0); d >= wait {
		t.Errorf("second connection waited %v", d)
	}
	// Allowlisted: no test at all.
	if _, _, first := dialFrom(t, "127.0.0.9", addr); first != "220 mx.example.test ESMTP Service Ready" {
		t.Errorf("allowlisted client: %q", first)
	}
	if got := s.Refusals()["pregreet"]; got != 1 {
		t.Errorf("pregreet refusals counted: %d", got)
	}
}

// Pipelining is not talking out of turn: a client that pipelines its
// whole transaction after the banner, and sends its message right after
// DATA without waiting for 354 (as a client that did not get PIPELINING
// might), is served.
func TestPipelinedClientIsServed(t *testing.T) {
	_, addr, q, _ := startServer(t, func(o *Options) { o.PregreetWait = 50 * time.Millisecond }, queue.Options{})
	nc, r, first := dialFrom(t, "127.0.0.10", addr)
	if first != "220-mx.example.test ESMTP" {
		t.Fatal(first)
	}
	c := &client{t: t, c: nc, r: r}
	c.expect("220 ")
	c.send("EHLO client.test\r\nMAIL FROM:<s@src.test>\r\nRCPT TO:<u@relay.test>\r\nDATA\r\nSubject: p\r\n\r\npipelined\r\n.\r\nQUIT\r\n")
	for _, want := range []string{"250", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0 Ok: queued as", "221"} {
		c.expect(want)
	}
	if st, _ := q.Stats(); st.Messages != 1 {
		t.Errorf("queued %+v", st)
	}
}

// The gate's goroutines and the pregreet test end with their
// connections: many clients coming and going leave nothing behind.
func TestGateLeavesNothing(t *testing.T) {
	s, addr, _, _ := startServer(t, func(o *Options) { o.PregreetWait = 20 * time.Millisecond }, queue.Options{},
		&policy.Limits{Sessions: 3})
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			if i%2 == 0 {
				io.WriteString(nc, "EHLO x\r\n")
			}
			nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			io.ReadAll(io.LimitReader(nc, 200))
			nc.Close()
		}()
	}
	wg.Wait()
	waitFor(t, func() bool { return s.gate.sessions.Load() == 0 && s.pregreet.tests.Load() == 0 }, "sessions to end")
}

// waitFor polls cond (state the server changes on its own goroutines)
// for up to 10 s.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// emfileListener fails its first accepts with EMFILE, as a process out
// of file descriptors does.
type emfileListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// Out of file descriptors, the listener backs off and goes on accepting
// instead of ending.
func TestAcceptBacksOffOnEMFILE(t *testing.T) {
	var logs testlog.Buffer
	dir := t.TempDir()
	q, err := queue.Open(dir, queue.Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	s := New(Options{Hostname: "mx.example.test", Logger: logs.Logger()}, q, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	el := &emfileListener{Listener: ln}
	el.fails.Store(5)
	done := make(chan error, 1)
	go func() { done <- s.Serve(el) }()
	defer func() { s.Close(); <-done }()
	c := dial(t, ln.Addr().String())
	c.cmd("NOOP", "250")
	if n := strings.Count(logs.String(), `msg="accept failed, retrying"`); n != 5 {
		t.Errorf("%d back-offs logged, want 5:\n%s", n, logs.String())
	}
	select {
	case err := <-done:
		t.Fatalf("Serve ended: %v", err)
	default:
	}
}
