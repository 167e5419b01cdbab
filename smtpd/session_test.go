package smtpd

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mxedge/mxedge/policy"
	"github.com/mxedge/mxedge/queue"
)

// startListener runs an MX listener with a real queue in a temp dir.
// Its chain is relay control for relay.test (unless checks start with a
// relay check of their own), then checks.
func startListener(t *testing.T, edit func(*Options), checks ...policy.Check) (addr string, q *queue.Queue, dir string) {
	t.Helper()
	return startListenerOpts(t, edit, queue.Options{}, checks...)
}

func startListenerOpts(t *testing.T, edit func(*Options), opts queue.Options, checks ...policy.Check) (addr string, q *queue.Queue, dir string) {
	t.Helper()
	s, addr, q, dir := startServer(t, edit, opts, checks...)
	_ = s
	return addr, q, dir
}

// startServer is startListenerOpts that also returns the listener. It
// listens on Options.Address if the edit sets one, else 127.0.0.1:0.
func startServer(t *testing.T, edit func(*Options), opts queue.Options, checks ...policy.Check) (s *Server, addr string, q *queue.Queue, dir string) {
	t.Helper()
	o := Options{Hostname: "mx.example.test", Logger: slog.New(slog.DiscardHandler), Address: "127.0.0.1:0"}
	if edit != nil {
		edit(&o)
	}
	chain := &policy.Chain{}
	if len(checks) == 0 {
		chain.Add(policy.NewRelay([]string{"relay.test"}))
	} else if _, own := checks[0].(*policy.Relay); !own {
		chain.Add(policy.NewRelay([]string{"relay.test"}))
	}
	for _, c := range checks {
		chain.Add(c)
	}
	dir = t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts.Logger = log
	q, err := queue.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	s = New(o, q, chain)
	ln, err := net.Listen("tcp", o.Address)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { s.Serve(ln); close(served) }()
	t.Cleanup(func() { s.smtp.Close(); <-served; q.Close() })
	return s, ln.Addr().String(), q, dir
}

type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, c: c, r: bufio.NewReader(c)}
	cl.expect("220")
	return cl
}

// reply reads one (possibly multi-line) reply and returns its last line.
func (c *client) reply() string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			return "EOF: " + err.Error()
		}
		if len(l) < 4 || l[3] != '-' {
			return strings.TrimRight(l, "\r\n")
		}
	}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) cmd(line, want string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.expect(want)
}

func (c *client) expect(want string) string {
	c.t.Helper()
	got := c.reply()
	if !strings.HasPrefix(got, want) {
		c.t.Fatalf("got %q, want %s", got, want)
	}
	return got
}

func (c *client) envelope(rcpts ...string) {
	c.t.Helper()
	c.cmd("EHLO client.test", "250")
	c.cmd("MAIL FROM:<sender@src.test>", "250")
	for _, r := range rcpts {
		c.cmd("RCPT TO:<"+r+">", "250")
	}
	c.cmd("DATA", "354")
}

// stored returns the message as the queue holds it.
func stored(t *testing.T, q *queue.Queue, id string) []byte {
	t.Helper()
	msg, err := q.Message(id)
	if err != nil {
		t.Fatal(err)
	}
	r, err := msg.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	return b
}

func queuedID(t *testing.T, reply string) string {
	t.Helper()
	i := strings.Index(reply, "queued as ")
	if !strings.HasPrefix(reply, "250 2.0.0") || i < 0 {
		t.Fatalf("reply %q has no queue ID", reply)
	}
	return reply[i+len("queued as "):]
}

func TestAcceptedMessageIsQueuedWithReceived(t *testing.T) {
	addr, q, _ := startListener(t, nil)
	c := dial(t, addr)
	c.envelope("User@RELAY.test", "user@relay.test")
	c.send("Subject: t\r\n\r\n..dot\r\nbody\r\n.\r\n")
	id := queuedID(t, c.reply())
	env, err := q.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	// The second recipient differs only in case: one mailbox, stored once
	// as first given (hardening_test.go has the case-sensitive domain).
	if len(env.Rcpts) != 1 || env.Rcpts[0].Addr != "User@relay.test" {
		t.Errorf("recipients %+v", env.Rcpts)
	}
	body := stored(t, q, id)
	if !strings.HasPrefix(string(body), "Received: from client.test (unknown [127.0.0.1])\r\n\tby mx.example.test (mxedge) with ESMTP id "+id+"\r\n\tfor <User@relay.test>;") {
		t.Errorf("no Received header first: %q", body)
	}
	if !strings.HasSuffix(string(body), "\r\nSubject: t\r\n\r\n.dot\r\nbody\r\n") {
		t.Errorf("body not stored as sent (unstuffed): %q", body)
	}
	// The session goes on after a transaction.
	c.cmd("MAIL FROM:<>", "250")
	c.cmd("RCPT TO:<victim@elsewhere.example>", "554 5.7.1")
	c.cmd("QUIT", "221")
}

func TestSlowSenderKeepsGoingIdleSenderIsCut(t *testing.T) {
	addr, q, _ := startListener(t, func(o *Options) {
		// 2 s, not less: on a loaded 2-core CI host under -race a 250 ms
		// pause can stretch past one second.
		o.DataTimeout = 2 * time.Second
		o.CommandTimeout = 2 * time.Second
	})
	c := dial(t, addr)
	c.envelope("user@relay.test")
	c.send("Subject: slow\r\n\r\n")
	// 16 x 250ms = 4s of DATA, twice the per-read timeout and the
	// command timeout: a live sender must not be cut off.
	for i := 0; i < 16; i++ {
		c.send(fmt.Sprintf("line %d\r\n", i))
		time.Sleep(250 * time.Millisecond) // pacing the sender, not synchronisation
	}
	c.send(".\r\n")
	id := queuedID(t, c.reply())
	if _, err := q.Get(id); err != nil {
		t.Fatal(err)
	}

	c2 := dial(t, addr)
	c2.envelope("user@relay.test")
	c2.send("Subject: idle\r\n\r\nthen nothing")
	got := c2.reply() // no sleep: the server's timeout ends the wait
	if !strings.HasPrefix(got, "421 4.4.2") {
		t.Fatalf("idle sender got %q, want 421 4.4.2", got)
	}
	if l := c2.reply(); !strings.HasPrefix(l, "EOF") {
		t.Errorf("connection still open after 421: %q", l)
	}
}

func TestBareLineEndingPolicy(t *testing.T) {
	smuggle := "Subject: s\r\n\r\nhello\n.\r\nMAIL FROM:<evil@x.test>\r\n.\r\n"
	t.Run("reject", func(t *testing.T) {
		addr, q, _ := startListener(t, nil)
		c := dial(t, addr)
		c.envelope("user@relay.test")
		c.send(smuggle)
		c.expect("550 5.5.2")
		// The whole message was consumed: the next command is a command.
		c.cmd("RSET", "250")
		if st, _ := q.Stats(); st.Messages != 0 {
			t.Errorf("rejected message was queued: %+v", st)
		}
	})
	t.Run("normalize", func(t *testing.T) {
		addr, q, _ := startListener(t, func(o *Options) { o.NormalizeLineEndings = true })
		c := dial(t, addr)
		c.envelope("user@relay.test")
		c.send("Subject: s\r\n\r\na\nb\rc\r\n.\r\n")
		id := queuedID(t, c.reply())
		body := stored(t, q, id)
		if !strings.HasSuffix(string(body), "\r\n\r\na\r\nb c\r\n") {
			t.Errorf("normalized body %q", body)
		}
	})
}

func TestSizeAndRecipientLimits(t *testing.T) {
	addr, q, _ := startListener(t, func(o *Options) {
		o.MessageSize = 1000
		o.Recipients = 2
	})
	c := dial(t, addr)
	c.cmd("EHLO client.test", "250")
	c.cmd("MAIL FROM:<s@src.test> SIZE=1001", "552 5.3.4")
	c.cmd("MAIL FROM:<s@src.test> SIZE=999", "250")
	c.cmd("RCPT TO:<a@relay.test>", "250")
	c.cmd("RCPT TO:<b@relay.test>", "250")
	c.cmd("RCPT TO:<c@relay.test>", "452 4.5.3")
	c.cmd("DATA", "354")
	c.send("Subject: big\r\n\r\n" + strings.Repeat("x", 2000) + "\r\n.\r\n")
	c.expect("552 5.3.4")
	if st, _ := q.Stats(); st.Messages != 0 {
		t.Errorf("oversized message was queued")
	}
	c.cmd("MAIL FROM:<s@src.test>", "250")
	c.cmd("RCPT TO:<a@relay.test>", "250")
	c.cmd("DATA", "354")
	c.send("Subject: small\r\n\r\nok\r\n.\r\n")
	queuedID(t, c.reply())
}

func TestHopLimit(t *testing.T) {
	addr, _, _ := startListener(t, nil)
	c := dial(t, addr)
	c.envelope("user@relay.test")
	c.send(strings.Repeat("Received: from a by b; Mon, 23 Nov 2026 10:00:00 +0000\r\n", maxHops+1) + "\r\nloop\r\n.\r\n")
	c.expect("554 5.4.6")
}

func TestSpoolFailureIsTemporary(t *testing.T) {
	addr, _, dir := startListenerOpts(t, nil, queue.Options{InlineMax: -1}) // always a spool file
	if err := os.RemoveAll(filepath.Join(dir, "spool")); err != nil {
		t.Fatal(err)
	}
	c := dial(t, addr)
	c.envelope("user@relay.test")
	c.send("Subject: x\r\n\r\nbody\r\n.\r\n")
	got := c.expect("451 4.3.0")
	if strings.Contains(got, "spool") || strings.Contains(got, "no such file") {
		t.Errorf("internal error text leaked: %q", got)
	}
	c.cmd("NOOP", "250")
}

// fullDisk is a spool file on a disk that fills up after limit bytes.
type fullDisk struct {
	f     *os.File
	limit int
}

func (d *fullDisk) Write(p []byte) (int, error) {
	if len(p) > d.limit {
		return 0, &os.PathError{Op: "write", Path: d.f.Name(), Err: syscall.ENOSPC}
	}
	d.limit -= len(p)
	return d.f.Write(p)
}
func (d *fullDisk) Sync() error  { return d.f.Sync() }
func (d *fullDisk) Close() error { return d.f.Close() }

// A full disk while receiving: the client gets 452 4.3.1 (retry later),
// the session and the daemon go on, nothing half-written is queued.
func TestDiskFullIs452(t *testing.T) {
	addr, q, dir := startListenerOpts(t, nil, queue.Options{CreateFile: func(path string) (queue.File, error) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		return &fullDisk{f: f, limit: 200 << 10}, err
	}})
	c := dial(t, addr)
	c.envelope("user@relay.test")
	for i := 0; i < 100; i++ { // 1 MiB: far past the 200 KiB that fit
		c.send(strings.Repeat("x", 10<<10-2) + "\r\n")
	}
	c.send(".\r\n")
	got := c.expect("452 4.3.1")
	if strings.Contains(got, "no space") || strings.Contains(got, "spool") {
		t.Errorf("internal error text leaked: %q", got)
	}
	if st, _ := q.Stats(); st.Messages != 0 {
		t.Errorf("half-written message is visible: %+v", st)
	}
	if es, _ := os.ReadDir(filepath.Join(dir, "spool")); len(es) != 0 {
		t.Errorf("spool files left: %d", len(es))
	}
	// Same session, a small message fits: the daemon is still serving.
	c.cmd("MAIL FROM:<s@src.test>", "250")
	c.cmd("RCPT TO:<user@relay.test>", "250")
	c.cmd("DATA", "354")
	c.send("Subject: small\r\n\r\nok\r\n.\r\n")
	queuedID(t, c.reply())
}

// The MX listener has no AUTH: not offered, and refused as Postfix does,
// with or without TLS; MAIL needs none.
func TestMXRefusesAuth(t *testing.T) {
	addr, _, _ := startListener(t, nil)
	c := dial(t, addr)
	c.send("EHLO client.test\r\n")
	var ehlo []string
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		ehlo = append(ehlo, l)
		if len(l) < 4 || l[3] != '-' {
			break
		}
	}
	if all := strings.Join(ehlo, ""); strings.Contains(all, "AUTH") || !strings.HasPrefix(all, "250-") {
		t.Errorf("EHLO: %q", all)
	}
	c.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==", "503 5.5.1 Error: authentication not enabled")
	c.cmd("MAIL FROM:<s@src.test>", "250")
}

// Free space below the reserve: MAIL is refused with 452 4.3.1 before any
// data is sent, and so is DATA if space ran low after MAIL; mail is
// accepted again once space is back.
func TestFreeSpaceReserveIs452(t *testing.T) {
	var free atomic.Uint64
	free.Store(100 << 20)
	addr, q, _ := startListenerOpts(t, nil, queue.Options{Reserve: 15 << 20,
		FreeSpace: func(string) (uint64, error) { return free.Load(), nil }})
	c := dial(t, addr)
	c.cmd("EHLO client.test", "250")
	free.Store(1 << 20)
	c.cmd("MAIL FROM:<s@src.test>", "452 4.3.1")
	free.Store(100 << 20)
	c.cmd("MAIL FROM:<s@src.test>", "250")
	c.cmd("RCPT TO:<user@relay.test>", "250")
	free.Store(1 << 20) // ran low between MAIL and DATA
	c.cmd("DATA", "354")
	c.send("Subject: x\r\n\r\nbody\r\n.\r\n")
	c.expect("452 4.3.1")
	if st, _ := q.Stats(); st.Messages != 0 {
		t.Errorf("message queued below the reserve: %+v", st)
	}
	free.Store(100 << 20)
	c.cmd("MAIL FROM:<s@src.test>", "250")
	c.cmd("RCPT TO:<user@relay.test>", "250")
	c.cmd("DATA", "354")
	c.send("Subject: small\r\n\r\nok\r\n.\r\n")
	queuedID(t, c.reply())
}
