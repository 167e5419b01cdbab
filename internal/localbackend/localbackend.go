// Package localbackend is the demo mailbox server behind the built-in
// default configuration ("mxedge serve" without -config): an SMTP server on
// loopback that knows a few users of one domain, rejects every other
// recipient with 550 5.1.1 (as a real backend must, for recipient
// verification to work), and stores accepted mail as Maildir files
// (new/<unique>, written via tmp/ and fsynced) under
// <data dir>/mailboxes/<user>/.
//
// It is not a production mailbox server: it exists so a newcomer can see
// mail flow through the relay with one command and nothing else installed.
package localbackend

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// Backend is the demo mailbox server.
type Backend struct {
	Domain string
	Users  []string // local parts that exist, lowercase
	Dir    string   // mailbox root
	Log    *slog.Logger

	srv *smtp.Server
	seq atomic.Uint64
}

// Start listens on addr and serves until Close.
func (b *Backend) Start(addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("localbackend: listen %s: %w", addr, err)
	}
	b.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{b: b}, nil
	}))
	b.srv.Domain = "mailbox." + b.Domain
	b.srv.ReadTimeout = 5 * time.Minute
	b.srv.WriteTimeout = 5 * time.Minute
	go b.srv.Serve(ln)
	return ln.Addr(), nil
}

// Close stops the server.
func (b *Backend) Close() error { return b.srv.Close() }

// Mailbox returns the Maildir of user.
func (b *Backend) Mailbox(user string) string { return filepath.Join(b.Dir, user) }

func (b *Backend) exists(addr string) (string, bool) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || !strings.EqualFold(addr[at+1:], b.Domain) {
		return "", false
	}
	local := strings.ToLower(addr[:at])
	for _, u := range b.Users {
		if u == local {
			return u, true
		}
	}
	return "", false
}

type session struct {
	b     *Backend
	users []string
}

func (s *session) Reset()                               { s.users = nil }
func (s *session) Logout() error                        { return nil }
func (s *session) Mail(string, *smtp.MailOptions) error { return nil }
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	u, ok := s.b.exists(to)
	if !ok {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<" + to + ">: no such user here"}
	}
	s.users = append(s.users, u)
	return nil
}

func (s *session) Data(r io.Reader) error {
	data, err := io.ReadAll(io.LimitReader(r, 64<<20))
	if err != nil {
		return err
	}
	for _, u := range s.users {
		path, err := s.b.store(u, data)
		if err != nil {
			s.b.Log.Error("localbackend: store failed", "user", u, "err", err)
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "mailbox write failed"}
		}
		s.b.Log.Info("localbackend: stored", "user", u, "path", path, "size", len(data))
	}
	return nil
}

// store writes one Maildir message: tmp/, fsync, rename to new/.
func (b *Backend) store(user string, data []byte) (string, error) {
	box := b.Mailbox(user)
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(box, sub), 0o700); err != nil {
			return "", err
		}
	}
	name := fmt.Sprintf("%d.M%dP%d.mxedge", time.Now().Unix(), b.seq.Add(1), os.Getpid())
	tmp := filepath.Join(box, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	err = errors.Join(err, f.Sync(), f.Close())
	if err == nil {
		final := filepath.Join(box, "new", name)
		if err = os.Rename(tmp, final); err == nil {
			return final, nil
		}
	}
	os.Remove(tmp)
	return "", err
}
