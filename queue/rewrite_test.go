package queue

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

// A content filter's edits (new data, envelope changes) are what Commit
// stores; the prepended block stays on top; a failed rewrite changes
// nothing; no spool file is left behind.
func TestIncomingRewrite(t *testing.T) {
	for _, tc := range []struct {
		name     string
		old, new string
	}{
		{"inline to inline", "Subject: a\r\n\r\nbody\r\n", "Subject: b\r\n\r\nnew body\r\n"},
		{"spooled to spooled", "Subject: a\r\n\r\n" + strings.Repeat("x", 100<<10) + "\r\n", "Subject: b\r\n\r\n" + strings.Repeat("y", 90<<10) + "\r\n"},
		{"spooled to inline", "Subject: a\r\n\r\n" + strings.Repeat("x", 100<<10) + "\r\n", "Subject: b\r\n\r\nshort\r\n"},
		{"inline to spooled", "Subject: a\r\n\r\nbody\r\n", "Subject: b\r\n\r\n" + strings.Repeat("y", 90<<10) + "\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			q := openTest(t, dir, Options{})
			defer q.Close()
			in, err := q.NewMessage(Envelope{From: "a@src.test", Rcpts: []Rcpt{{Addr: "x@dst.test"}, {Addr: "y@dst.test"}}})
			if err != nil {
				t.Fatal(err)
			}
			defer in.Abort()
			if err := in.Prepend([]byte("Received: by us\r\n")); err != nil {
				t.Fatal(err)
			}
			io.WriteString(in, tc.old)
			boom := errors.New("boom")
			if err := in.Rewrite(func(data io.Reader, w io.Writer) error {
				io.WriteString(w, "partial")
				return boom
			}); !errors.Is(err, boom) {
				t.Fatalf("failing rewrite: %v", err)
			}
			if got := openIncoming(t, in); got != "Received: by us\r\n"+tc.old {
				t.Fatalf("after a failed rewrite: %.80q", got)
			}
			if err := in.Rewrite(func(data io.Reader, w io.Writer) error {
				b, err := io.ReadAll(data)
				if err != nil || string(b) != tc.old {
					t.Errorf("rewrite reads %.40q %v", b, err)
				}
				_, err = io.WriteString(w, tc.new)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			in.SetFrom("b@src.test")
			in.DelRcpt("X@dst.test", strings.ToLower)
			in.AddRcpt("z@dst.test", strings.ToLower)
			in.AddRcpt("z@dst.test", strings.ToLower)
			if got := openIncoming(t, in); got != "Received: by us\r\n"+tc.new {
				t.Fatalf("after the rewrite: %.80q", got)
			}
			id := in.ID()
			if err := in.Commit(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := storedMessage(t, q, id); got != "Received: by us\r\n"+tc.new {
				t.Errorf("stored: %.80q", got)
			}
			env, err := q.Get(id)
			if err != nil {
				t.Fatal(err)
			}
			var rs []string
			for _, rc := range env.Rcpts {
				rs = append(rs, rc.Addr+"/"+string(rc.Status))
			}
			if env.From != "b@src.test" || strings.Join(rs, ",") != "y@dst.test/pending,z@dst.test/pending" {
				t.Errorf("envelope: from %q rcpts %v", env.From, rs)
			}
			files, _ := filepath.Glob(filepath.Join(dir, "spool", "*"))
			want := 0
			if len(tc.new) > 64<<10 {
				want = 1
			}
			if len(files) != want {
				t.Errorf("spool files %v, want %d", files, want)
			}
			// The spool file's trailer describes the new data (its
			// checksum too), so recovery could rebuild this message.
			for _, f := range files {
				if _, err := readTrailer(f, true); err != nil {
					t.Errorf("trailer of the rewritten spool file: %v", err)
				}
			}
		})
	}
}

// AddRcpt and DelRcpt compare recipients by the caller's key: with one
// that ignores case, a case variant is the same recipient (not added,
// deleted); with the identity it is another one.
func TestIncomingRcptEditsByKey(t *testing.T) {
	same := func(a string) string { return a }
	for _, tc := range []struct {
		name string
		edit func(in *Incoming)
		want string
	}{
		{"add, case ignored", func(in *Incoming) { in.AddRcpt("X@dst.test", strings.ToLower) }, "x@dst.test,y@dst.test"},
		{"add, case kept", func(in *Incoming) { in.AddRcpt("X@dst.test", same) }, "x@dst.test,y@dst.test,X@dst.test"},
		{"delete, case ignored", func(in *Incoming) { in.DelRcpt("X@DST.test", strings.ToLower) }, "y@dst.test"},
		{"delete, case kept", func(in *Incoming) { in.DelRcpt("X@dst.test", same) }, "x@dst.test,y@dst.test"},
		{"delete exact, case kept", func(in *Incoming) { in.DelRcpt("y@dst.test", same) }, "x@dst.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := openTest(t, t.TempDir(), Options{})
			defer q.Close()
			in, err := q.NewMessage(Envelope{From: "a@src.test", Rcpts: []Rcpt{{Addr: "x@dst.test"}, {Addr: "y@dst.test"}}})
			if err != nil {
				t.Fatal(err)
			}
			defer in.Abort()
			tc.edit(in)
			var rs []string
			for _, rc := range in.Envelope().Rcpts {
				rs = append(rs, rc.Addr)
			}
			if got := strings.Join(rs, ","); got != tc.want {
				t.Errorf("recipients %s, want %s", got, tc.want)
			}
		})
	}
}

// The CRLF promise of smtpd (MarkCRLF) survives a failed rewrite and goes
// with a successful one: a filter's data is not vouched for.
func TestRewriteClearsCRLF(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	defer q.Close()
	in, err := q.NewMessage(Envelope{From: "a@src.test", Rcpts: []Rcpt{{Addr: "x@dst.test"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Abort()
	io.WriteString(in, "Subject: a\r\n\r\nbody\r\n")
	in.MarkCRLF(true)
	if err := in.Rewrite(func(io.Reader, io.Writer) error { return errors.New("boom") }); err == nil {
		t.Fatal("failing rewrite returned nil")
	}
	if !in.env.CRLF || !in.env.NoDotLines {
		t.Errorf("a failed rewrite changed the CRLF marks: %v %v", in.env.CRLF, in.env.NoDotLines)
	}
	if err := in.Rewrite(func(_ io.Reader, w io.Writer) error { _, err := io.WriteString(w, "x\n"); return err }); err != nil {
		t.Fatal(err)
	}
	if err := in.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	msg, err := q.Message(in.ID())
	if err != nil {
		t.Fatal(err)
	}
	if msg.CRLF || msg.NoDotLines {
		t.Errorf("after a rewrite the message is still marked CRLF (%v) / no dot lines (%v)", msg.CRLF, msg.NoDotLines)
	}
}
