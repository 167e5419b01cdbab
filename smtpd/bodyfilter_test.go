package smtpd

import (
	"bytes"
	"io"
	"testing"
)

func TestBodyFilter(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		normalize bool
		want      string // "" with bad=true means rejected
		bad       bool
		hops      int
	}{
		{"clean", "Subject: x\r\n\r\nbody\r\n", false, "Subject: x\r\n\r\nbody\r\n", false, 0},
		{"bare LF rejected", "Subject: x\r\n\r\nline1\nline2\r\n", false, "", true, 0},
		{"bare CR rejected", "Subject: x\r\n\r\nline1\rline2\r\n", false, "", true, 0},
		{"smuggling LF.CRLF rejected", "a\r\n\n.\r\nMAIL FROM:<x@y>\r\n", false, "", true, 0},
		{"bare LF normalized", "a\nb\r\n", true, "a\r\nb\r\n", false, 0},
		{"bare CR normalized", "a\rb\r\n", true, "a b\r\n", false, 0},
		{"CR CR LF normalized", "a\r\r\nb\r\n", true, "a \r\nb\r\n", false, 0},
		{"smuggling normalized keeps dot as content", "a\r\n\n.\n", true, "a\r\n\r\n.\r\n", false, 0},
		{"received counted in header only", "Received: a\r\nreceived: b\r\nX: y\r\n\r\nReceived: body\r\n", false,
			"Received: a\r\nreceived: b\r\nX: y\r\n\r\nReceived: body\r\n", false, 2},
		{"folded received counted once", "Received: a\r\n\tby b\r\nSubject: s\r\n\r\n", false,
			"Received: a\r\n\tby b\r\nSubject: s\r\n\r\n", false, 1},
	}
	for _, tt := range tests {
		for _, chunk := range []int{1, 2, 3, 1 << 20} {
			var out bytes.Buffer
			f := newBodyFilter(&out, tt.normalize)
			in := []byte(tt.in)
			for len(in) > 0 {
				n := min(chunk, len(in))
				if _, err := f.Write(in[:n]); err != nil {
					t.Fatal(err)
				}
				in = in[n:]
			}
			if err := f.finish(); err != nil {
				t.Fatal(err)
			}
			if f.bad != tt.bad {
				t.Errorf("%s (chunk %d): bad = %v, want %v", tt.name, chunk, f.bad, tt.bad)
				continue
			}
			if !tt.bad && out.String() != tt.want {
				t.Errorf("%s (chunk %d): got %q, want %q", tt.name, chunk, out.String(), tt.want)
			}
			if f.hops != tt.hops {
				t.Errorf("%s (chunk %d): hops %d, want %d", tt.name, chunk, f.hops, tt.hops)
			}
		}
	}
}

// FuzzBodyFilterNormalize: whatever comes in, normalize mode never lets a
// bare CR or LF out.
func FuzzBodyFilterNormalize(f *testing.F) {
	f.Add([]byte("a\nb\rc\r\n.\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		bf := newBodyFilter(&out, true)
		bf.Write(in)
		bf.finish()
		b := out.Bytes()
		for i, c := range b {
			if c == '\n' && (i == 0 || b[i-1] != '\r') {
				t.Fatalf("bare LF at %d in %q", i, b)
			}
			if c == '\r' && (i+1 >= len(b) || b[i+1] != '\n') {
				t.Fatalf("bare CR at %d in %q", i, b)
			}
		}
	})
}

// reference is the byte-at-a-time statement of the policy that bodyFilter
// implements with vectorised scans.
func reference(in []byte, normalize bool) (out []byte, bad bool) {
	for i := 0; i < len(in); i++ {
		c := in[i]
		switch {
		case c == '\r' && i+1 < len(in) && in[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case c == '\r':
			if !normalize {
				return nil, true
			}
			out = append(out, ' ')
		case c == '\n':
			if !normalize {
				return nil, true
			}
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	return out, false
}

func FuzzBodyFilterMatchesReference(f *testing.F) {
	f.Add([]byte("a\r\nb\nc\rd\r\r\n.\r\n"), 3, true)
	f.Add([]byte("Received: x\r\n\r\nbody\r"), 1, false)
	f.Fuzz(func(t *testing.T, in []byte, chunk int, normalize bool) {
		if chunk <= 0 {
			chunk = 1
		}
		var out bytes.Buffer
		bf := newBodyFilter(&out, normalize)
		for rest := in; len(rest) > 0; {
			n := min(chunk, len(rest))
			bf.Write(rest[:n])
			rest = rest[n:]
		}
		bf.finish()
		want, bad := reference(in, normalize)
		if bf.bad != bad {
			t.Fatalf("%q normalize=%v: bad=%v, reference %v", in, normalize, bf.bad, bad)
		}
		if !bad && !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("%q normalize=%v chunk=%d:\n got %q\nwant %q", in, normalize, chunk, out.Bytes(), want)
		}
	})
}

// countWriter counts the writes it gets.
type countWriter struct {
	bytes.Buffer
	writes int
}

func (c *countWriter) Write(p []byte) (int, error) { c.writes++; return c.Buffer.Write(p) }

// TestBodyFilterOneWritePerCleanChunk: CRLF text passes in one write per
// chunk (the DKIM verifier's pipe and the spool pay per write); a bare LF
// being normalized splits it around the inserted CRLF only.
func TestBodyFilterOneWritePerCleanChunk(t *testing.T) {
	clean := bytes.Repeat([]byte("Received: x\r\nSubject: y\r\n\r\nline of text\r\n"), 50)
	var c countWriter
	f := newBodyFilter(&c, false)
	if _, err := f.Write(clean); err != nil {
		t.Fatal(err)
	}
	if c.writes != 1 || !bytes.Equal(c.Bytes(), clean) || f.hops != 1 {
		t.Fatalf("clean chunk: %d writes, equal %v, hops %d; want 1 write, equal, 1 hop", c.writes, bytes.Equal(c.Bytes(), clean), f.hops)
	}
	c = countWriter{}
	f = newBodyFilter(&c, true)
	if _, err := f.Write([]byte("a\r\nb\nc\r\n")); err != nil {
		t.Fatal(err)
	}
	if c.writes != 3 || c.String() != "a\r\nb\r\nc\r\n" {
		t.Fatalf("bare LF: %d writes %q; want 3 writes (before, CRLF, after)", c.writes, c.String())
	}
}

// BenchmarkBodyFilter: 1 MiB of ordinary CRLF text in the listener's 32 KiB
// chunks.
func BenchmarkBodyFilter(b *testing.B) {
	msg := append([]byte("Received: from x\r\nSubject: y\r\n\r\n"),
		bytes.Repeat([]byte("a line of text of a usual length, about seventy-six bytes or so....\r\n"), 1<<20/70)...)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		f := newBodyFilter(io.Discard, false)
		for p := msg; len(p) > 0; {
			n := min(32<<10, len(p))
			if _, err := f.Write(p[:n]); err != nil {
				b.Fatal(err)
			}
			p = p[n:]
		}
	}
}

// The filter notes a line starting with "." (delivery may then send the
// stored data as it is only without one), at any chunk boundary.
func TestBodyFilterDotLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"Subject: x\r\n\r\nno dot. here.\r\n", false},
		{"Subject: x\r\n\r\n.dot line\r\n", true},
		{".first\r\n", true},
		{"a\r\nb\r\n\r\n..\r\n", true},
		{"a\r\n x.\r\n", false},
	} {
		for _, chunk := range []int{1, 2, 3, 1 << 20} {
			f := newBodyFilter(io.Discard, false)
			for p := []byte(tc.in); len(p) > 0; {
				n := min(chunk, len(p))
				f.Write(p[:n])
				p = p[n:]
			}
			if f.dotLines != tc.want {
				t.Errorf("%q (chunk %d): dotLines %v, want %v", tc.in, chunk, f.dotLines, tc.want)
			}
		}
	}
}

// What the listener stores says whether the data may go out as stored
// (queue.Envelope.CRLF, NoDotLines: delivery then sends a spooled message
// by sendfile, without dot-stuffing): a line the client dot-stuffed
// ("..x", received as ".x") must be stuffed again, also one that a
// normalized bare LF starts.
func TestReceivedMessageLineMarks(t *testing.T) {
	for _, tc := range []struct {
		name      string
		normalize bool
		data      string
		noDots    bool
	}{
		{"plain", false, "Subject: x\r\n\r\nno dot. here.\r\n", true},
		{"dot line", false, "Subject: x\r\n\r\nfirst\r\n..dot\r\n", false},
		{"dot after a normalized LF", true, "Subject: x\r\n\r\nfirst\n..dot\r\n", false},
		{"normalized, no dot line", true, "Subject: x\r\n\r\nfirst\nsecond\r\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, q, _ := startListener(t, func(o *Options) { o.NormalizeLineEndings = tc.normalize })
			c := dial(t, addr)
			c.envelope("user@relay.test")
			c.send(tc.data + ".\r\n")
			env, err := q.Get(queuedID(t, c.reply()))
			if err != nil {
				t.Fatal(err)
			}
			if !env.CRLF || env.NoDotLines != tc.noDots {
				t.Errorf("stored CRLF %v, NoDotLines %v; want true, %v", env.CRLF, env.NoDotLines, tc.noDots)
			}
		})
	}
}
