package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mxedge/mxedge/internal/fakeclock"
	"github.com/mxedge/mxedge/internal/testlog"
	"github.com/mxedge/mxedge/queue"
)

// syncBuffer is a log sink shared by goroutines.
type syncBuffer = testlog.Buffer

type env struct {
	q     *queue.Queue
	c     *Client
	sock  string
	dir   string
	log   *syncBuffer
	clock *fakeclock.Clock // the queue's clock
}

// start opens a real queue in a temp dir and serves it on a real socket.
func start(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{dir: dir, sock: SocketPath(dir), log: &syncBuffer{},
		clock: fakeclock.New(time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC))}
	log := slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	q, err := queue.Open(filepath.Join(dir, "queue"), queue.Options{Logger: log, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	e.q = q
	s := New(q, log)
	ln, err := s.Listen(e.sock)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() { // before q.Close (cleanups run last first)
		if err := s.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
	e.c = NewClient(e.sock)
	return e
}

// put queues a message from from to rcpts and returns its ID.
func (e *env) put(t *testing.T, from string, rcpts ...string) string {
	t.Helper()
	en := queue.Envelope{From: from}
	for _, r := range rcpts {
		en.Rcpts = append(en.Rcpts, queue.Rcpt{Addr: r})
	}
	in, err := e.q.NewMessage(en)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(in, "Subject: test from "+from+"\r\nX-Test: 1\r\n\r\nbody line\r\n"); err != nil {
		t.Fatal(err)
	}
	if err := in.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	return in.ID()
}

func (e *env) list(t *testing.T, f queue.Filter) ([]string, []*Message) {
	t.Helper()
	var ids []string
	var msgs []*Message
	if err := e.c.List(context.Background(), f, func(m *Message) error {
		ids = append(ids, m.ID)
		msgs = append(msgs, m)
		return nil
	}); err != nil {
		t.Fatalf("list %+v: %v", f, err)
	}
	return ids, msgs
}

// raw sends a request straight to the socket, past the client's checks.
func (e *env) raw(t *testing.T, method, path string) (int, string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", e.sock)
	}}}
	defer hc.CloseIdleConnections()
	req, _ := http.NewRequest(method, "http://mxedge"+path, nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func apiStatus(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

func TestListFilters(t *testing.T) {
	e := start(t)
	m1 := e.put(t, "a@src.test", "x@one.test")
	m2 := e.put(t, "b@src.test", "y@two.test", "x@one.test")
	m3 := e.put(t, "", "z@two.test")
	if err := e.c.Hold(context.Background(), m3); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		f    queue.Filter
		want []string
	}{
		{queue.Filter{}, []string{m1, m2, m3}},
		{queue.Filter{Sender: "a@src.test"}, []string{m1}},
		{queue.Filter{Sender: "<b@src.test>"}, []string{m2}},
		{queue.Filter{Sender: "<>"}, []string{m3}},
		{queue.Filter{Recipient: "x@one.test"}, []string{m1, m2}},
		{queue.Filter{Recipient: "X@ONE.TEST"}, []string{m1, m2}},
		{queue.Filter{Domain: "two.test"}, []string{m2, m3}},
		{queue.Filter{Domain: "nowhere.test"}, nil},
		{queue.Filter{State: queue.StateHold}, []string{m3}},
		{queue.Filter{State: queue.StateIncoming}, []string{m1, m2}},
		{queue.Filter{Domain: "one.test", Sender: "b@src.test"}, []string{m2}},
	} {
		got, msgs := e.list(t, tc.f)
		if !slices.Equal(got, tc.want) {
			t.Errorf("list %+v = %v, want %v", tc.f, got, tc.want)
		}
		for _, m := range msgs {
			if m.State == "" || m.Headers != "" || len(m.Rcpts) == 0 || m.Arrival.IsZero() {
				t.Errorf("list %+v: incomplete message %+v", tc.f, m)
			}
		}
	}
	_, msgs := e.list(t, queue.Filter{Sender: "<>"})
	if len(msgs) == 1 && (msgs[0].State != queue.StateHold || !msgs[0].Held) {
		t.Errorf("held message listed as state %q held=%v", msgs[0].State, msgs[0].Held)
	}

	err := e.c.List(context.Background(), queue.Filter{State: "frozen"}, func(*Message) error { return nil })
	if apiStatus(err) != http.StatusBadRequest {
		t.Errorf("list state=frozen: %v, want 400", err)
	}
	if code, body := e.raw(t, "GET", "/queue?domian=one.test"); code != http.StatusBadRequest || !strings.Contains(body, `"error"`) {
		t.Errorf("list with unknown parameter: %d %s", code, body)
	}
}

func TestShow(t *testing.T) {
	e := start(t)
	id := e.put(t, "a@src.test", "x@one.test", "y@one.test")
	m, err := e.c.Show(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != id || m.From != "a@src.test" || len(m.Rcpts) != 2 || m.Rcpts[1].Addr != "y@one.test" ||
		m.Rcpts[0].Status != queue.StatusPending || m.State != queue.StateIncoming || m.Size == 0 {
		t.Errorf("show: %+v", m)
	}
	if m.Headers != "Subject: test from a@src.test\r\nX-Test: 1\r\n\r\n" {
		t.Errorf("headers %q", m.Headers)
	}
	_, err = e.c.Show(context.Background(), "0000000000000000")
	if apiStatus(err) != http.StatusNotFound || !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("show unknown: %v, want 404 / ErrNotFound", err)
	}
}

// The origin and the prepended header block are part of what show returns.
func TestShowOriginAndPrepended(t *testing.T) {
	e := start(t)
	o := queue.Origin{Listener: "mx", Kind: "mx", ClientIP: "192.0.2.7", ClientName: "mail.src.test",
		Helo: "mail.src.test", TLS: "TLSv1.3 TLS_AES_128_GCM_SHA256"}
	in, err := e.q.NewMessage(queue.Envelope{From: "a@src.test", Origin: o, Rcpts: []queue.Rcpt{{Addr: "x@one.test"}}})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(in, "Subject: s\r\n\r\nbody\r\n")
	if err := in.Prepend([]byte("Authentication-Results: mx.test; none\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := in.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	m, err := e.c.Show(context.Background(), in.ID())
	if err != nil {
		t.Fatal(err)
	}
	if m.Origin != o || m.Headers != "Authentication-Results: mx.test; none\r\nSubject: s\r\n\r\n" || m.Size != in.Size() {
		t.Errorf("show: origin %+v, headers %q, size %d", m.Origin, m.Headers, m.Size)
	}
	code, body := e.raw(t, "GET", "/queue/"+in.ID())
	if want := `"origin":{"listener":"mx","kind":"mx","client_ip":"192.0.2.7","client_name":"mail.src.test",` +
		`"helo":"mail.src.test","tls":"TLSv1.3 TLS_AES_128_GCM_SHA256"}`; code != http.StatusOK || !strings.Contains(body, want) {
		t.Errorf("GET /queue/ID: %d %s\nwant %s", code, body, want)
	}
}

func TestHoldRelease(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	id := e.put(t, "a@src.test", "x@one.test")
	e.put(t, "a@src.test", "x@one.test") // flushable

	if err := e.c.Hold(ctx, id); err != nil {
		t.Fatal(err)
	}
	if m, err := e.c.Show(ctx, id); err != nil || m.State != queue.StateHold || !m.Held {
		t.Fatalf("after hold: %+v, %v", m, err)
	}
	err := e.c.Flush(ctx, id)
	if apiStatus(err) != http.StatusConflict || !strings.Contains(err.Error(), "hold") {
		t.Errorf("flush of a held message: %v, want 409 saying it is on hold", err)
	}
	if err := e.c.Requeue(ctx, id); apiStatus(err) != http.StatusConflict || !strings.Contains(err.Error(), "hold") {
		t.Errorf("requeue of a held message: %v, want 409 saying it is on hold", err)
	}
	if n, err := e.c.FlushMatching(ctx, queue.Filter{}); err != nil || n != 1 {
		t.Errorf("flush all with one held: %d, %v; want 1", n, err)
	}
	if !strings.Contains(e.log.String(), "msg=admin action=hold queue_id="+id) {
		t.Errorf("hold not logged:\n%s", e.log.String())
	}

	if err := e.c.Release(ctx, id); err != nil {
		t.Fatal(err)
	}
	if m, err := e.c.Show(ctx, id); err != nil || m.State != queue.StateIncoming || m.Held {
		t.Fatalf("after release: %+v, %v", m, err)
	}
	if err := e.c.Flush(ctx, id); err != nil {
		t.Errorf("flush after release: %v", err)
	}
	if err := e.c.Requeue(ctx, id); err != nil {
		t.Errorf("requeue after release: %v", err)
	}
	if m, err := e.c.Show(ctx, id); err != nil || m.State != queue.StateIncoming || m.Attempts != 0 {
		t.Errorf("after requeue: %+v, %v", m, err)
	}
	if !strings.Contains(e.log.String(), "msg=admin action=requeue queue_id="+id) {
		t.Errorf("requeue not logged:\n%s", e.log.String())
	}
	if err := e.c.Hold(ctx, "0000000000000000"); apiStatus(err) != http.StatusNotFound {
		t.Errorf("hold unknown: %v, want 404", err)
	}
}

func TestDelete(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	id := e.put(t, "a@src.test", "x@one.test")
	keep := e.put(t, "a@src.test", "x@one.test")
	if err := e.c.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Show(ctx, id); apiStatus(err) != http.StatusNotFound {
		t.Errorf("show after delete: %v, want 404", err)
	}
	if err := e.c.Delete(ctx, id); apiStatus(err) != http.StatusNotFound {
		t.Errorf("second delete: %v, want 404", err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "queue", "spool", id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("spool file of a deleted message: %v", err)
	}
	if ids, _ := e.list(t, queue.Filter{}); !slices.Equal(ids, []string{keep}) {
		t.Errorf("queue after delete: %v, want [%s]", ids, keep)
	}
	if !strings.Contains(e.log.String(), "msg=admin action=delete queue_id="+id) {
		t.Errorf("delete not logged:\n%s", e.log.String())
	}
}

func TestFlush(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	m1 := e.put(t, "a@src.test", "x@one.test")
	m2 := e.put(t, "b@src.test", "y@two.test", "x@one.test")
	m3 := e.put(t, "c@src.test", "z@two.test")
	next := func(id string) time.Time {
		t.Helper()
		m, err := e.c.Show(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return m.NextAttempt
	}
	t0 := next(m3)

	e.clock.Advance(time.Hour)
	if n, err := e.c.FlushMatching(ctx, queue.Filter{Domain: "one.test"}); err != nil || n != 2 {
		t.Fatalf("flush domain one.test: %d, %v; want 2", n, err)
	}
	now := e.clock.Now()
	if !next(m1).Equal(now) || !next(m2).Equal(now) || !next(m3).Equal(t0) {
		t.Errorf("next attempts after flushing one.test: %v %v %v; want %v %v %v", next(m1), next(m2), next(m3), now, now, t0)
	}

	e.clock.Advance(time.Hour)
	if err := e.c.Flush(ctx, m3); err != nil {
		t.Fatal(err)
	}
	if !next(m3).Equal(e.clock.Now()) {
		t.Errorf("flush %s: next attempt %v, want %v", m3, next(m3), e.clock.Now())
	}
	if n, err := e.c.FlushMatching(ctx, queue.Filter{Sender: "c@src.test"}); err != nil || n != 1 {
		t.Errorf("flush sender: %d, %v; want 1", n, err)
	}
	if n, err := e.c.FlushMatching(ctx, queue.Filter{}); err != nil || n != 3 {
		t.Errorf("flush all: %d, %v; want 3", n, err)
	}
	// A misspelt filter must not turn into "flush everything".
	if code, _ := e.raw(t, "POST", "/queue/flush?domian=one.test"); code != http.StatusBadRequest {
		t.Errorf("flush with unknown parameter: %d, want 400", code)
	}
	if err := e.c.Flush(ctx, "0000000000000000"); apiStatus(err) != http.StatusNotFound {
		t.Errorf("flush unknown: %v, want 404", err)
	}
}

func TestBounce(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	id := e.put(t, "a@src.test", "x@one.test")
	if err := e.c.Bounce(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Show(ctx, id); apiStatus(err) != http.StatusNotFound {
		t.Errorf("show after bounce: %v, want 404", err)
	}
	ids, msgs := e.list(t, queue.Filter{Sender: "<>", Recipient: "a@src.test"})
	if len(ids) != 1 || !msgs[0].Notice {
		t.Errorf("report to the sender after bounce: %+v", msgs)
	}
	if err := e.c.Bounce(ctx, id); apiStatus(err) != http.StatusNotFound {
		t.Errorf("bounce again: %v, want 404", err)
	}
}

func TestStats(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	if st, err := e.c.Stats(ctx); err != nil || st.Messages != 0 {
		t.Fatalf("empty queue: %+v, %v", st, err)
	}
	m1 := e.put(t, "a@src.test", "x@one.test")
	e.clock.Advance(time.Minute)
	e.put(t, "b@src.test", "y@two.test", "x@one.test")
	e.put(t, "c@src.test", "z@two.test")
	if err := e.c.Hold(ctx, m1); err != nil {
		t.Fatal(err)
	}
	st, err := e.c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	_, msgs := e.list(t, queue.Filter{})
	for _, m := range msgs {
		size += m.Size
	}
	first, _ := e.c.Show(ctx, m1)
	if st.Messages != 3 || st.Pending != 4 || st.Bytes != size || size == 0 ||
		st.ByState[queue.StateHold] != 1 || st.ByState[queue.StateIncoming] != 2 || !st.Oldest.Equal(first.Arrival) {
		t.Errorf("stats %+v; want 3 messages, 4 pending, %d bytes, 1 hold, 2 incoming, oldest %v", st, size, first.Arrival)
	}
}

func TestBadInput(t *testing.T) {
	e := start(t)
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/queue/0123456789ABCDEI", 400}, // I is not in the alphabet
		{"GET", "/queue/0123456789abcdef", 400}, // lower case
		{"GET", "/queue/0123456789ABCDE", 400},  // 15 characters
		{"POST", "/queue/0123456789ABCDEFG/hold", 400},
		{"DELETE", "/queue/..%2Fstats", 400},
		{"POST", "/queue/0123456789ABCDEF/freeze", 404},
		{"GET", "/nothing", 404},
		{"GET", "/queue/0123456789ABCDEF", 404}, // well-formed, not queued
	} {
		code, body := e.raw(t, tc.method, tc.path)
		if code != tc.code || !strings.HasPrefix(body, `{"error":"`) {
			t.Errorf("%s %s: %d %s; want %d and a JSON error", tc.method, tc.path, code, body, tc.code)
		}
	}
	// The client refuses before sending.
	for _, id := range []string{"", "abc", "0123456789ABCDEL", "../../etc/passwd"} {
		if _, err := e.c.Show(context.Background(), id); err == nil || !strings.Contains(err.Error(), "invalid queue ID") {
			t.Errorf("show %q: %v", id, err)
		}
	}
}

func TestSocketFile(t *testing.T) {
	e := start(t)
	fi, err := os.Lstat(e.sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode %v, want a socket with 0600", fi.Mode())
	}
	entries, _ := os.ReadDir(e.dir)
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), ".ctl") {
			t.Errorf("temporary directory left: %s", en.Name())
		}
	}
	// A second daemon on the same data directory refuses to take over.
	s2 := New(e.q, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if _, err := s2.Listen(e.sock); !errors.Is(err, ErrRunning) {
		t.Errorf("second Listen: %v, want ErrRunning", err)
	}
	if _, err := e.c.Stats(context.Background()); err != nil {
		t.Errorf("first daemon after the second's attempt: %v", err)
	}
}

func TestListenAfterCrashAndShutdown(t *testing.T) {
	dir := t.TempDir()
	path := SocketPath(dir)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	// A daemon killed with SIGKILL leaves its socket file behind.
	dead, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	dead.(*net.UnixListener).SetUnlinkOnClose(false)
	dead.Close()

	q, err := queue.Open(filepath.Join(dir, "queue"), queue.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	s := New(q, quiet)
	ln, err := s.Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	if ln.Addr().String() != path {
		t.Errorf("listener address %s, want %s", ln.Addr(), path)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	if _, err := NewClient(path).Stats(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve after Shutdown: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after shutdown: %v", err)
	}

	// Something else at the path is not ours to remove.
	os.WriteFile(path, []byte("x"), 0o600)
	if _, err := New(q, quiet).Listen(path); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen over a regular file: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("regular file removed: %v", err)
	}
}

func TestClientErrorsWithoutDaemon(t *testing.T) {
	dir := t.TempDir()
	path := SocketPath(dir)
	ctx := context.Background()

	_, err := NewClient(path).Stats(ctx)
	if want := "mxedge is not running (no control socket at " + path + ")"; err == nil || err.Error() != want || !errors.Is(err, ErrNotRunning) {
		t.Errorf("no socket: %v, want %q", err, want)
	}

	dead, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	dead.(*net.UnixListener).SetUnlinkOnClose(false)
	dead.Close()
	err = NewClient(path).List(ctx, queue.Filter{}, func(*Message) error { return nil })
	if want := "mxedge is not running (stale control socket at " + path + ")"; err == nil || err.Error() != want {
		t.Errorf("stale socket: %v, want %q", err, want)
	}

	if os.Geteuid() == 0 { // root connects whatever the mode: check the mapping alone
		err := &url.Error{Op: "Get", URL: "http://mxedge/queue", Err: &net.OpError{Op: "dial", Net: "unix",
			Err: os.NewSyscallError("connect", syscall.EACCES)}}
		want := "cannot access control socket " + path + ": permission denied (run as the user that runs mxedge)"
		if got := NewClient(path).connError(err); got.Error() != want {
			t.Errorf("EACCES: %v, want %q", got, want)
		}
		return
	}
	os.Remove(path)
	live, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	os.Chmod(path, 0o000)
	err = NewClient(path).Hold(ctx, "0123456789ABCDEF")
	if want := "cannot access control socket " + path + ": permission denied (run as the user that runs mxedge)"; err == nil || err.Error() != want {
		t.Errorf("socket without permission: %v, want %q", err, want)
	}
}

// streamQueue is a Queue whose List produces messages on demand, to see
// that the listing is streamed and stops when the client leaves.
type streamQueue struct {
	Queue
	next    chan struct{} // one receive per message after the first
	stopped chan error    // List's result
	failAt  int           // List fails after this many messages (0: never)
}

func (s *streamQueue) State(*queue.Envelope) string { return queue.StateDeferred }

func (s *streamQueue) List(f queue.Filter, fn func(*queue.Envelope) error) error {
	for i := 0; ; i++ {
		if s.failAt > 0 && i == s.failAt {
			s.stopped <- nil
			return errors.New("queue: list: disk on fire")
		}
		if i > 0 {
			<-s.next
		}
		en := &queue.Envelope{ID: fmt.Sprintf("%016d", i), Rcpts: []queue.Rcpt{{Addr: "x@one.test"}}}
		if err := fn(en); err != nil {
			s.stopped <- err
			return err
		}
	}
}

func serveFake(t *testing.T, q Queue) *Client {
	t.Helper()
	s := New(q, slog.New(slog.NewTextHandler(io.Discard, nil)))
	path := SocketPath(t.TempDir())
	ln, err := s.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return NewClient(path)
}

// Each message reaches the client while the queue is still being read (a
// server that collected the list first would never send the first one),
// and a client that stops reading ends the pass over the queue.
func TestListStreamsAndStopsWithClient(t *testing.T) {
	sq := &streamQueue{next: make(chan struct{}), stopped: make(chan error, 1)}
	c := serveFake(t, sq)
	ctx, cancel := context.WithCancel(context.Background())
	got := 0
	errc := make(chan error, 1)
	go func() {
		errc <- c.List(ctx, queue.Filter{}, func(m *Message) error {
			got++
			if got == 3 {
				cancel() // the admin pressed ^C
				return nil
			}
			sq.next <- struct{}{} // let the queue produce the next one
			return nil
		})
	}()
	select {
	case err := <-errc:
		if got != 3 {
			t.Fatalf("client saw %d messages, %v", got, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("listing not streamed: the client got no message while the queue was still being read")
	}
	// The server's List is blocked in <-next; unblock it once: its next
	// write must fail or see the cancelled request.
	go func() {
		for {
			select {
			case sq.next <- struct{}{}:
			case <-time.After(10 * time.Second):
				return
			}
		}
	}()
	select {
	case err := <-sq.stopped:
		if err == nil {
			t.Error("List stopped without an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server kept reading the queue after the client left")
	}
}

// An error in the middle of a listing reaches the client as an error, not
// as a short list.
func TestListErrorAfterStart(t *testing.T) {
	sq := &streamQueue{next: make(chan struct{}, 10), stopped: make(chan error, 1), failAt: 2}
	for range 5 {
		sq.next <- struct{}{}
	}
	c := serveFake(t, sq)
	got := 0
	err := c.List(context.Background(), queue.Filter{}, func(*Message) error { got++; return nil })
	if got != 2 || err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("got %d messages, err %v; want 2 and the queue's error", got, err)
	}
}

func TestCheckID(t *testing.T) {
	for id, ok := range map[string]bool{
		"0123456789ABCDEF": true,
		"ZZZZZZZZZZZZZZZZ": true,
		"0G3Q8Z9V1B2C3D4E": true,
		"0123456789ABCDEI": false,
		"0123456789ABCDEL": false,
		"0123456789ABCDEO": false,
		"0123456789ABCDEU": false,
		"0123456789abcdef": false,
		"0123456789ABCDE":  false,
		"":                 false,
		"0123456789ABCDE/": false,
	} {
		if err := CheckID(id); (err == nil) != ok {
			t.Errorf("CheckID(%q) = %v", id, err)
		}
	}
}

// queue backup while the daemon runs: a consistent copy that opens as a
// queue with the same messages.
func TestBackupOnline(t *testing.T) {
	e := start(t)
	id := e.put(t, "s@src.test", "a@x.test")
	var buf bytes.Buffer
	n, err := e.c.Backup(context.Background(), &buf)
	if err != nil || n != int64(buf.Len()) || n == 0 {
		t.Fatalf("backup: %d bytes (%d read), %v", n, buf.Len(), err)
	}
	dir := filepath.Join(t.TempDir(), "restored")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "queue.db"), buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := queue.Check(dir, false)
	if err != nil || !rep.OK() || rep.Records != 1 {
		t.Fatalf("restored copy: %+v %v", rep, err)
	}
	q, err := queue.Open(dir, queue.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if _, err := q.Get(id); err != nil {
		t.Fatalf("message %s not in the backup: %v", id, err)
	}
}
