package delivery

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-smtp"
)

// lmtpStore is a scripted mailbox store speaking LMTP (go-smtp's server
// in LMTP mode): RCPT refuses "nobody"; after the final dot alice's copy
// is delivered, bob's deferred (mailbox locked), carol's refused (over
// quota).
type lmtpStore struct {
	mu     sync.Mutex
	copies map[string][]string // recipient -> bodies delivered
	rcpts  []string            // every RCPT seen
	conns  atomic.Int32
}

func (st *lmtpStore) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &lmtpSession{st: st}, nil
}

type lmtpSession struct {
	st    *lmtpStore
	rcpts []string
}

func (s *lmtpSession) Reset()                               { s.rcpts = nil }
func (s *lmtpSession) Logout() error                        { return nil }
func (s *lmtpSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *lmtpSession) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }
func (s *lmtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.st.mu.Lock()
	s.st.rcpts = append(s.st.rcpts, to)
	s.st.mu.Unlock()
	if strings.HasPrefix(to, "nobody@") {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User unknown"}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *lmtpSession) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	for _, to := range s.rcpts {
		switch {
		case strings.HasPrefix(to, "bob@"):
			status.SetStatus(to, &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "Mailbox is locked"})
		case strings.HasPrefix(to, "carol@"):
			status.SetStatus(to, &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "Quota exceeded"})
		default:
			s.st.mu.Lock()
			s.st.copies[to] = append(s.st.copies[to], string(b))
			s.st.mu.Unlock()
			status.SetStatus(to, nil)
		}
	}
	return nil
}

type countingListener struct {
	net.Listener
	n *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// startLMTP serves an lmtpStore on network ("unix": a socket in a
// temporary directory; "tcp": 127.0.0.7:0) and returns the route to it.
func startLMTP(t *testing.T, network string) (*lmtpStore, string) {
	t.Helper()
	st := &lmtpStore{copies: map[string][]string{}}
	addr := "127.0.0.7:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "lmtp")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(st)
	srv.LMTP = true
	srv.Domain = "store.test"
	go srv.Serve(countingListener{ln, &st.conns})
	t.Cleanup(func() { srv.Close() })
	if network == "unix" {
		return st, "lmtp:unix:" + addr
	}
	return st, "lmtp:" + ln.Addr().String()
}

// Issue 16, section 5: LMTP routes over a unix socket and TCP: LHLO, one
// reply per recipient after the final dot (each delivered, deferred or
// failed on its own), the connection reused for the next message.
func TestLMTPRoute(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			st, route := startLMTP(t, network)
			d := newDeliverer(t, map[string]string{"store.test": route})
			msg := spooled(t, "s@src.test", "Subject: lmtp\r\n\r\nbody\r\n",
				"alice@store.test", "bob@store.test", "carol@store.test", "nobody@store.test")
			res := byRcpt(d.Deliver(context.Background(), msg))
			for rcpt, want := range map[string]string{
				"alice@store.test": "250", "bob@store.test": "452 4.2.1", "carol@store.test": "552 5.2.2",
				"nobody@store.test": "550 5.1.1",
			} {
				r := res[rcpt]
				got := strings.TrimSpace(strconv.Itoa(r.Code) + " " + r.Enhanced)
				if !strings.HasPrefix(got, want) {
					t.Errorf("%s: %+v, want %s", rcpt, r, want)
				}
			}
			// A second message on the same connection.
			msg = spooled(t, "s@src.test", "Subject: again\r\n\r\nbody\r\n", "alice@store.test")
			if r := d.Deliver(context.Background(), msg); r[0].Code != 250 {
				t.Errorf("second message: %+v", r)
			}
			st.mu.Lock()
			defer st.mu.Unlock()
			if n := len(st.copies["alice@store.test"]); n != 2 || st.conns.Load() != 1 {
				t.Errorf("alice has %d copies over %d connections, want 2 over 1", n, st.conns.Load())
			}
			if !strings.HasSuffix(st.copies["alice@store.test"][0], "Subject: lmtp\r\n\r\nbody\r\n") {
				t.Errorf("copy %q", st.copies["alice@store.test"][0])
			}
		})
	}
}

// A verification probe over LMTP: LHLO, MAIL, RCPT, then the connection
// is given back (RSET before the next use).
func TestLMTPDialForProbes(t *testing.T) {
	st, route := startLMTP(t, "unix")
	d := newDeliverer(t, map[string]string{"store.test": route})
	hops, err := d.Hops(context.Background(), "store.test")
	if err != nil || len(hops) != 1 {
		t.Fatalf("hops %v, %v", hops, err)
	}
	for _, rcpt := range []string{"alice@store.test", "nobody@store.test"} {
		c, err := d.Dial(context.Background(), hops[0], DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Client().Mail("", nil); err != nil {
			t.Fatal(err)
		}
		err = c.Client().Rcpt(rcpt, nil)
		var se *smtp.SMTPError
		if rcpt == "nobody@store.test" && (!errors.As(err, &se) || se.Code != 550) || rcpt == "alice@store.test" && err != nil {
			t.Errorf("%s: %v", rcpt, err)
		}
		c.Release()
	}
	if st.conns.Load() != 1 {
		t.Errorf("%d connections, want 1 (reused)", st.conns.Load())
	}
}
