package auth

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Dovecot is a Backend that asks Dovecot's authentication service over
// its client socket (auth-client), the protocol Postfix speaks with
// smtpd_sasl_type = dovecot (Dovecot's "Authentication Protocol", version
// 1.2): handshake VERSION/CPID, then per authentication
//
//	C: AUTH <id> PLAIN service=smtp nologin secured lip=.. rip=.. resp=<base64>
//	S: OK <id> user=<login>   |   FAIL <id> [temp] [reason=..]
//
// Both of our mechanisms reach Dovecot as PLAIN (LOGIN is decoded here).
// One connection per authentication, each within Timeout: Dovecot's auth
// process multiplexes many clients, and a broken connection affects one
// attempt only. Dovecot applies its own auth_failure_delay to failures.
//
// Dovecot has no sender rules: Logins (a login map file) says which
// addresses each login owns; without it a login that is an address owns
// itself.
type Dovecot struct {
	Socket  string        // path of the auth-client socket
	Timeout time.Duration // one authentication, connect to answer [10s]
	Logins  *LoginMap     // sender rules per login; nil: the login itself

	id atomic.Uint64
}

// ErrTemporary marks a backend failure that is not the client's fault
// (Dovecot down, a timeout): answered 454 4.7.0 and not counted as an
// authentication failure.
var ErrTemporary = errors.New("temporary authentication failure")

// Authenticate implements Backend.
func (d *Dovecot) Authenticate(ctx context.Context, c Credentials) (string, bool, error) {
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "unix", d.Socket)
	if err != nil {
		return "", false, fmt.Errorf("dovecot auth: %w: %v", ErrTemporary, err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	login, ok, err := d.exchange(conn, c)
	if err != nil {
		return "", false, fmt.Errorf("dovecot auth: %w: %v", ErrTemporary, err)
	}
	return login, ok, nil
}

func (d *Dovecot) exchange(conn net.Conn, c Credentials) (string, bool, error) {
	r := bufio.NewReaderSize(conn, 4096)
	if _, err := fmt.Fprintf(conn, "VERSION\t1\t2\nCPID\t%d\n", os.Getpid()); err != nil {
		return "", false, err
	}
	plain := false
	for {
		line, err := readAuthLine(r)
		if err != nil {
			return "", false, fmt.Errorf("handshake: %w", err)
		}
		f := strings.Split(line, "\t")
		switch f[0] {
		case "VERSION":
			if len(f) < 2 || f[1] != "1" {
				return "", false, fmt.Errorf("protocol version %q not supported", line)
			}
		case "MECH":
			if len(f) > 1 && strings.EqualFold(f[1], "PLAIN") {
				plain = true
			}
		}
		if f[0] == "DONE" {
			break
		}
	}
	if !plain {
		return "", false, errors.New("dovecot does not offer PLAIN (auth_mechanisms)")
	}
	id := strconv.FormatUint(d.id.Add(1), 10)
	resp := base64.StdEncoding.EncodeToString([]byte("\x00" + c.User + "\x00" + c.Password))
	req := "AUTH\t" + id + "\tPLAIN\tservice=smtp\tnologin\tsecured"
	if c.Local.IsValid() {
		req += "\tlip=" + c.Local.Addr().Unmap().String() + "\tlport=" + strconv.Itoa(int(c.Local.Port()))
	}
	if c.Remote.IsValid() {
		req += "\trip=" + c.Remote.Addr().Unmap().String() + "\trport=" + strconv.Itoa(int(c.Remote.Port()))
	}
	req += "\tresp=" + resp + "\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		return "", false, err
	}
	for {
		line, err := readAuthLine(r)
		if err != nil {
			return "", false, fmt.Errorf("reply: %w", err)
		}
		f := strings.Split(line, "\t")
		if len(f) < 2 || f[1] != id {
			continue
		}
		switch f[0] {
		case "OK":
			login := c.User
			for _, kv := range f[2:] {
				if v, ok := strings.CutPrefix(kv, "user="); ok {
					login = v
				}
			}
			return strings.ToLower(login), true, nil
		case "FAIL":
			for _, kv := range f[2:] {
				if kv == "temp" {
					return "", false, errors.New("dovecot: temporary failure")
				}
			}
			return "", false, nil
		case "CONT":
			// PLAIN with its response given never continues.
			return "", false, errors.New("unexpected CONT")
		}
	}
}

// readAuthLine reads one protocol line without its LF (at most 16 KiB).
func readAuthLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, isPrefix, err := r.ReadLine()
		if err != nil {
			return "", err
		}
		b = append(b, chunk...)
		if len(b) > 16<<10 {
			return "", errors.New("line too long")
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}

// Senders implements SenderMap from the login map.
func (d *Dovecot) Senders(login string) (Senders, bool) {
	if d.Logins != nil {
		return d.Logins.Senders(login)
	}
	if strings.Contains(login, "@") {
		s, err := ParseSenders([]string{login})
		return s, err == nil
	}
	return Senders{}, true
}
