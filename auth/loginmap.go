package auth

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
)

// LoginMap is the sender rules per login of a backend that has none of
// its own (Dovecot): a file of lines
//
//	# login: sender rules (see Senders), comma or space separated
//	alice@example.org: alice@example.org, a.smith@example.org
//	webshop: *@shop.example.org
//
// A login not listed owns its own address if it is one. Re-read when it
// changes, as the users file; errors name file and line.
type LoginMap struct {
	path string
	log  *slog.Logger

	mu    sync.Mutex
	m     map[string]Senders
	stamp fileStamp
}

// OpenLoginMap reads the login map at path.
func OpenLoginMap(path string, log *slog.Logger) (*LoginMap, error) {
	if log == nil {
		log = slog.Default()
	}
	lm := &LoginMap{path: path, log: log}
	if err := lm.load(); err != nil {
		return nil, err
	}
	return lm, nil
}

func (lm *LoginMap) load() error {
	fi, err := os.Stat(lm.path)
	if err != nil {
		return fmt.Errorf("login map: %w", err)
	}
	data, err := os.ReadFile(lm.path)
	if err != nil {
		return fmt.Errorf("login map: %w", err)
	}
	m, err := parseLoginMap(lm.path, data)
	if err != nil {
		return err
	}
	lm.mu.Lock()
	lm.m, lm.stamp = m, stampOf(fi)
	lm.mu.Unlock()
	return nil
}

func parseLoginMap(name string, data []byte) (map[string]Senders, error) {
	m := map[string]Senders{}
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		login, rest, ok := strings.Cut(line, ":")
		login = strings.ToLower(strings.TrimSpace(login))
		if !ok || login == "" {
			errs = append(errs, fmt.Errorf(`%s:%d: want "login: sender, sender"`, name, n))
			continue
		}
		s, err := ParseSenders(strings.FieldsFunc(rest, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }))
		if err == nil && m[login].rules != nil {
			err = fmt.Errorf("login %q listed twice", login)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", name, n, err))
			continue
		}
		m[login] = s
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return m, nil
}

// Senders returns the rules of login.
func (lm *LoginMap) Senders(login string) (Senders, bool) {
	if fi, err := os.Stat(lm.path); err == nil {
		lm.mu.Lock()
		changed := stampOf(fi) != lm.stamp
		lm.mu.Unlock()
		if changed {
			if err := lm.load(); err != nil {
				lm.log.Error("login map not reloaded, keeping the last good version", "err", err)
				lm.mu.Lock()
				lm.stamp = stampOf(fi)
				lm.mu.Unlock()
			}
		}
	}
	login = strings.ToLower(login)
	lm.mu.Lock()
	s, ok := lm.m[login]
	lm.mu.Unlock()
	if ok {
		return s, true
	}
	if strings.Contains(login, "@") {
		s, err := ParseSenders([]string{login})
		return s, err == nil
	}
	return Senders{}, true
}
