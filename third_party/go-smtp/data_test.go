package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// splitReader hands out src in pieces: the i-th Read returns at most
// sizes[i%len(sizes)] bytes (1 if sizes is empty), and end after src.
type splitReader struct {
	src   []byte
	sizes []int
	i     int
	end   error
}

func (r *splitReader) Read(p []byte) (int, error) {
	if len(r.src) == 0 {
		return 0, r.end
	}
	n := 1
	if len(r.sizes) > 0 {
		n = r.sizes[r.i%len(r.sizes)]
		r.i++
	}
	if n > len(p) {
		n = len(p)
	}
	if n > len(r.src) {
		n = len(r.src)
	}
	copy(p, r.src[:n])
	r.src = r.src[n:]
	return n, nil
}

// rest is what is left of the input after the reader stopped: what its
// buffer holds plus what was never read.
func (r *splitReader) rest(buffered []byte) []byte {
	return append(append([]byte{}, buffered...), r.src...)
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// readAll reads r with reads of the sizes given (cycling), until an error.
func readAll(r io.Reader, sizes []int) ([]byte, error) {
	var out []byte
	for i := 0; ; i++ {
		n := 4096
		if len(sizes) > 0 {
			n = sizes[i%len(sizes)]
		}
		b := make([]byte, n)
		k, err := r.Read(b)
		out = append(out, b[:k]...)
		if err != nil {
			return out, err
		}
		if k == 0 && i > 1<<20 {
			return out, errors.New("no progress")
		}
	}
}

type dataResult struct {
	out  []byte
	err  error
	rest []byte
}

// refRead runs the reference reader over input split as given.
func refRead(input []byte, split []int, end error, outSizes []int) dataResult {
	src := &splitReader{src: input, sizes: split, end: end}
	br := bufio.NewReaderSize(src, 16)
	out, err := readAll(&refDataReader{r: br}, outSizes)
	buffered, _ := br.Peek(br.Buffered())
	return dataResult{out, err, src.rest(buffered)}
}

// fastRead runs dataReader over input split as given, with a connReader
// buffer of bufSize bytes and a size limit (0: none).
func fastRead(input []byte, split []int, end error, outSizes []int, bufSize int, limit int64) dataResult {
	src := &splitReader{src: input, sizes: split, end: end}
	buf := make([]byte, bufSize)
	cr := &connReader{rd: src, buf: buf, small: buf}
	dr := &dataReader{r: cr}
	if limit > 0 {
		dr.limited, dr.n = true, limit
	}
	out, err := readAll(dr, outSizes)
	return dataResult{out, err, src.rest(cr.buf[cr.r:cr.w])}
}

func sameError(a, b error) bool {
	if a == b {
		return true
	}
	return a != nil && b != nil && a.Error() == b.Error()
}

// checkSame compares the fast reader with the reference on one input:
// same bytes out, same error, same input left unread (so the end of the
// data was found at the same place, and nothing after it was consumed);
// with a limit, the reference's output cut at the limit and
// ErrDataTooLarge if it was longer.
func checkSame(t *testing.T, input []byte, split []int, end error, outSizes []int, bufSize int, limit int64) {
	t.Helper()
	want := refRead(input, split, end, outSizes)
	got := fastRead(input, split, end, outSizes, bufSize, limit)
	if limit > 0 && int64(len(want.out)) > limit {
		if !bytes.Equal(got.out, want.out[:limit]) || got.err != ErrDataTooLarge {
			t.Fatalf("input %q split %v buf %d limit %d: got %q, %v; want %q, ErrDataTooLarge",
				input, split, bufSize, limit, got.out, got.err, want.out[:limit])
		}
		return
	}
	if !bytes.Equal(got.out, want.out) || !sameError(got.err, want.err) || !bytes.Equal(got.rest, want.rest) {
		t.Fatalf("input %q split %v out %v buf %d limit %d:\n got  %q, %v, rest %q\n want %q, %v, rest %q",
			input, split, outSizes, bufSize, limit, got.out, got.err, got.rest, want.out, want.err, want.rest)
	}
}

// Inputs where read boundaries matter: inside CRLF "." CRLF, inside a
// dot-stuffed line, inside and around bare CRs and LFs, the state
// machine's quirks.
var dataCases = []string{
	"",
	".\r\n",
	"..\r\n.\r\n",
	"..first\r\nsecond\r\n.\r\n",
	"a\r\n.\r\nafter the end",
	"line\r\n..stuffed\r\n.dot\r\n.\r\nQUIT\r\n",
	"bare\rcr\r\n\rstart\r\n.\r\n",
	"bare\nlf\n.\nnot the end\r\n.\r\n",
	"cr cr lf\r\r\n.\r\nnot the end\r\n.\r\n",
	"\r\r\n.\r\n.\r\n",
	".\r.\r\n.\r\n",
	".\rX\r\n.\r\n",
	".\r\r\n.\r\n.\r\n",
	"\r\n\r\n.\r\n",
	"\r\n.\r\n",
	"a\r\n.\n.\r\n",
	"a\r\n.x\r\n\r\n.\r\n",
	"\n.\r\n.\r\n",
	"no end at all\r\n",
	"ends with cr\r",
	"ends with crlf dot\r\n.",
	"ends with crlf dot cr\r\n.\r",
	"long " + strings.Repeat("x", 300) + "\r\n" + strings.Repeat("y", 200) + "\r\n.\r\nz",
}

// TestDataReaderBoundaries: every input above, split into two reads at
// every position, and byte by byte, with output buffers of several sizes
// and connReader buffers from 1 byte up.
func TestDataReaderBoundaries(t *testing.T) {
	ends := []error{io.EOF, timeoutError{}}
	for _, in := range dataCases {
		input := []byte(in)
		for _, end := range ends {
			for _, bufSize := range []int{1, 2, 3, 7, 64, 4096} {
				for _, out := range [][]int{nil, {1}, {2, 3}, {5}} {
					checkSame(t, input, nil, end, out, bufSize, 0)
					for cut := 1; cut < len(input); cut++ {
						checkSame(t, input, []int{cut, len(input)}, end, out, bufSize, 0)
					}
				}
			}
		}
	}
}

// TestDataReaderLimit: a message of exactly MaxMessageBytes is accepted,
// one more byte is ErrDataTooLarge (v0.25.1 refused the exact size too).
func TestDataReaderLimit(t *testing.T) {
	msg := "0123456789\r\n..23456789\r\n" // 23 bytes once unstuffed
	for _, tc := range []struct {
		limit int64
		err   error
	}{
		{22, ErrDataTooLarge},
		{23, io.EOF},
		{24, io.EOF},
		{1, ErrDataTooLarge},
	} {
		got := fastRead([]byte(msg+".\r\n"), nil, io.EOF, []int{7}, 64, tc.limit)
		if got.err != tc.err {
			t.Errorf("limit %d: got %v, want %v", tc.limit, got.err, tc.err)
		}
		if int64(len(got.out)) > tc.limit {
			t.Errorf("limit %d: got %d bytes", tc.limit, len(got.out))
		}
	}
	// The error stays, and the rest can still be drained without limit.
	src := &splitReader{src: []byte(msg + ".\r\nNOOP\r\n"), end: io.EOF}
	dr := &dataReader{r: newConnReader(src, 0, nil), limited: true, n: 5}
	if _, err := readAll(dr, nil); err != ErrDataTooLarge {
		t.Fatal(err)
	}
	if _, err := dr.Read(make([]byte, 10)); err != ErrDataTooLarge {
		t.Fatal("not sticky:", err)
	}
	dr.limited = false
	if _, err := io.Copy(io.Discard, dr); err != nil {
		t.Fatal(err)
	}
	if line, err := dr.r.readLine(100); string(line) != "NOOP\r\n" {
		t.Fatalf("after the data: %q, %v", line, err)
	}
}

// TestDataReaderNoReadAhead: on a live connection, the reader returns the
// end of the data as soon as the final dot arrived (it never waits for
// input after it), and hands over what it has without waiting to fill the
// caller's buffer.
func TestDataReaderNoReadAhead(t *testing.T) {
	for _, msg := range []string{".\r\n", "..\r\n.\r\n", "Subject: x\r\n\r\nbody\r\n.\r\n"} {
		client, server := net.Pipe()
		dr := &dataReader{r: newConnReader(server, 0, nil)}
		done := make(chan dataResult, 1)
		go func() {
			out, err := readAll(dr, []int{1 << 16})
			done <- dataResult{out: out, err: err}
		}()
		if _, err := io.WriteString(client, msg); err != nil {
			t.Fatal(err)
		}
		select {
		case res := <-done:
			if res.err != io.EOF {
				t.Fatalf("%q: %v", msg, res.err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%q: reader waits for input after the final dot", msg)
		}
		client.Close()
		server.Close()
	}
}

// FuzzDataReader is the differential test of the fast DATA reader against
// go-smtp v0.25.1's: random input, read from the connection in random
// pieces (boundaries anywhere: inside CRLF "." CRLF, in a dot-stuffed
// line, between a CR and what follows), random output buffer sizes, a
// random buffer size, ending in EOF or a timeout, with or without a size
// limit. Output, error and the unread rest of the input must be the same.
//
//	go test -run '^$' -fuzz FuzzDataReader -fuzztime 60s
func FuzzDataReader(f *testing.F) {
	for i, in := range dataCases {
		f.Add([]byte(in), []byte{1, 2, 3}, []byte{7}, uint8(i), uint16(0), i%2 == 0)
	}
	f.Add([]byte("a\r\n..b\r\n\r\r\n.\rc\r\n.\r\nMAIL FROM:<x>\r\n"), []byte{3, 1, 1, 4}, []byte{2}, uint8(3), uint16(5), false)
	f.Fuzz(func(t *testing.T, input, split, outs []byte, bufSize uint8, limit uint16, timeout bool) {
		var splitSizes, outSizes []int
		for _, b := range split {
			splitSizes = append(splitSizes, int(b)%32+1)
		}
		for _, b := range outs {
			outSizes = append(outSizes, int(b)%64+1)
		}
		var end error = io.EOF
		if timeout {
			end = timeoutError{}
		}
		checkSame(t, input, splitSizes, end, outSizes, int(bufSize)%80+1, int64(limit))
	})
}

// markerCuts returns the read boundaries of FuzzDataReaderMarkers: one
// inside every occurrence in input of CRLF "." CRLF, of a dot-stuffed line
// start (CRLF ".."), and of a bare CR (CR not followed by LF, cut right
// after the CR), the offset inside each chosen by pick; as piece sizes.
func markerCuts(input, pick []byte) []int {
	var cuts []int
	next := 0
	choose := func(n int) int { // 1..n-1
		k := 1
		if len(pick) > 0 {
			k = int(pick[next%len(pick)])%(n-1) + 1
		}
		next++
		return k
	}
	for i := range input {
		switch {
		case bytes.HasPrefix(input[i:], []byte("\r\n.\r\n")):
			cuts = append(cuts, i+choose(5))
		case bytes.HasPrefix(input[i:], []byte("\r\n..")):
			cuts = append(cuts, i+choose(4))
		case input[i] == '\r' && (i+1 == len(input) || input[i+1] != '\n'):
			cuts = append(cuts, i+1)
		}
	}
	var sizes []int
	last := 0
	for _, c := range cuts {
		if c > last && c < len(input) {
			sizes = append(sizes, c-last)
			last = c
		}
	}
	return append(sizes, len(input)-last+1) // the rest in one read
}

// FuzzDataReaderMarkers is FuzzDataReader with read boundaries placed, not
// drawn: every CRLF "." CRLF, dot-stuffed line start and bare CR of the
// input is split across two reads (at an offset the fuzzer picks), and the
// fast reader must give exactly v0.25.1's bytes, error and unread rest.
func FuzzDataReaderMarkers(f *testing.F) {
	for i, in := range dataCases {
		f.Add([]byte(in), []byte{byte(i), 3, 1}, uint8(i), i%2 == 0)
	}
	f.Add([]byte("a\r\n..b\r\n\r\r\n.\rc\r\n..\r\n\r.\r\n.\r\nRSET\r\n"), []byte{2, 7}, uint8(1), false)
	f.Fuzz(func(t *testing.T, input, pick []byte, bufSize uint8, timeout bool) {
		var end error = io.EOF
		if timeout {
			end = timeoutError{}
		}
		checkSame(t, input, markerCuts(input, pick), end, []int{int(bufSize)%64 + 1}, int(bufSize)%80+1, 0)
	})
}

// benchMessage is about 1 MiB of a typical message: 76-character lines,
// now and then a line starting with a dot (dot-stuffed) and a blank line.
func benchMessage() []byte {
	var b bytes.Buffer
	line := strings.Repeat("abcdefghij", 7) + "012345\r\n"
	for i := 0; b.Len() < 1<<20; i++ {
		switch {
		case i%50 == 0:
			b.WriteString("..stuffed line\r\n")
		case i%97 == 0:
			b.WriteString("\r\n")
		default:
			b.WriteString(line)
		}
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

// BenchmarkDataReader reads a 1 MiB message through the reference reader
// as go-smtp v0.25.1 ran it (a 4 KiB bufio.Reader over lineLimitReader,
// 64 KiB lines as mxedge configured it) and through the fast one (64 KiB
// connReader), both with io.Copy's 32 KiB reads.
func BenchmarkDataReader(b *testing.B) {
	msg := benchMessage()
	b.Run("v0.25.1", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			lr := &lineLimitReader{R: bytes.NewReader(msg), LineLimit: 64 << 10}
			r := &refDataReader{r: bufio.NewReaderSize(lr, 4096)}
			if _, err := io.Copy(struct{ io.Writer }{io.Discard}, r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			cr := newConnReader(bytes.NewReader(msg), 0, nil)
			cr.useLarge()
			r := &dataReader{r: cr}
			if _, err := io.Copy(struct{ io.Writer }{io.Discard}, r); err != nil {
				b.Fatal(err)
			}
			cr.release()
		}
	})
}
