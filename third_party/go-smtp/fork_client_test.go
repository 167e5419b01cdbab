package smtp

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// FORK.md section 16: BODY= as MailOptions.Body says.
func TestForkClientBody(t *testing.T) {
	for _, tc := range []struct {
		name string
		ext  []string
		body BodyType
		want string // "" : an error
	}{
		{"upstream rule", []string{"8BITMIME"}, "", "MAIL FROM:<a@b.example> BODY=8BITMIME"},
		{"7bit declared", []string{"8BITMIME"}, Body7Bit, "MAIL FROM:<a@b.example> BODY=7BIT"},
		{"8bit declared", []string{"8BITMIME"}, Body8BitMIME, "MAIL FROM:<a@b.example> BODY=8BITMIME"},
		{"server without 8BITMIME", nil, Body7Bit, "MAIL FROM:<a@b.example>"},
		{"binarymime", []string{"8BITMIME", "BINARYMIME", "CHUNKING"}, BodyBinaryMIME, "MAIL FROM:<a@b.example> BODY=BINARYMIME"},
		{"binarymime unsupported", []string{"8BITMIME"}, BodyBinaryMIME, ""},
	} {
		c := &Client{ext: map[string]string{}}
		for _, e := range tc.ext {
			c.ext[e] = ""
		}
		got, err := c.mailCommand("a@b.example", &MailOptions{Body: tc.body})
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s: %q, want an error", tc.name, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

// FORK.md section 17: ResetTransaction sends RSET, and the next MAIL
// follows without a new EHLO.
func TestForkResetTransaction(t *testing.T) {
	server := "220 hello\r\n250-mx.example\r\n250 8BITMIME\r\n250 2.1.0 Ok\r\n250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n"
	var out strings.Builder
	c := NewClient(fakeConn{r: strings.NewReader(server), w: &out})
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("a@b.example", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.ResetTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("a@b.example", nil); err != nil {
		t.Fatal(err)
	}
	want := "EHLO client.example\r\nMAIL FROM:<a@b.example> BODY=8BITMIME\r\nRSET\r\nMAIL FROM:<a@b.example> BODY=8BITMIME\r\n"
	if out.String() != want {
		t.Errorf("client sent\n%q\nwant\n%q", out.String(), want)
	}
}

// fakeConn is a net.Conn over a reader and a writer.
type fakeConn struct {
	r io.Reader
	w io.Writer
}

func (f fakeConn) Read(p []byte) (int, error)       { return f.r.Read(p) }
func (f fakeConn) Write(p []byte) (int, error)      { return f.w.Write(p) }
func (f fakeConn) Close() error                     { return nil }
func (f fakeConn) LocalAddr() net.Addr              { return nil }
func (f fakeConn) RemoteAddr() net.Addr             { return nil }
func (f fakeConn) SetDeadline(time.Time) error      { return nil }
func (f fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (f fakeConn) SetWriteDeadline(time.Time) error { return nil }
