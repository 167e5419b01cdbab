package queue

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func readAll(t *testing.T, r io.ReadCloser) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func openIncoming(t *testing.T, in *Incoming) string {
	t.Helper()
	r, err := in.Open()
	if err != nil {
		t.Fatal(err)
	}
	return readAll(t, r)
}

// headsEntry returns id's stored header block and whether there is one.
func headsEntry(t *testing.T, q *Queue, id string) (string, bool) {
	t.Helper()
	var v []byte
	err := q.db.View(func(tx *bolt.Tx) error {
		v = tx.Bucket(bucketHeads).Get([]byte(id))
		if v != nil {
			v = bytes.Clone(v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(v), v != nil
}

func storedMessage(t *testing.T, q *Queue, id string) string {
	t.Helper()
	m, err := q.Message(id)
	if err != nil {
		t.Fatal(err)
	}
	r, err := m.Open()
	if err != nil {
		t.Fatal(err)
	}
	return readAll(t, r)
}

// A check reads the message back and adds headers before Commit; the
// stored message is the block followed by the data, whether the data is
// inline or in a spool file.
func TestIncomingOpenAndPrepend(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inline int
		part   int // bytes per write
		spool  bool
	}{
		{"inline", 0, 100, false},
		{"spooled from the start", -1, 100, true},
		{"spilled to a spool file", 0, 40 << 10, true}, // 3 writes: 120 KiB > 64 KiB
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := openTest(t, t.TempDir(), Options{InlineMax: tc.inline})
			defer q.Close()
			in, err := q.NewMessage(Envelope{From: "s@src.test", Rcpts: []Rcpt{{Addr: "a@x.test"}}})
			if err != nil {
				t.Fatal(err)
			}
			part := func(c string) string { return "Subject: " + strings.Repeat(c, tc.part-11) + "\r\n" }
			const h1, h2 = "Received: from client.test\r\n", "Authentication-Results: mx.test;\r\n\tspf=pass\r\n"

			if err := in.Prepend([]byte(h1)); err != nil { // before any write
				t.Fatal(err)
			}
			if got := openIncoming(t, in); got != h1 {
				t.Errorf("before writes: %q", got)
			}
			io.WriteString(in, part("a"))
			if got, want := openIncoming(t, in), h1+part("a"); got != want {
				t.Errorf("after one write: %d bytes, want %d", len(got), len(want))
			}
			early, err := in.Open() // sees the message as it is now, not later writes
			if err != nil {
				t.Fatal(err)
			}
			if err := in.Prepend([]byte(h2)); err != nil { // between writes
				t.Fatal(err)
			}
			io.WriteString(in, part("b"))
			io.WriteString(in, part("c"))
			want := h1 + h2 + part("a") + part("b") + part("c")
			r1, _ := in.Open() // flushes the later writes to a spool file
			r2, _ := in.Open() // two readers at once
			if got := readAll(t, early); got != h1+part("a") {
				t.Errorf("reader opened before later writes saw %d bytes, want %d", len(got), len(h1+part("a")))
			}
			if a, b := readAll(t, r1), readAll(t, r2); a != want || b != want {
				t.Errorf("re-read: %d and %d bytes, want %d", len(a), len(b), len(want))
			}
			if in.Size() != int64(len(want)) {
				t.Errorf("Size() = %d, want %d", in.Size(), len(want))
			}
			if (in.f != nil) != tc.spool {
				t.Fatalf("spooled = %v, want %v", in.f != nil, tc.spool)
			}
			if err := in.Commit(context.Background()); err != nil {
				t.Fatal(err)
			}
			if _, err := in.Open(); err == nil {
				t.Error("Open after Commit succeeded")
			}
			if err := in.Prepend([]byte("X-Late: 1\r\n")); err == nil {
				t.Error("Prepend after Commit succeeded")
			}

			id := in.ID()
			env, _ := q.Get(id)
			if env.Size != int64(len(want)) || env.Inline == tc.spool {
				t.Errorf("stored size %d inline %v, want %d and %v", env.Size, env.Inline, len(want), !tc.spool)
			}
			if got := storedMessage(t, q, id); got != want {
				t.Errorf("stored message: %d bytes, want %d", len(got), len(want))
			}
			if got, _ := headsEntry(t, q, id); got != h1+h2 {
				t.Errorf("heads entry %q", got)
			}
			if tc.spool { // the block is in bbolt, the file holds the data, then the trailer
				data, _ := os.ReadFile(q.bodyPath(id))
				tr, err := readTrailer(q.bodyPath(id), true)
				if err != nil {
					t.Fatalf("trailer: %v", err)
				}
				if string(tr.Head) != h1+h2 || tr.Env.ID != id {
					t.Errorf("trailer: head %q, id %s", tr.Head, tr.Env.ID)
				}
				if string(data[:tr.DataLen]) != want[len(h1+h2):] {
					t.Errorf("spool file: %d bytes, want %d", len(data), len(want)-len(h1+h2))
				}
			}
			hdr, err := q.Headers(id)
			if err != nil || !strings.HasPrefix(string(hdr), h1+h2+"Subject: aaa") {
				t.Errorf("Headers: %q, %v", hdr, err)
			}
			if err := q.Delete(id); err != nil {
				t.Fatal(err)
			}
			if _, ok := headsEntry(t, q, id); ok {
				t.Error("heads entry left after delete")
			}
		})
	}
}

// A message without prepended fields writes no heads entry (the receive
// path stays as cheap as before).
func TestNoPrependNoHeadsEntry(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	defer q.Close()
	id := receive(t, q, "Subject: x\r\n\r\nx\r\n", "a@x.test")
	if _, ok := headsEntry(t, q, id); ok {
		t.Error("heads entry for a message without prepended fields")
	}
	if got := storedMessage(t, q, id); got != "Subject: x\r\n\r\nx\r\n" {
		t.Errorf("stored %q", got)
	}
}

// A reader left open is closed by Commit or Abort; its reads then fail.
func TestIncomingReaderLeftOpen(t *testing.T) {
	for _, commit := range []bool{true, false} {
		for _, inline := range []int{0, -1} {
			q := openTest(t, t.TempDir(), Options{InlineMax: inline})
			in, _ := q.NewMessage(Envelope{Rcpts: []Rcpt{{Addr: "a@x.test"}}})
			io.WriteString(in, "Subject: x\r\n\r\nbody\r\n")
			r, err := in.Open()
			if err != nil {
				t.Fatal(err)
			}
			if commit {
				if err := in.Commit(context.Background()); err != nil {
					t.Fatal(err)
				}
			} else {
				in.Abort()
				if files := spoolFiles(t, q); len(files) != 0 {
					t.Errorf("abort with a reader open left %v", files)
				}
			}
			if n, err := r.Read(make([]byte, 10)); err == nil || n != 0 {
				t.Errorf("commit=%v inline=%d: read after finish: %d, %v", commit, inline, n, err)
			}
			if len(in.readers) != 0 {
				t.Errorf("%d spool readers still open", len(in.readers))
			}
			r.Close()
			q.Close()
		}
	}
}

// The spool disk fills up while a check re-reads the message: Open reports
// the flush failure (ErrNoSpace), it is sticky, and the message leaves no
// trace.
func TestIncomingOpenDiskFull(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{InlineMax: -1, CreateFile: func(path string) (File, error) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		return &failingFile{f: f, limit: 100 << 10}, err
	}})
	defer q.Close()
	in, _ := q.NewMessage(Envelope{From: "s@src.test", Rcpts: []Rcpt{{Addr: "a@x.test"}}})
	if _, err := io.WriteString(in, strings.Repeat("x", 90<<10)); err != nil {
		t.Fatal(err) // straight through the write buffer: fits
	}
	if _, err := io.WriteString(in, strings.Repeat("y", 20<<10)); err != nil {
		t.Fatal(err) // buffered: the disk has not seen it yet
	}
	if _, err := in.Open(); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Open: %v, want ErrNoSpace from the flush", err)
	}
	if _, err := in.Write([]byte("z")); !errors.Is(err, ErrNoSpace) {
		t.Errorf("Write after the failed flush: %v, want the sticky error", err)
	}
	if err := in.Commit(context.Background()); !errors.Is(err, ErrNoSpace) {
		t.Errorf("Commit: %v, want ErrNoSpace", err)
	}
	if files := spoolFiles(t, q); len(files) != 0 {
		t.Errorf("spool files left: %v", files)
	}
	if st, _ := q.Stats(); st.Messages != 0 {
		t.Errorf("failed message visible: %+v", st)
	}
}

func TestPrependChecksFields(t *testing.T) {
	for _, bad := range []string{
		"X-A: 1",                 // no CRLF
		"X-A: 1\n",               // LF only
		"X-A: 1\r\nX-B: 2",       // last line without CRLF
		"X-A: 1\rX-B: 2\r\n",     // bare CR
		"X-A: 1\nX-B: 2\r\n",     // bare LF
		"\r\n",                   // empty line: would end the header section
		"X-A: 1\r\n\r\nbody\r\n", // empty line inside
		" continued\r\n",         // continuation of nothing (the field above is not ours)
		"X-A: 1\r\n \t \r\n",     // white space only
		"NoColon\r\n",            // no field name
		": no name\r\n",          // empty field name
		"Bad Name: x\r\n",        // space in the name
		"X-A\x00: 1\r\n",         // NUL
		"X-A: 1\x00\r\n",         // NUL in the value
		"X-\xc3\xa4: 1\r\n",      // 8-bit field name
		"X-A: " + strings.Repeat("a", 994) + "\r\n", // 999 bytes before CRLF
	} {
		if err := CheckFields([]byte(bad)); err == nil {
			t.Errorf("CheckFields(%q) = nil", bad)
		}
	}
	for _, good := range []string{
		"", "X-A: 1\r\n", "X-A:\r\n", "X-A: 1\r\n\tcontinued\r\n  again\r\nX-B: 2\r\n",
		"X-A: " + strings.Repeat("a", 993) + "\r\n", // 998 bytes
		"Subject: =?utf-8?q?x?= \xc3\xa4\r\n",       // 8-bit value (SMTPUTF8)
	} {
		if err := CheckFields([]byte(good)); err != nil {
			t.Errorf("CheckFields(%q) = %v", good, err)
		}
	}

	q := openTest(t, t.TempDir(), Options{})
	defer q.Close()
	in, _ := q.NewMessage(Envelope{Rcpts: []Rcpt{{Addr: "a@x.test"}}})
	defer in.Abort()
	if err := in.Prepend([]byte("X-A: 1\r\n\r\n")); err == nil {
		t.Error("Prepend of a block with an empty line succeeded")
	}
	line := "X-Fill: " + strings.Repeat("f", 984) + "\r\n" // 994 bytes
	n := 0
	for ; n < 100; n++ {
		if err := in.Prepend([]byte(line)); err != nil {
			break
		}
	}
	if n != MaxPrepend/994 || in.Size() != int64(n*994) {
		t.Errorf("accepted %d prepends (%d bytes), want %d: the block is bounded by MaxPrepend", n, in.Size(), MaxPrepend/994)
	}
	if got := openIncoming(t, in); len(got) != n*994 || strings.Contains(got, "\r\n\r\n") {
		t.Errorf("block after the refused Prepends: %d bytes", len(got))
	}
}
