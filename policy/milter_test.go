package policy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-milter"

	"github.com/mxedge/mxedge/internal/milterclient"
	"github.com/mxedge/mxedge/internal/miltertest"
	"github.com/mxedge/mxedge/internal/testlog"
)

// scripted is a filter written with go-milter's server: body decides what
// it answers at the end of the message; it records what it saw.
type scripted struct {
	milter.NoOpMilter
	rec  *seen
	body bytes.Buffer
	end  func(m *milter.Modifier, body []byte) (milter.Response, error)
}

type seen struct {
	mu       sync.Mutex
	macros   map[string]string
	headers  textproto.MIMEHeader
	body     []byte
	maxChunk int
}

func (s *scripted) macros(m *milter.Modifier) (milter.Response, error) {
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	for k, v := range m.Macros {
		s.rec.macros[k] = v
	}
	return milter.RespContinue, nil
}

func (s *scripted) Connect(_, _ string, _ uint16, _ net.IP, m *milter.Modifier) (milter.Response, error) {
	return s.macros(m)
}
func (s *scripted) Helo(_ string, m *milter.Modifier) (milter.Response, error) { return s.macros(m) }
func (s *scripted) MailFrom(_ string, m *milter.Modifier) (milter.Response, error) {
	return s.macros(m)
}
func (s *scripted) RcptTo(_ string, m *milter.Modifier) (milter.Response, error) { return s.macros(m) }
func (s *scripted) Headers(h textproto.MIMEHeader, m *milter.Modifier) (milter.Response, error) {
	s.rec.mu.Lock()
	s.rec.headers = h
	s.rec.mu.Unlock()
	return s.macros(m)
}
func (s *scripted) BodyChunk(c []byte, _ *milter.Modifier) (milter.Response, error) {
	s.rec.mu.Lock()
	s.rec.maxChunk = max(s.rec.maxChunk, len(c))
	s.rec.mu.Unlock()
	s.body.Write(c)
	return milter.RespContinue, nil
}
func (s *scripted) Body(m *milter.Modifier) (milter.Response, error) {
	s.rec.mu.Lock()
	s.rec.body = bytes.Clone(s.body.Bytes())
	s.rec.mu.Unlock()
	return s.end(m, s.body.Bytes())
}

func startScripted(t *testing.T, end func(m *milter.Modifier, body []byte) (milter.Response, error)) (string, *seen) {
	t.Helper()
	rec := &seen{macros: map[string]string{}}
	ln := miltertest.Start(t, "127.0.0.1:0", func() milter.Milter { return &scripted{rec: rec, end: end} },
		milter.OptAddHeader|milter.OptChangeHeader|milter.OptChangeBody|milter.OptAddRcpt|
			milter.OptRemoveRcpt|milter.OptQuarantine|milter.OptChangeFrom)
	return ln.Addr().String(), rec
}

// memMessage is a received message as the listener hands it to DATA
// checks (policy.Editor), in memory. Recipients are the same mailbox when
// equal, without case if fold; one without "@" is refused.
type memMessage struct {
	head, data string
	from       string
	rcpts      []string
	fold       bool
}

func (m *memMessage) Open() (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader(m.head + m.data)), nil
}
func (m *memMessage) Size() int64 { return int64(len(m.head) + len(m.data)) }
func (m *memMessage) Rewrite(write func(io.Reader, io.Writer) error) error {
	var b bytes.Buffer
	if err := write(strings.NewReader(m.data), &b); err != nil {
		return err
	}
	m.data = b.String()
	return nil
}
func (m *memMessage) SetFrom(f string)      { m.from = f }
func (m *memMessage) same(a, b string) bool { return a == b || m.fold && strings.EqualFold(a, b) }
func (m *memMessage) AddRcpt(a string) ([]string, error) {
	if !strings.Contains(a, "@") {
		return nil, errors.New("bad address syntax")
	}
	if !slices.ContainsFunc(m.rcpts, func(r string) bool { return m.same(r, a) }) {
		m.rcpts = append(m.rcpts, a)
	}
	return slices.Clone(m.rcpts), nil
}
func (m *memMessage) DelRcpt(a string) ([]string, error) {
	if !strings.Contains(a, "@") {
		return nil, errors.New("bad address syntax")
	}
	m.rcpts = slices.DeleteFunc(m.rcpts, func(r string) bool { return m.same(r, a) })
	return slices.Clone(m.rcpts), nil
}

const testMessage = "From: a@src.test\r\nSubject: hello\r\nX-Tag: one\r\nX-Tag: two\r\n\r\nhello world\r\n"

// filter runs a message through m as the listener does: Stream at the
// start of DATA, the data in small writes, Close, CheckData.
func filter(t *testing.T, m *Milter, data string) (Result, *memMessage) {
	t.Helper()
	msg := &memMessage{head: "Received: by us\r\n", data: data, from: "a@src.test", rcpts: []string{"b@dst.test"}}
	return filterMessage(t, m, msg), msg
}

// filterMessage is filter with the message given.
func filterMessage(t *testing.T, m *Milter, msg *memMessage) Result {
	t.Helper()
	ctx := context.Background()
	c := &Conn{IP: netip.MustParseAddr("192.0.2.7"), Helo: "client.src.test", Reverse: Reverse{Name: "mail.src.test"}}
	tx := &Txn{From: msg.from, Rcpts: slices.Clone(msg.rcpts), QueueID: "0QUEUEID"}
	w := m.Stream(ctx, c, tx)
	for p := msg.data; len(p) > 0; {
		k := min(len(p), 7000)
		if n, err := w.Write([]byte(p[:k])); n != k || err != nil {
			t.Fatalf("stream write: %d %v", n, err)
		}
		p = p[k:]
	}
	w.Close()
	return enforce(m.CheckData(ctx, c, tx, msg))
}

func newMilter(addr string) *Milter {
	return &Milter{Config: milterclient.Config{Name: "test", Network: "tcp", Address: addr, Hostname: "mx.dst.test",
		CommandTimeout: 2 * time.Second, ConnectTimeout: 2 * time.Second}, DefaultAction: "tempfail", Logger: quietLogger()}
}

func replyOf(r Result) string {
	if r.Reply == nil {
		return ""
	}
	return r.Reply.String()
}

func TestMilterActions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		end   func(m *milter.Modifier, body []byte) (milter.Response, error)
		check func(t *testing.T, r Result, msg *memMessage)
	}{
		{"accept adds a header", func(m *milter.Modifier, _ []byte) (milter.Response, error) {
			m.AddHeader("X-Spam", "no;\n score=0.1")
			return milter.RespAccept, nil
		}, func(t *testing.T, r Result, msg *memMessage) {
			if r.Reply != nil || r.Discard || r.Hold || strings.Join(r.Headers, "") != "X-Spam: no;\r\n score=0.1\r\n" || msg.data != testMessage {
				t.Errorf("%+v %q", r, msg.data)
			}
		}},
		{"reject", func(*milter.Modifier, []byte) (milter.Response, error) { return milter.RespReject, nil },
			func(t *testing.T, r Result, _ *memMessage) {
				if replyOf(r) != "550 5.7.1 Message content rejected" {
					t.Errorf("%+v", r)
				}
			}},
		{"reply code", func(*milter.Modifier, []byte) (milter.Response, error) {
			return milter.NewResponseStr('y', "554 5.7.1 Spam message rejected"), nil
		}, func(t *testing.T, r Result, _ *memMessage) {
			if replyOf(r) != "554 5.7.1 Spam message rejected" {
				t.Errorf("%+v", r)
			}
		}},
		{"reply code 4xx", func(*milter.Modifier, []byte) (milter.Response, error) {
			return milter.NewResponseStr('y', "452 Greylisted"), nil
		}, func(t *testing.T, r Result, _ *memMessage) {
			if replyOf(r) != "452 4.7.1 Greylisted" {
				t.Errorf("%+v", r)
			}
		}},
		{"tempfail", func(*milter.Modifier, []byte) (milter.Response, error) { return milter.RespTempFail, nil },
			func(t *testing.T, r Result, _ *memMessage) {
				if replyOf(r) != "451 4.7.1 Service unavailable - try again later" {
					t.Errorf("%+v", r)
				}
			}},
		{"discard", func(*milter.Modifier, []byte) (milter.Response, error) { return milter.RespDiscard, nil },
			func(t *testing.T, r Result, _ *memMessage) {
				if r.Reply != nil || !r.Discard {
					t.Errorf("%+v", r)
				}
			}},
		{"quarantine", func(m *milter.Modifier, _ []byte) (milter.Response, error) {
			m.Quarantine("looks like phishing")
			return milter.RespAccept, nil
		}, func(t *testing.T, r Result, _ *memMessage) {
			if r.Reply != nil || !r.Hold || !strings.Contains(r.Reason, "looks like phishing") {
				t.Errorf("%+v", r)
			}
		}},
		{"change, delete, insert header", func(m *milter.Modifier, _ []byte) (milter.Response, error) {
			m.ChangeHeader(2, "X-Tag", "changed")
			m.ChangeHeader(1, "Subject", "")
			m.InsertHeader(2, "X-Inserted", "here")
			m.InsertHeader(0, "X-Top", "top")
			return milter.RespContinue, nil
		}, func(t *testing.T, r Result, msg *memMessage) {
			want := "From: a@src.test\r\nX-Inserted: here\r\nX-Tag: one\r\nX-Tag: changed\r\n\r\nhello world\r\n"
			if r.Reply != nil || msg.data != want || strings.Join(r.Headers, "") != "X-Top: top\r\n" {
				t.Errorf("%+v\n%q", r, msg.data)
			}
		}},
		{"replace body", func(m *milter.Modifier, _ []byte) (milter.Response, error) {
			m.ReplaceBody([]byte("new\r\nbody\r\n"))
			return milter.RespAccept, nil
		}, func(t *testing.T, r Result, msg *memMessage) {
			want := "From: a@src.test\r\nSubject: hello\r\nX-Tag: one\r\nX-Tag: two\r\n\r\nnew\r\nbody\r\n"
			if r.Reply != nil || msg.data != want {
				t.Errorf("%+v\n%q", r, msg.data)
			}
		}},
		{"change sender and recipients", func(m *milter.Modifier, _ []byte) (milter.Response, error) {
			m.ChangeFrom("<bounces@src.test>")
			m.AddRecipient("archive@dst.test")
			m.DeleteRecipient("b@dst.test")
			return milter.RespAccept, nil
		}, func(t *testing.T, r Result, msg *memMessage) {
			if r.Reply != nil || r.Discard || msg.from != "bounces@src.test" || strings.Join(msg.rcpts, ",") != "archive@dst.test" {
				t.Errorf("%+v from %q rcpts %v", r, msg.from, msg.rcpts)
			}
		}},
		{"every recipient deleted", func(m *milter.Modifier, _ []byte) (milter.Response, error) {
			m.DeleteRecipient("b@dst.test")
			return milter.RespAccept, nil
		}, func(t *testing.T, r Result, msg *memMessage) {
			if r.Reply != nil || !r.Discard {
				t.Errorf("%+v", r)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := startScripted(t, tc.end)
			r, msg := filter(t, newMilter(addr), testMessage)
			tc.check(t, r, msg)
		})
	}
}

// A filter's recipient changes follow the listener's rule for "the same
// mailbox" (the Editor's), and so does the discard of a message whose
// recipients were all deleted; an address the listener refuses is left
// out, with a log line.
func TestMilterRecipientEdits(t *testing.T) {
	addr, _ := startScripted(t, func(m *milter.Modifier, _ []byte) (milter.Response, error) {
		m.AddRecipient("B@dst.test") // go-milter sends it in angle brackets
		m.AddRecipient("no-domain")
		m.DeleteRecipient("B@dst.test")
		return milter.RespAccept, nil
	})
	for _, tc := range []struct {
		name    string
		fold    bool
		discard bool
		rcpts   string
	}{
		{"local parts without case", true, true, ""},
		{"case-sensitive local parts", false, false, "b@dst.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs testlog.Buffer
			m := newMilter(addr)
			m.Logger = logs.Logger()
			msg := &memMessage{data: testMessage, from: "a@src.test", rcpts: []string{"b@dst.test"}, fold: tc.fold}
			r := filterMessage(t, m, msg)
			if r.Reply != nil || r.Discard != tc.discard || strings.Join(msg.rcpts, ",") != tc.rcpts {
				t.Errorf("%+v rcpts %v", r, msg.rcpts)
			}
			if l := logs.String(); !strings.Contains(l, `msg="milter recipient change ignored" queue_id=0QUEUEID milter=test action=add rcpt=<no-domain> err="bad address syntax"`) {
				t.Errorf("no log line for the refused address:\n%s", l)
			}
		})
	}
}

// A listener that cannot change the message (no Editor) gets the default
// action for a filter's recipient change, as for its header changes: the
// message is neither queued without the change nor discarded.
func TestMilterRecipientEditWithoutEditor(t *testing.T) {
	addr, _ := startScripted(t, func(m *milter.Modifier, _ []byte) (milter.Response, error) {
		m.DeleteRecipient("b@dst.test")
		return milter.RespAccept, nil
	})
	ctx := context.Background()
	c := &Conn{IP: netip.MustParseAddr("192.0.2.7")}
	tx := &Txn{From: "a@src.test", Rcpts: []string{"b@dst.test"}, QueueID: "0QUEUEID"}
	m := newMilter(addr)
	w := m.Stream(ctx, c, tx)
	io.WriteString(w, testMessage)
	w.Close()
	msg := struct{ Message }{&memMessage{data: testMessage}} // Open and Size only
	r := enforce(m.CheckData(ctx, c, tx, msg))
	if replyOf(r) != "451 4.7.1 Service unavailable - try again later" || r.Discard {
		t.Errorf("%+v", r)
	}
}

// The filter sees the macros, the header as received (not our Received)
// and the whole body, in chunks of at most 65535 bytes.
func TestMilterSeesMessage(t *testing.T) {
	addr, rec := startScripted(t, func(*milter.Modifier, []byte) (milter.Response, error) { return milter.RespAccept, nil })
	body := strings.Repeat("0123456789abcdef", 200<<10/16) + "\r\n"
	r, _ := filter(t, newMilter(addr), "From: a@src.test\r\nSubject: big\r\n\r\n"+body)
	if r.Reply != nil {
		t.Fatalf("%+v", r)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for k, want := range map[string]string{"i": "0QUEUEID", "j": "mx.dst.test", "{client_addr}": "192.0.2.7",
		"{client_name}": "mail.src.test", "{helo}": "client.src.test", "{mail_addr}": "a@src.test", "{rcpt_addr}": "b@dst.test"} {
		if rec.macros[k] != want {
			t.Errorf("macro %s = %q, want %q", k, rec.macros[k], want)
		}
	}
	if rec.headers.Get("Subject") != "big" || rec.headers.Get("Received") != "" {
		t.Errorf("headers %v", rec.headers)
	}
	if string(rec.body) != body {
		t.Errorf("body: %d bytes, want %d", len(rec.body), len(body))
	}
	if rec.maxChunk == 0 || rec.maxChunk > 65535 {
		t.Errorf("largest chunk %d", rec.maxChunk)
	}
}

// A filter that cannot answer gets the default action: tempfail (451
// 4.7.1, an internal error: never accepted, never 5xx), accept, reject.
func TestMilterFailures(t *testing.T) {
	down := func(t *testing.T) string {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		a := ln.Addr().String()
		ln.Close()
		return a
	}
	// raw serves one scripted connection: it reads, then does f.
	raw := func(t *testing.T, f func(c net.Conn)) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { defer c.Close(); f(c) }()
			}
		}()
		return ln.Addr().String()
	}
	// resetMidBody: a real filter behind a proxy that resets the
	// connection once 8 KiB of the message went through.
	resetMidBody := func(t *testing.T) string {
		real, _ := startScripted(t, func(*milter.Modifier, []byte) (milter.Response, error) { return milter.RespAccept, nil })
		return raw(t, func(c net.Conn) {
			up, err := net.Dial("tcp", real)
			if err != nil {
				return
			}
			defer up.Close()
			go io.Copy(c, up)
			io.CopyN(up, c, 8<<10)
			c.(*net.TCPConn).SetLinger(0)
		})
	}
	big := "Subject: x\r\n\r\n" + strings.Repeat("y", 100<<10) + "\r\n"
	for _, tc := range []struct {
		name string
		addr func(t *testing.T) string
		data string
	}{
		{"down", down, testMessage},
		{"garbage", func(t *testing.T) string {
			return raw(t, func(c net.Conn) { c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n")) })
		}, testMessage},
		{"silent (command timeout)", func(t *testing.T) string {
			return raw(t, func(c net.Conn) { io.Copy(io.Discard, c) })
		}, testMessage},
		{"reset mid-body", resetMidBody, big},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := tc.addr(t)
			m := newMilter(addr)
			m.CommandTimeout = 300 * time.Millisecond
			r, _ := filter(t, m, tc.data)
			if replyOf(r) != "451 4.7.1 Service unavailable - try again later" || r.Err == nil {
				t.Errorf("tempfail: %+v", r)
			}
			m.DefaultAction = "accept"
			if r, msg := filter(t, m, tc.data); r.Reply != nil || r.Err != nil || msg.data != tc.data {
				t.Errorf("accept: %+v", r)
			}
			m.DefaultAction = "reject"
			if r, _ := filter(t, m, tc.data); replyOf(r) != "550 5.7.1 Message content rejected" {
				t.Errorf("reject: %+v", r)
			}
		})
	}
}

func TestMilterReplyText(t *testing.T) {
	for _, tc := range []struct {
		code       int
		text, want string
	}{
		{554, "5.7.1 Spam message rejected", "554 5.7.1 Spam message rejected"},
		{550, "Go away", "550 5.7.1 Go away"},
		{550, "4.7.1 wrong class", "550 5.7.1 4.7.1 wrong class"},
		{250, "2.0.0 fine", "451 4.7.1 fine"},
		{421, "", "421 4.7.1 Message content rejected"},
	} {
		if got := milterReply(tc.code, tc.text).String(); got != tc.want {
			t.Errorf("%d %q: %q, want %q", tc.code, tc.text, got, tc.want)
		}
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// A filter that takes longer than the content timeout to scan gets the
// default action; one within it answers (the command timeout, shorter,
// does not apply to content commands).
func TestMilterContentTimeout(t *testing.T) {
	release := make(chan struct{})
	addr, _ := startScripted(t, func(*milter.Modifier, []byte) (milter.Response, error) {
		<-release // scanning, until the test has seen the timeout
		return milter.RespAccept, nil
	})
	defer close(release)
	m := newMilter(addr)
	m.CommandTimeout, m.ContentTimeout = 50*time.Millisecond, 300*time.Millisecond
	start := time.Now()
	r, _ := filter(t, m, testMessage)
	if replyOf(r) != "451 4.7.1 Service unavailable - try again later" || r.Err == nil {
		t.Errorf("slow scan: %+v", r)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("gave up after %v, before the content timeout", d)
	}
}
