package smtpd

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
)

// FuzzDataSession sends hostile message content through a real session,
// as DATA (dot-stuffed) or as BDAT chunks, and checks what the user
// observes: a well-formed reply, and when the message is accepted, the
// stored data is exactly what was sent (after our Received field), so
// the DATA reader neither loses nor invents bytes (no smuggling of a
// second message through an early end of data).
func FuzzDataSession(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nbody\r\n"), false, uint8(3))
	f.Add([]byte("Subject: x\r\n\r\n.\r\n..\r\n.hidden\r\nMAIL FROM:<a@b>\r\n"), false, uint8(1))
	f.Add([]byte("Subject: x\r\n\r\n\r\n.\r\nDATA\r\n"), true, uint8(7))
	f.Add([]byte("Subject: bare\n\nlf\n.\n"), false, uint8(0))
	f.Add(bytes.Repeat([]byte("x"), 1200), true, uint8(200))
	f.Fuzz(func(t *testing.T, msg []byte, bdat bool, chunk uint8) {
		if len(msg) > 64<<10 {
			return
		}
		// DATA carries lines: CRLF-terminated, no bare CR or LF.
		if !bdat {
			if bytes.ContainsAny(bytes.ReplaceAll(msg, []byte("\r\n"), nil), "\r\n") || !bytes.HasSuffix(msg, []byte("\r\n")) {
				return
			}
		}
		addr, q, _ := startListener(t, nil)
		c := dial(t, addr)
		defer c.c.Close()
		c.cmd("EHLO client.test", "250")
		c.cmd("MAIL FROM:<s@src.test>", "250")
		c.cmd("RCPT TO:<user@relay.test>", "250")
		var reply string
		if bdat {
			n := int(chunk) + 1
			rest := msg
			for len(rest) > n {
				c.send(fmt.Sprintf("BDAT %d\r\n", n))
				c.send(string(rest[:n]))
				if r := c.reply(); !strings.HasPrefix(r, "250") {
					return // refused midway (size, line length): fine, as long as it is a reply
				}
				rest = rest[n:]
			}
			c.send(fmt.Sprintf("BDAT %d LAST\r\n", len(rest)))
			c.send(string(rest))
			reply = c.reply()
		} else {
			c.cmd("DATA", "354")
			var w strings.Builder
			for _, line := range strings.SplitAfter(string(msg), "\r\n") {
				if strings.HasPrefix(line, ".") {
					w.WriteByte('.')
				}
				w.WriteString(line)
			}
			w.WriteString(".\r\n")
			c.send(w.String())
			reply = c.reply()
		}
		if len(reply) < 4 || reply[0] < '2' || reply[0] > '5' {
			t.Fatalf("malformed reply %q", reply)
		}
		if !strings.HasPrefix(reply, "250") {
			return
		}
		id := queuedID(t, reply)
		m, err := q.Message(id)
		if err != nil {
			t.Fatal(err)
		}
		r, err := m.Open()
		if err != nil {
			t.Fatal(err)
		}
		stored, _ := io.ReadAll(r)
		r.Close()
		if !bytes.HasSuffix(stored, msg) {
			t.Fatalf("stored %q, sent %q", stored, msg)
		}
		if st, _ := q.Stats(); st.Messages != 1 {
			t.Fatalf("%d messages queued from one transaction", st.Messages)
		}
		c.cmd("NOOP", "250")
	})
}
