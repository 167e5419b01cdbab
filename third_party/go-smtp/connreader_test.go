package smtp

import (
	"bytes"
	"io"
	"testing"
)

// readLine returns only complete lines: a line cut off by EOF or a timeout
// is an error, and the error stays.
func TestReadLinePartial(t *testing.T) {
	for _, end := range []error{io.EOF, timeoutError{}} {
		src := &splitReader{src: []byte("NOOP\r\nMAIL FROM:<a@b>"), sizes: []int{3, 100}, end: end}
		cr := newConnReader(src, 0, nil)
		if line, err := cr.readLine(2048); string(line) != "NOOP\r\n" || err != nil {
			t.Fatalf("%q, %v", line, err)
		}
		for i := 0; i < 2; i++ {
			if line, err := cr.readLine(2048); line != nil || err != end {
				t.Fatalf("partial line: %q, %v; want nil, %v", line, err, end)
			}
		}
	}
}

// The limit counts the line ending; a too long line is reported after at
// most limit bytes were looked at, and skipped by discardLine.
func TestReadLineLimit(t *testing.T) {
	in := "1234567\r\n" + "12345678\r\n" + "NOOP\n"
	cr := newConnReader(&splitReader{src: []byte(in), sizes: []int{4}, end: io.EOF}, 0, nil)
	if line, err := cr.readLine(9); string(line) != "1234567\r\n" || err != nil {
		t.Fatalf("%q, %v", line, err)
	}
	if _, err := cr.readLine(9); err != errLineTooLong {
		t.Fatalf("10-byte line with limit 9: %v", err)
	}
	if err := cr.discardLine(); err != nil {
		t.Fatal(err)
	}
	if line, err := cr.readLine(9); string(line) != "NOOP\n" || err != nil {
		t.Fatalf("after the skipped line: %q, %v", line, err)
	}

	// Never more than the buffer is held; an endless line ends the session.
	endless := &splitReader{src: bytes.Repeat([]byte("x"), maxDiscardLine+10), sizes: []int{1000}, end: io.EOF}
	cr = newConnReader(endless, 0, nil)
	if _, err := cr.readLine(2048); err != errLineTooLong {
		t.Fatal(err)
	}
	if err := cr.discardLine(); err != errLineNeverEnds {
		t.Fatal(err)
	}
	if len(cr.buf) != smallBufferSize {
		t.Fatalf("buffer grew to %d", len(cr.buf))
	}
}

// beforeRead (the server's flush) runs before every read that may block,
// and only then.
func TestConnReaderBeforeRead(t *testing.T) {
	n := 0
	src := &splitReader{src: []byte("A\r\nB\r\nC\r\n"), sizes: []int{6, 3}, end: io.EOF}
	cr := newConnReader(src, 0, func() error { n++; return nil })
	for _, want := range []struct {
		line  string
		reads int
	}{{"A\r\n", 1}, {"B\r\n", 1}, {"C\r\n", 2}} {
		line, err := cr.readLine(100)
		if string(line) != want.line || err != nil || n != want.reads {
			t.Fatalf("%q, %v after %d flushes; want %q after %d", line, err, n, want.line, want.reads)
		}
	}
}

// The large buffer is used while a message is read and given back after.
func TestConnReaderBuffers(t *testing.T) {
	cr := newConnReader(&splitReader{src: []byte("DATA\r\nbody"), sizes: []int{100}, end: io.EOF}, 0, nil)
	cr.readLine(100)
	cr.useLarge()
	if len(cr.buf) != largeBufferSize || string(cr.buf[cr.r:cr.w]) != "body" {
		t.Fatalf("large buffer: %d, %q", len(cr.buf), cr.buf[cr.r:cr.w])
	}
	cr.useSmallSoon()
	if len(cr.buf) != smallBufferSize || string(cr.buf[cr.r:cr.w]) != "body" || cr.large != nil {
		t.Fatalf("small buffer: %d, %q", len(cr.buf), cr.buf[cr.r:cr.w])
	}
}

// FuzzCommandLine: whatever the client sends, in whatever pieces, readLine
// returns lines within the limit that end in LF, and together with what it
// skipped they are the input.
func FuzzCommandLine(f *testing.F) {
	f.Add([]byte("EHLO x\r\nMAIL FROM:<a@b>\r\n"), []byte{3}, uint8(10))
	f.Add([]byte("NOOP\r\n"+string(bytes.Repeat([]byte("y"), 300))+"\nQUIT\r\n"), []byte{1, 7}, uint8(40))
	f.Fuzz(func(t *testing.T, input, split []byte, limit uint8) {
		var sizes []int
		for _, b := range split {
			sizes = append(sizes, int(b)%50+1)
		}
		lim := int(limit)%100 + 1
		cr := newConnReader(&splitReader{src: input, sizes: sizes, end: io.EOF}, 0, nil)
		var got []byte
		for {
			line, err := cr.readLine(lim)
			if err == errLineTooLong {
				if err := cr.discardLine(); err != nil && err != io.EOF {
					t.Fatal(err)
				} else if err == io.EOF {
					return
				}
				continue
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(line) > lim || line[len(line)-1] != '\n' {
				t.Fatalf("line %q with limit %d", line, lim)
			}
			got = append(got, line...)
		}
		// Without too long lines, the lines are the input up to its last
		// LF (the rest, cut off by EOF, is not a line).
		complete := input[:bytes.LastIndexByte(input, '\n')+1]
		tooLong := false
		for _, l := range bytes.SplitAfter(complete, []byte("\n")) {
			tooLong = tooLong || len(l) > lim
		}
		if !tooLong && !bytes.Equal(got, complete) {
			t.Fatalf("lines %q, want %q", got, complete)
		}
	})
}
