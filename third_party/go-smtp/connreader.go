package smtp

import (
	"bytes"
	"errors"
	"io"
	"sync"
)

// errLineTooLong is returned by connReader.readLine for a line longer than
// the limit; the line is still in the stream (see discardLine).
var errLineTooLong = errors.New("smtp: line too long")

// errLineNeverEnds is returned by connReader.discardLine when a too long
// line goes on past maxDiscardLine.
var errLineNeverEnds = errors.New("smtp: line too long and never ends")

// maxDiscardLine bounds how much of a too long command line the server reads
// and throws away looking for its end. Past that, the client is not speaking
// SMTP and the connection is closed.
const maxDiscardLine = 64 << 10

// smallBufferSize is the read buffer of a connection between messages, and
// largeBufferSize the one used while a message is received (DATA, BDAT).
const (
	smallBufferSize = 4 << 10
	largeBufferSize = 64 << 10
)

var largeBuffers = sync.Pool{New: func() interface{} {
	b := make([]byte, largeBufferSize)
	return &b
}}

// connReader is the server's buffered reader of one connection. It is a
// bufio.Reader with what the server needs on top:
//
//   - before every read from the connection that may block, beforeRead is
//     called: this is where the server flushes the replies it holds back
//     (reply batching under PIPELINING, RFC 2920 section 3.2), so that no
//     reply is ever held while the server waits for the client;
//   - readLine returns a line only when its LF arrived: a line cut off by a
//     timeout, EOF or a closed connection is an error, never a command;
//   - lines are limited without buffering more than the limit;
//   - the buffer is small (smallBufferSize, or the command line limit if
//     larger) between messages, and large (largeBufferSize, from a pool)
//     only while a message is read, so that an idle session holds little
//     memory;
//   - Buffered tells whether more input is already there;
//   - errors are sticky: after a read error every call returns it.
type connReader struct {
	rd         io.Reader
	beforeRead func() error

	buf   []byte
	small []byte // the small buffer, kept while buf is a large one
	large *[]byte
	r, w  int
	err   error

	shrink bool // go back to the small buffer as soon as the data fits
}

func newConnReader(rd io.Reader, size int, beforeRead func() error) *connReader {
	if size < smallBufferSize {
		size = smallBufferSize
	}
	b := make([]byte, size)
	return &connReader{rd: rd, beforeRead: beforeRead, buf: b, small: b}
}

// Buffered returns the number of bytes that can be read without reading
// from the connection.
func (cr *connReader) Buffered() int { return cr.w - cr.r }

// fill reads once from the connection, after moving unread data to the
// front of the buffer. It returns an error only if nothing was read; an
// error that came with data is returned by the next call.
func (cr *connReader) fill() error {
	if cr.err != nil {
		return cr.err
	}
	if cr.r > 0 {
		copy(cr.buf, cr.buf[cr.r:cr.w])
		cr.w -= cr.r
		cr.r = 0
	}
	if cr.shrink && cr.w <= len(cr.small) {
		cr.useSmall()
	}
	if cr.w == len(cr.buf) {
		return errors.New("smtp: read buffer full") // callers never let this happen
	}
	if cr.beforeRead != nil {
		if err := cr.beforeRead(); err != nil {
			cr.err = err
			return err
		}
	}
	for i := 0; i < 100; i++ {
		n, err := cr.rd.Read(cr.buf[cr.w:])
		if n < 0 {
			n = 0
		}
		cr.w += n
		if err != nil {
			cr.err = err
			if n > 0 {
				return nil
			}
			return err
		}
		if n > 0 {
			return nil
		}
	}
	cr.err = io.ErrNoProgress
	return cr.err
}

// Read implements io.Reader (used for BDAT chunks).
func (cr *connReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if cr.r == cr.w {
		if err := cr.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, cr.buf[cr.r:cr.w])
	cr.r += n
	return n, nil
}

// readLine returns the next line, with its line ending (LF or CRLF), if it
// is at most limit bytes long including the line ending. The slice is valid
// until the next call. A line cut off by an error is not returned (and is
// lost). A longer line returns errLineTooLong without consuming anything
// beyond limit bytes: call discardLine to skip it.
func (cr *connReader) readLine(limit int) ([]byte, error) {
	if limit > len(cr.buf) {
		limit = len(cr.buf)
	}
	scanned := 0
	for {
		if i := bytes.IndexByte(cr.buf[cr.r+scanned:cr.w], '\n'); i >= 0 {
			end := cr.r + scanned + i + 1
			if end-cr.r > limit {
				return nil, errLineTooLong
			}
			line := cr.buf[cr.r:end]
			cr.r = end
			return line, nil
		}
		scanned = cr.w - cr.r
		if scanned >= limit {
			return nil, errLineTooLong
		}
		if err := cr.fill(); err != nil {
			return nil, err
		}
	}
}

// discardLine skips input up to and including the next LF. If there is no
// LF within maxDiscardLine bytes, it returns errLineNeverEnds.
func (cr *connReader) discardLine() error {
	skipped := 0
	for {
		if i := bytes.IndexByte(cr.buf[cr.r:cr.w], '\n'); i >= 0 {
			cr.r += i + 1
			return nil
		}
		skipped += cr.w - cr.r
		cr.r = cr.w
		if skipped > maxDiscardLine {
			return errLineNeverEnds
		}
		if err := cr.fill(); err != nil {
			return err
		}
	}
}

// discardN skips n bytes of input (a refused BDAT chunk).
func (cr *connReader) discardN(n int64) error {
	for n > 0 {
		if cr.r == cr.w {
			if err := cr.fill(); err != nil {
				return err
			}
		}
		k := int64(cr.w - cr.r)
		if k > n {
			k = n
		}
		cr.r += int(k)
		n -= k
	}
	return nil
}

// discardBuffered drops whatever input is buffered (STARTTLS: anything
// the client sent after the command, before the TLS handshake).
func (cr *connReader) discardBuffered() {
	cr.r, cr.w = 0, 0
}

// useLarge switches to a large buffer while a message is read.
func (cr *connReader) useLarge() {
	cr.shrink = false
	if cr.large != nil {
		return
	}
	cr.large = largeBuffers.Get().(*[]byte)
	n := copy(*cr.large, cr.buf[cr.r:cr.w])
	cr.buf, cr.r, cr.w = *cr.large, 0, n
}

// useSmallSoon switches back to the small buffer once the buffered input
// fits into it (at once, usually: a client waits for the reply to the
// message before it sends more).
func (cr *connReader) useSmallSoon() {
	if cr.large == nil {
		return
	}
	cr.shrink = true
	if cr.w-cr.r <= len(cr.small) {
		cr.useSmall()
	}
}

func (cr *connReader) useSmall() {
	n := copy(cr.small, cr.buf[cr.r:cr.w])
	largeBuffers.Put(cr.large)
	cr.large = nil
	cr.buf, cr.r, cr.w = cr.small, 0, n
	cr.shrink = false
}

// release gives the large buffer back (the connection is closed).
func (cr *connReader) release() {
	if cr.large != nil {
		largeBuffers.Put(cr.large)
		cr.large = nil
		cr.buf, cr.r, cr.w = cr.small, 0, 0
	}
}
