package smtpd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxedge/mxedge/delivery"
	"github.com/mxedge/mxedge/internal/smtptest"
	"github.com/mxedge/mxedge/internal/testlog"
	"github.com/mxedge/mxedge/policy"
)

// Checks added to a listener's chain without touching the session code:
// each test here is a check written the way the next issues will write
// theirs.

// heloDenier refuses one HELO name.
type heloDenier struct{ name string }

func (heloDenier) Name() string { return "helo" }
func (h heloDenier) CheckHelo(_ context.Context, c *policy.Conn) policy.Result {
	if strings.EqualFold(c.Helo, h.name) {
		return policy.Result{Reply: &policy.Reply{Code: 550, Enhanced: [3]int{5, 7, 1}, Text: "<" + c.Helo + ">: Helo command rejected: you are not me"}}
	}
	return policy.Result{}
}

func TestHeloCheck(t *testing.T) {
	addr, q, _ := startListener(t, nil, heloDenier{"mx.example.test"})
	c := dial(t, addr)
	c.cmd("EHLO mx.example.test", "550 5.7.1 <mx.example.test>: Helo command rejected")
	c.cmd("MAIL FROM:<s@src.test>", "5") // no greeting accepted yet
	c.cmd("EHLO client.test", "250")
	c.cmd("MAIL FROM:<s@src.test>", "250")
	c.cmd("RCPT TO:<u@relay.test>", "250")
	// A later EHLO with the refused name is checked again at the next MAIL.
	c.cmd("EHLO MX.example.test", "250")
	c.cmd("MAIL FROM:<s@src.test>", "550 5.7.1")
	c.cmd("QUIT", "221")
	if st, _ := q.Stats(); st.Messages != 0 {
		t.Errorf("queued: %+v", st)
	}
}

// connectCheck refuses every connection, at once or held.
type connectCheck struct{ disconnect bool }

func (connectCheck) Name() string { return "dnsbl" }
func (c connectCheck) CheckConnect(_ context.Context, pc *policy.Conn) policy.Result {
	if !pc.IP.IsLoopback() || pc.Listener != "mx" {
		return policy.Result{Err: errors.New("connection facts missing")}
	}
	return policy.Result{Disconnect: c.disconnect, Reply: &policy.Reply{Code: 554, Enhanced: [3]int{5, 7, 1},
		Text: "Service unavailable; client [" + pc.IP.String() + "] blocked using bl.example"}}
}

func TestConnectCheck(t *testing.T) {
	t.Run("disconnect: the reply instead of the banner", func(t *testing.T) {
		addr, _, _ := startListener(t, nil, connectCheck{disconnect: true})
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, _ := io.ReadAll(nc)
		if string(got) != "554 5.7.1 Service unavailable; client [127.0.0.1] blocked using bl.example\r\n" {
			t.Errorf("got %q", got)
		}
	})
	t.Run("held: answered at RCPT, after HELO and MAIL", func(t *testing.T) {
		var logs testlog.Buffer
		addr, q, _ := startListener(t, func(o *Options) { o.Logger = logs.Logger() }, connectCheck{})
		c := dial(t, addr)
		c.cmd("EHLO client.test", "250")
		c.cmd("MAIL FROM:<s@src.test>", "250")
		c.cmd("RCPT TO:<u@relay.test>", "554 5.7.1 Service unavailable; client [127.0.0.1] blocked using bl.example")
		c.cmd("RCPT TO:<v@relay.test>", "554 5.7.1")
		c.cmd("DATA", "5")
		c.cmd("QUIT", "221")
		if st, _ := q.Stats(); st.Messages != 0 {
			t.Errorf("queued: %+v", st)
		}
		// One line per refusal, where it is answered, with stage, client,
		// envelope and reply; none at connect.
		for _, want := range []string{
			`msg="recipient rejected" listener=mx stage=dnsbl client_ip=127.0.0.1 helo=client.test from=<s@src.test> to=<u@relay.test> action=reject reply="554 5.7.1`,
			`msg="recipient rejected" listener=mx stage=dnsbl client_ip=127.0.0.1 helo=client.test from=<s@src.test> to=<v@relay.test> action=reject reply="554 5.7.1`} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("log lacks %s:\n%s", want, logs.String())
			}
		}
		if strings.Contains(logs.String(), "connection refused") {
			t.Errorf("a held refusal logged at connect:\n%s", logs.String())
		}
	})
}

// The listener's session budget: beyond MaxSessions a client gets 421 at
// once; a slot freed is usable again.
func TestSessionLimit(t *testing.T) {
	addr, _, _ := startListener(t, func(o *Options) { o.MaxSessions = 2 })
	a, b := dial(t, addr), dial(t, addr)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(nc)
	if string(got) != "421 4.7.0 Too many connections, try again later\r\n" {
		t.Errorf("third session got %q", got)
	}
	a.cmd("QUIT", "221")
	b.cmd("NOOP", "250")
	// The slot comes back when the session's connection is closed; poll
	// for it (the close is the server's, after QUIT).
	deadline := time.Now().Add(5 * time.Second)
	for {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		line := make([]byte, 3)
		io.ReadFull(nc, line)
		nc.Close()
		if string(line) == "220" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session after one was closed: %q", line)
		}
	}
}

// headerCheck is a DATA check that reads the stored message (our Received
// header first, then the data) and adds a header; with refuse it refuses
// instead. It also streams the data as it arrives.
type headerCheck struct {
	refuse   bool
	mu       sync.Mutex
	read     []byte
	streamed bytes.Buffer
}

func (*headerCheck) Name() string { return "content" }

func (h *headerCheck) CheckData(_ context.Context, _ *policy.Conn, t *policy.Txn, m policy.Message) policy.Result {
	r, err := m.Open()
	if err != nil {
		return policy.Result{Err: err}
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return policy.Result{Err: err}
	}
	h.mu.Lock()
	h.read = b
	h.mu.Unlock()
	if int64(len(b)) != m.Size() || t.QueueID == "" {
		return policy.Result{Err: errors.New("size or queue ID wrong")}
	}
	if h.refuse {
		return policy.Result{Reply: &policy.Reply{Code: 550, Enhanced: [3]int{5, 7, 1}, Text: "Spam message rejected"}}
	}
	return policy.Result{Headers: []string{"X-Content-Check: clean;\r\n\tscore=0\r\n"}}
}

func (h *headerCheck) Stream(context.Context, *policy.Conn, *policy.Txn) io.WriteCloser {
	return nopCloser{h}
}

type nopCloser struct{ h *headerCheck }

func (n nopCloser) Write(p []byte) (int, error) {
	n.h.mu.Lock()
	defer n.h.mu.Unlock()
	return n.h.streamed.Write(p)
}
func (nopCloser) Close() error { return nil }

const checkedBody = "From: s@src.test\r\nSubject: checked\r\n\r\nHello.\r\n..dot-stuffed line\r\n"

// A DATA check's header reaches the backend byte-exact: the relay's
// Received header, the check's header, then the data as the client sent
// it (transparency undone).
func TestDataCheckHeaderReachesBackend(t *testing.T) {
	be, err := smtptest.Start("127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	h := &headerCheck{}
	addr, q, _ := startListener(t, nil, h)
	d := delivery.New(delivery.Options{Hostname: "mx.example.test", Routes: map[string]string{"relay.test": be.Addr()},
		ConnectTimeout: 2 * time.Second, ReplyTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	defer d.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx, d, time.Second) }()
	defer func() { cancel(); <-done }()

	c := dial(t, addr)
	c.envelope("user@relay.test")
	c.send(strings.ReplaceAll(checkedBody, "\r\n..", "\r\n..") + ".\r\n")
	id := queuedID(t, c.reply())
	msgs, err := be.WaitMessages(1, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := string(msgs[0].Body())
	data := strings.ReplaceAll(checkedBody, "\r\n..", "\r\n.")
	received, rest, ok := strings.Cut(got, "X-Content-Check: clean;\r\n\tscore=0\r\n")
	if !ok || rest != data || !strings.HasPrefix(received, "Received: from client.test (unknown [127.0.0.1])\r\n\tby mx.example.test (mxedge) with ESMTP id "+id) ||
		strings.Count(received, "\r\n") != 3 {
		t.Errorf("backend got:\n%q", got)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	// The check read what was stored before its header: Received + data.
	if string(h.read) != received+data {
		t.Errorf("check read %q", h.read)
	}
	if h.streamed.String() != data {
		t.Errorf("stream got %q, want %q", h.streamed.String(), data)
	}
}

// A DATA refusal is answered after the data, in the session, and nothing
// is queued; the session goes on.
func TestDataCheckRefuses(t *testing.T) {
	addr, q, _ := startListener(t, nil, &headerCheck{refuse: true})
	c := dial(t, addr)
	c.envelope("user@relay.test")
	c.send(checkedBody + ".\r\n")
	c.expect("550 5.7.1 Spam message rejected")
	c.cmd("MAIL FROM:<s@src.test>", "250")
	if st, _ := q.Stats(); st.Messages != 0 {
		t.Errorf("refused message queued: %+v", st)
	}
}

// failingCheck cannot decide: its error is a 451, never a 5xx.
type failingCheck struct{}

func (failingCheck) Name() string { return "broken" }
func (failingCheck) CheckMail(context.Context, *policy.Conn, *policy.Txn) policy.Result {
	return policy.Result{Err: errors.New("resolver down"), Reply: &policy.Reply{Code: 550, Text: "would refuse"}}
}

func TestInternalErrorIsTemporary(t *testing.T) {
	addr, _, _ := startListener(t, nil, failingCheck{})
	c := dial(t, addr)
	c.cmd("EHLO client.test", "250")
	c.cmd("MAIL FROM:<s@src.test>", "451 4.3.0 Temporary local problem, try again later")
}
