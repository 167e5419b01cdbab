package auth

import (
	"errors"
	"testing"

	"github.com/emersion/go-smtp"
)

func code(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func TestLogin(t *testing.T) {
	var got [2]string
	check := func(u, p string) error {
		got = [2]string{u, p}
		if p == "right" {
			return nil
		}
		return replyAuthFailed
	}
	// Without an initial response: Username:, Password:.
	l := newLogin(check)
	if c, done, err := l.Next(nil); string(c) != "Username:" || done || err != nil {
		t.Fatalf("%q %v %v", c, done, err)
	}
	if c, done, err := l.Next([]byte("alice")); string(c) != "Password:" || done || err != nil {
		t.Fatalf("%q %v %v", c, done, err)
	}
	if _, done, err := l.Next([]byte("right")); !done || err != nil || got != [2]string{"alice", "right"} {
		t.Fatalf("%v %v %v", done, err, got)
	}
	if _, _, err := l.Next([]byte("again")); err == nil {
		t.Error("a response after the end accepted")
	}
	// With the user name as initial response.
	l = newLogin(check)
	if c, _, err := l.Next([]byte("bob")); string(c) != "Password:" || err != nil {
		t.Fatalf("%q %v", c, err)
	}
	if _, done, err := l.Next([]byte("wrong")); !done || code(err) != 535 {
		t.Fatalf("%v %v", done, err)
	}
	// An empty user name or a NUL is a 501.
	l = newLogin(check)
	if _, _, err := l.Next([]byte{}); code(err) != 501 {
		t.Errorf("empty user: %v", err)
	}
	l = newLogin(check)
	l.Next(nil)
	l.Next([]byte("a"))
	if _, _, err := l.Next([]byte("p\x00w")); code(err) != 501 {
		t.Errorf("NUL in password: %v", err)
	}
}

func TestPlain(t *testing.T) {
	check := func(u, p string) error {
		if u == "alice" && p == "right" {
			return nil
		}
		return replyAuthFailed
	}
	for _, tc := range []struct {
		resp string
		code int
	}{
		{"\x00alice\x00right", 0},
		{"alice\x00alice\x00right", 0},
		{"bob\x00alice\x00right", 535}, // acting for another user
		{"\x00alice\x00wrong", 535},
		{"alice right", 501},
		{"\x00\x00right", 501},
	} {
		p := newPlain(check)
		_, done, err := p.Next([]byte(tc.resp))
		if code(err) != tc.code || tc.code == 0 && !done {
			t.Errorf("%q: %v %v, want %d", tc.resp, done, err, tc.code)
		}
	}
	// No initial response: an empty challenge first.
	p := newPlain(check)
	if c, done, err := p.Next(nil); len(c) != 0 || done || err != nil {
		t.Errorf("%q %v %v", c, done, err)
	}
}
