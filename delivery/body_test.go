package delivery

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/textproto"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mxedge/mxedge/queue"
)

// wire collects what bodyWriter writes, and the deadlines it sets.
type wire struct {
	bytes.Buffer
	writes, deadlines int
}

func (w *wire) Write(p []byte) (int, error) { w.writes++; return w.Buffer.Write(p) }

func (w *wire) SetWriteDeadline(time.Time) error { w.deadlines++; return nil }

// viaTextproto is what go-smtp sends for body: textproto's dot writer,
// closed.
func viaTextproto(body []byte, split int) []byte {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	dw := textproto.NewWriter(bw).DotWriter()
	writeSplit(dw.Write, body, split)
	dw.Close()
	return out.Bytes()
}

// viaBodyWriter is what delivery sends: bodyWriter, the end of data
// included.
func viaBodyWriter(t *testing.T, body []byte, split, chunk int) []byte {
	return viaBodyWriterCRLF(t, body, split, chunk, false)
}

// viaBodyWriterCRLF is viaBodyWriter, told the body has CRLF line endings
// only if crlf.
func viaBodyWriterCRLF(t *testing.T, body []byte, split, chunk int, crlf bool) []byte {
	w := &wire{}
	bw := &bodyWriter{conn: w, timeout: time.Second, chunk: chunk, crlf: crlf}
	writeSplit(func(p []byte) (int, error) { return len(p), bw.write(p) }, body, split)
	if err := bw.finish(); err != nil {
		t.Fatal(err)
	}
	if w.writes != w.deadlines {
		t.Errorf("%d writes with %d deadlines", w.writes, w.deadlines)
	}
	return w.Bytes()
}

// writeSplit writes body in pieces of split bytes (all at once if 0).
func writeSplit(write func([]byte) (int, error), body []byte, split int) {
	if split <= 0 {
		split = len(body) + 1
	}
	for len(body) > 0 {
		n := min(split, len(body))
		write(body[:n])
		body = body[n:]
	}
}

func TestBodyWriter(t *testing.T) {
	for _, tc := range []struct{ body, wire string }{
		{"", "\r\n.\r\n"},
		{"a\r\n", "a\r\n.\r\n"},
		{"a", "a\r\n.\r\n"},
		{".\r\n", "..\r\n.\r\n"},
		{"x\r\n.\r\n..y\r\n", "x\r\n..\r\n...y\r\n.\r\n"},
		{"bare\nlf\n.dot", "bare\r\nlf\r\n..dot\r\n.\r\n"},
		{"ends in cr\r", "ends in cr\r\n.\r\n"},
		{"\r\n\r\n", "\r\n\r\n.\r\n"},
	} {
		for _, chunk := range []int{1, 2, 3, bodyChunk} {
			for _, split := range []int{0, 1, 2} {
				// crlf set for bodies that have no bare CR or LF, as the
				// queue says of what smtpd received, and also for those that
				// do: the CR/LF counts catch most, textproto's rules apply.
				for _, crlf := range []bool{false, true} {
					if got := viaBodyWriterCRLF(t, []byte(tc.body), split, chunk, crlf); string(got) != tc.wire {
						t.Errorf("%q (chunk %d, split %d, crlf %v): got %q, want %q", tc.body, chunk, split, crlf, got, tc.wire)
					}
				}
			}
		}
		if got := viaTextproto([]byte(tc.body), 0); string(got) != tc.wire {
			t.Errorf("%q: textproto sends %q, the table says %q", tc.body, got, tc.wire)
		}
	}
}

func TestBodyWriterLargeWrites(t *testing.T) {
	// 1 MiB of 78-byte lines goes out in writes of about bodyChunk bytes,
	// the end of data in the last one.
	line := strings.Repeat("x", 76) + "\r\n"
	body := []byte(strings.Repeat(line, (1<<20)/len(line)))
	w := &wire{}
	bw := &bodyWriter{conn: w, timeout: time.Second, chunk: bodyChunk}
	if rerr, werr := bw.send(bytes.NewReader(body), make([]byte, bodyChunk)); rerr != nil || werr != nil {
		t.Fatal(rerr, werr)
	}
	if w.writes > len(body)/bodyChunk+2 {
		t.Errorf("%d writes for %d bytes", w.writes, len(body))
	}
	if !bytes.Equal(w.Bytes(), append(body, ".\r\n"...)) {
		t.Errorf("body changed on the way")
	}
}

func TestBodyWriterErrors(t *testing.T) {
	// A write error is returned as netErr and sticks; a read error as readErr.
	bw := &bodyWriter{conn: failingConn{}, timeout: time.Second, chunk: 4}
	if rerr, werr := bw.send(strings.NewReader("0123456789\r\n"), make([]byte, 4)); rerr != nil || werr == nil {
		t.Errorf("write error: readErr %v, netErr %v", rerr, werr)
	}
	bw = &bodyWriter{conn: &wire{}, timeout: time.Second, chunk: 4}
	if rerr, werr := bw.send(errReader{}, make([]byte, 4)); rerr == nil || werr != nil {
		t.Errorf("read error: readErr %v, netErr %v", rerr, werr)
	}
}

type failingConn struct{}

func (failingConn) Write([]byte) (int, error)        { return 0, errors.New("broken pipe") }
func (failingConn) SetWriteDeadline(time.Time) error { return nil }

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("I/O error") }

// FuzzBodyWriter: bodyWriter sends exactly what
// go-smtp's own data writer sends, for any body, any split into writes and
// any chunk size.
func FuzzBodyWriter(f *testing.F) {
	for _, s := range []string{"", "a\r\n", ".", "..\r\n.\r\n", "\r\r\n", "\n.\n", "x\r", "\r.\r\n", ".\r\r\n."} {
		f.Add([]byte(s), uint8(0), uint8(3))
	}
	f.Fuzz(func(t *testing.T, body []byte, split, chunk uint8) {
		want := viaTextproto(body, int(split))
		if got := viaBodyWriter(t, body, int(split), int(chunk)+1); !bytes.Equal(got, want) {
			t.Errorf("body %q split %d chunk %d:\n got %q\nwant %q", body, split, chunk, got, want)
		}
		// The queue's CRLF promise: the fast path gives the same bytes.
		body = bytes.ReplaceAll(bytes.ReplaceAll(bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n")), []byte("\r"), []byte("\n")), []byte("\n"), []byte("\r\n"))
		want = viaTextproto(body, int(split))
		if got := viaBodyWriterCRLF(t, body, int(split), int(chunk)+1, true); !bytes.Equal(got, want) {
			t.Errorf("CRLF body %q split %d chunk %d:\n got %q\nwant %q", body, split, chunk, got, want)
		}
	})
}

// discardConn is a connection that drops everything.
type discardConn struct{}

func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

// BenchmarkBody: 1 MiB of 78-byte lines through go-smtp's data writer
// (textproto, 4 KiB buffer) and through bodyWriter.
func BenchmarkBody(b *testing.B) {
	line := strings.Repeat("x", 76) + "\r\n"
	body := []byte(strings.Repeat(line, (1<<20)/len(line)))
	in := make([]byte, bodyChunk)
	b.Run("textproto", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			dw := textproto.NewWriter(bufio.NewWriter(discardConn{})).DotWriter()
			for p := body; len(p) > 0; p = p[min(len(p), len(in)):] {
				dw.Write(p[:min(len(p), len(in))])
			}
			dw.Close()
		}
	})
	for _, crlf := range []bool{false, true} {
		b.Run(fmt.Sprintf("bodyWriter/crlf=%v", crlf), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			out := make([]byte, 0, 2*bodyChunk)
			for b.Loop() {
				bw := &bodyWriter{conn: discardConn{}, timeout: time.Second, chunk: bodyChunk, out: out[:0], crlf: crlf}
				bw.send(bytes.NewReader(body), in)
			}
		})
	}
}

// A spooled message that smtpd vouched for (CRLF, no line starting with
// ".") goes from the spool file to a plain TCP socket by sendfile, and
// arrives byte for byte; one with a dot line, or not vouched for, goes
// through bodyWriter's stuffing, and arrives as sent too.
func TestSendfileDelivery(t *testing.T) {
	line := strings.Repeat("y", 70) + "\r\n"
	plain := "Subject: big\r\n\r\n" + strings.Repeat(line, 300<<10/len(line)) // over the inline limit
	dotted := plain + ".a dot line\r\n" + line
	for _, tc := range []struct {
		name     string
		body     string
		mark     func(*queue.Incoming)
		sendfile bool
	}{
		{"vouched, no dot line", plain, func(in *queue.Incoming) { in.MarkCRLF(true) }, true},
		{"vouched, a dot line", dotted, func(in *queue.Incoming) { in.MarkCRLF(false) }, false},
		{"not vouched", plain, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := startServer(t, "127.0.0.3:0")
			d := newDeliverer(t, map[string]string{"relay.test": be.Addr()})
			msg := spooledAs(t, "s@src.test", tc.body, tc.mark, "a@relay.test")
			if rs := d.Deliver(context.Background(), msg); rs[0].Code != 250 {
				t.Fatalf("delivery: %+v", rs[0])
			}
			if got := d.sentFiles.Load() == 1; got != tc.sendfile {
				t.Errorf("sendfile used: %v, want %v", got, tc.sendfile)
			}
			msgs := be.Messages()
			if len(msgs) != 1 {
				t.Fatalf("%d messages at the next hop", len(msgs))
			}
			if got := string(msgs[0].Body()); got != tc.body {
				t.Errorf("next hop got %d bytes, want %d as stored", len(got), len(tc.body))
			}
		})
	}
}

// A spool file shorter than its record says (damaged on disk) on the
// sendfile path: the connection is closed without the end of data, so
// the next hop keeps no truncated message, and the recipient is deferred
// with a local error (451 4.3.0), not the file's fault passed off as the
// next hop's.
func TestSendfileShortSpoolFile(t *testing.T) {
	be := startServer(t, "127.0.0.3:0")
	d := newDeliverer(t, map[string]string{"relay.test": be.Addr()})
	body := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("z", 70)+"\r\n", 300<<10/72)
	msg := spooledAs(t, "s@src.test", body, func(in *queue.Incoming) { in.MarkCRLF(true) }, "a@relay.test")
	r, err := msg.Open()
	if err != nil {
		t.Fatal(err)
	}
	_, f, n, ok := spoolParts(r)
	if !ok {
		t.Fatal("message not read from a spool file")
	}
	name := f.Name()
	r.Close()
	if err := os.Truncate(name, n/2); err != nil {
		t.Fatal(err)
	}
	rs := d.Deliver(context.Background(), msg)
	if len(rs) != 1 || rs[0].Code != 451 || rs[0].Enhanced != "4.3.0" {
		t.Errorf("results %+v, want 451 4.3.0", rs)
	}
	if d.sentFiles.Load() != 1 {
		t.Error("the sendfile path was not taken")
	}
	if m := be.Messages(); len(m) != 0 {
		t.Errorf("next hop kept %d messages from a short file", len(m))
	}
}
