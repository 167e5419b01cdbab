package auth

import (
	"bytes"
	"errors"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// The SASL mechanisms, both ending in one check of a user name and a
// password. PLAIN (RFC 4616) is go-sasl's server, with its errors turned
// into replies; LOGIN (draft-murchison-sasl-login, what Outlook and older
// clients still use) is written here: go-sasl has only its client.

// Mechanism names as offered in EHLO.
const (
	MechPlain = sasl.Plain
	MechLogin = sasl.Login
)

// checkFunc checks user and password; nil is success, else an
// *smtp.SMTPError to send (535, a delayed 535, 421, 454).
type checkFunc func(user, password string) error

var (
	replyBadPlain    = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Invalid PLAIN response"}
	replyBadLogin    = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Invalid LOGIN response"}
	replyAuthzid     = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication failed: authorization identity must be the user"}
	errUnexpectedEnd = errors.New("unexpected client response")
)

// plainServer is go-sasl's PLAIN server; an authorization identity other
// than the user (acting for someone else) is refused.
type plainServer struct{ inner sasl.Server }

func newPlain(check checkFunc) sasl.Server {
	return &plainServer{inner: sasl.NewPlainServer(func(identity, user, password string) error {
		if identity != "" && identity != user {
			return replyAuthzid
		}
		if user == "" {
			return replyBadPlain
		}
		return check(user, password)
	})}
}

func (p *plainServer) Next(response []byte) ([]byte, bool, error) {
	challenge, done, err := p.inner.Next(response)
	var se *smtp.SMTPError
	if err != nil && !errors.As(err, &se) {
		// go-sasl's own: a response without its two NULs.
		err = replyBadPlain
	}
	return challenge, done, err
}

// loginServer is the LOGIN mechanism: "Username:", then "Password:", each
// answered with one base64 line. An initial response is the user name.
type loginServer struct {
	check checkFunc
	state int // 0: start, 1: user asked, 2: password asked, 3: done
	user  string
}

func newLogin(check checkFunc) sasl.Server { return &loginServer{check: check} }

var (
	challengeUser = []byte("Username:")
	challengePass = []byte("Password:")
)

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch l.state {
	case 0:
		if response == nil { // no initial response
			l.state = 1
			return challengeUser, false, nil
		}
		l.state = 1
		fallthrough
	case 1:
		if len(response) == 0 || bytes.ContainsAny(response, "\x00\r\n") {
			l.state = 3
			return nil, true, replyBadLogin
		}
		l.user, l.state = string(response), 2
		return challengePass, false, nil
	case 2:
		l.state = 3
		if bytes.ContainsAny(response, "\x00\r\n") {
			return nil, true, replyBadLogin
		}
		return nil, true, l.check(l.user, string(response))
	}
	return nil, true, errUnexpectedEnd
}
