package smtp_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

type discardBackend struct{}

func (discardBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return discardSession{}, nil }

type discardSession struct{}

func (discardSession) Reset()                               {}
func (discardSession) Logout() error                        { return nil }
func (discardSession) Mail(string, *smtp.MailOptions) error { return nil }
func (discardSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (discardSession) Data(r io.Reader) error {
	// 32 KiB reads, as io.Copy into a writer without ReadFrom (mxedge's
	// body filter) does.
	_, err := io.Copy(struct{ io.Writer }{io.Discard}, r)
	return err
}

// BenchmarkServerData sends 1 MiB messages (76-character lines, some
// dot-stuffed) through the server over TCP loopback, one transaction per
// iteration on one connection, client and server in this process.
func BenchmarkServerData(b *testing.B) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := smtp.NewServer(discardBackend{})
	s.Domain = "mx.example"
	benchConfigure(s)
	go s.Serve(l)
	defer s.Close()

	var msg bytes.Buffer
	line := strings.Repeat("abcdefghij", 7) + "012345\r\n"
	for i := 0; msg.Len() < 1<<20; i++ {
		if i%50 == 0 {
			msg.WriteString("..stuffed line\r\n")
		} else {
			msg.WriteString(line)
		}
	}
	msg.WriteString(".\r\n")

	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	expect := func(code string) {
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if !strings.HasPrefix(l, code) {
				b.Fatalf("got %q, want %s", l, code)
			}
			if l[3] == ' ' {
				return
			}
		}
	}
	expect("220")
	io.WriteString(c, "EHLO client.example\r\n")
	expect("250")
	b.SetBytes(int64(msg.Len()))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		io.WriteString(c, "MAIL FROM:<a@b.example>\r\n")
		expect("250")
		io.WriteString(c, "RCPT TO:<c@d.example>\r\n")
		expect("250")
		io.WriteString(c, "DATA\r\n")
		expect("354")
		c.Write(msg.Bytes())
		expect("250")
	}
}
