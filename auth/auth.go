package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mxedge/mxedge/policy"
)

// Credentials are what one AUTH exchange presents, with the client's
// addresses (Dovecot is told them, as Postfix does).
type Credentials struct {
	User, Password string
	Mech           string
	Remote, Local  netip.AddrPort
}

// Backend checks passwords.
//
// Authenticate returns the login (the canonical user name, which is what
// the session records as its authenticated user) and ok = true when the
// password is right; ok = false when the user is unknown or the password
// wrong, which must take the same time (File checks a decoy hash). err is
// a failure of the backend itself (Dovecot down, a timeout): the client is
// answered 454 4.7.0 and the attempt is not counted against it. It must
// honour ctx and is called concurrently.
//
// Example: a backend with one user
//
//	func (one) Authenticate(ctx context.Context, c auth.Credentials) (string, bool, error) {
//		ok := subtle.ConstantTimeCompare([]byte(c.User+"\x00"+c.Password), []byte("alice\x00secret")) == 1
//		return "alice", ok, nil
//	}
type Backend interface {
	Authenticate(ctx context.Context, c Credentials) (login string, ok bool, err error)
}

// SenderMap gives the sender rules of a login (see Senders); ok false
// for an unknown login.
type SenderMap interface {
	Senders(login string) (s Senders, ok bool)
}

// Options configure an Authenticator; zero values take the defaults in
// brackets.
type Options struct {
	Backend Backend
	Guard   *Guard // [NewGuard with its defaults]
	// Timeout bounds one password check [30s].
	Timeout time.Duration
	// Concurrency bounds password checks in flight at once (argon2id
	// takes 64 MiB and tens of milliseconds each) [2 x GOMAXPROCS].
	Concurrency int
	Logger      *slog.Logger        // [slog.Default()]
	Sleep       func(time.Duration) // the guard's delays, for tests [time.Sleep]
}

// Authenticator is the SASL side of a submission listener: the mechanisms
// offered, the password check through the Backend, and the brute force
// guard around it. Every reply it decides is an *smtp.SMTPError.
type Authenticator struct {
	o   Options
	sem chan struct{}
}

// New returns an Authenticator over o.Backend.
func New(o Options) *Authenticator {
	if o.Guard == nil {
		o.Guard = NewGuard(GuardOptions{})
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 2 * runtime.GOMAXPROCS(0)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Sleep == nil {
		o.Sleep = time.Sleep
	}
	return &Authenticator{o: o, sem: make(chan struct{}, o.Concurrency)}
}

// Guard is the authenticator's brute force guard.
func (a *Authenticator) Guard() *Guard { return a.o.Guard }

// Mechanisms are the SASL mechanisms offered (after TLS only: go-smtp
// offers none on a plaintext connection).
func (a *Authenticator) Mechanisms() []string { return []string{MechPlain, MechLogin} }

// Replies of the authentication exchange (RFC 4954 section 6).
var (
	replyAuthFailed = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication failed"}
	replyAuthTemp   = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure, try again later"}
	replyLocked     = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many authentication failures, try again later"}
)

// Start begins an exchange of mechanism mech for the session pc; done is
// called with the login when it succeeds (before the 235 is sent). An
// unknown mechanism is 504 5.5.4; a locked out client gets 421 at once.
func (a *Authenticator) Start(pc *policy.Conn, mech string, done func(login string)) (sasl.Server, error) {
	if a.o.Guard.Locked(pc.IP) {
		a.o.Logger.Warn("auth refused", "listener", pc.Listener, "client_ip", pc.IP.String(), "reason", "locked out")
		return nil, replyLocked
	}
	check := func(user, password string) error { return a.check(pc, mech, user, password, done) }
	switch strings.ToUpper(mech) {
	case MechPlain:
		return newPlain(check), nil
	case MechLogin:
		return newLogin(check), nil
	}
	return nil, &smtp.SMTPError{Code: 504, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "Unsupported authentication mechanism"}
}

// check is the end of every exchange: guard, backend, guard, log.
func (a *Authenticator) check(pc *policy.Conn, mech, user, password string, done func(string)) error {
	ip := pc.IP.String()
	if a.o.Guard.Locked(pc.IP) {
		return replyLocked
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.o.Timeout)
	defer cancel()
	select {
	case a.sem <- struct{}{}:
	case <-ctx.Done():
		a.o.Logger.Warn("auth deferred", "listener", pc.Listener, "client_ip", ip, "user", user, "reason", "too many checks in flight")
		return replyAuthTemp
	}
	login, ok, err := a.o.Backend.Authenticate(ctx, Credentials{User: user, Password: password, Mech: mech, Remote: pc.Remote, Local: pc.Local})
	<-a.sem
	switch {
	case err != nil:
		a.o.Logger.Warn("auth deferred", "listener", pc.Listener, "client_ip", ip, "user", user, "mech", mech, "err", err)
		return replyAuthTemp
	case ok:
		a.o.Guard.Succeeded(pc.IP, login)
		a.o.Logger.Info("auth ok", "listener", pc.Listener, "client_ip", ip, "user", login, "mech", mech)
		done(login)
		return nil
	}
	v := a.o.Guard.Failed(pc.IP, strings.ToLower(user))
	// One line per failure, the fail2ban filter's line (see the package doc).
	a.o.Logger.Warn("auth failed", "listener", pc.Listener, "client_ip", ip, "user", user, "mech", mech,
		"failures", v.Failures, "locked", v.Locked)
	if v.Locked {
		return replyLocked
	}
	if v.Delay > 0 {
		a.o.Sleep(v.Delay)
	}
	return replyAuthFailed
}

// IsTemporary reports whether err from a Backend is a backend failure.
func IsTemporary(err error) bool { return errors.Is(err, ErrTemporary) }
