package delivery

import (
	"fmt"
	"os"
	"strings"

	"github.com/emersion/go-sasl"
)

// The smarthost (delivery.smarthost, Postfix relayhost): the next hop of
// every domain without a route, instead of its MX hosts. TLS is always
// required there (smarthost_tls "verify" or "encrypt"), and with
// smarthost_auth_file the relay authenticates with SASL PLAIN (RFC 4616)
// after STARTTLS, never before.

// credentials are SASL PLAIN credentials.
type credentials struct{ user, pass string }

// CheckSmarthostAuth reads the smarthost_auth_file path, if any, so that
// "mxedge serve" reports an unreadable or malformed file at start. The
// file is read again at each connection to the smarthost (a changed
// password needs no restart).
func CheckSmarthostAuth(path string) error {
	if path == "" {
		return nil
	}
	_, err := readCredentials(path)
	return err
}

// readCredentials reads "user:password" (one line) from path.
func readCredentials(path string) (*credentials, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("delivery: smarthost_auth_file: %w", err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	user, pass, ok := strings.Cut(strings.TrimRight(line, "\r"), ":")
	if !ok || user == "" {
		return nil, fmt.Errorf("delivery: smarthost_auth_file %s: want one line user:password", path)
	}
	return &credentials{user: user, pass: pass}, nil
}

// authenticate runs AUTH PLAIN on s. A refusal is a failure of the next
// hop, never of the recipients: the mail is deferred (4.7.0).
func (d *Deliverer) authenticate(s *session, cr *credentials) (failure, bool) {
	if ok, _ := s.c.Extension("AUTH"); !ok || !s.c.SupportsAuth("PLAIN") {
		return failure{enh: "4.7.0", text: s.relay + " does not offer AUTH PLAIN", relay: s.relay}, false
	}
	if err := s.c.Auth(sasl.NewPlainClient("", cr.user, cr.pass)); err != nil {
		code, _, text := describe(err)
		if code == 0 {
			return failure{enh: "4.4.2", text: "AUTH: " + text, relay: s.relay}, false
		}
		return failure{enh: "4.7.0", text: fmt.Sprintf("authentication as %s refused: %d %s", cr.user, code, text), relay: s.relay}, false
	}
	return failure{}, true
}
