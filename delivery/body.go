package delivery

import (
	"bytes"
	"io"
	"os"
	"time"
)

// bodyChunk is the size of the reads from the spool file and, roughly, of
// the writes to the next hop.
const bodyChunk = 64 << 10

// bodyBufs are one transaction's body buffers, pooled in the Deliverer.
type bodyBufs struct{ in, out []byte }

func newBodyBufs() any {
	return &bodyBufs{in: make([]byte, bodyChunk), out: make([]byte, 0, 2*bodyChunk)}
}

// deadlineWriter is the part of net.Conn that bodyWriter uses.
type deadlineWriter interface {
	io.Writer
	SetWriteDeadline(time.Time) error
}

// States of bodyWriter, as in net/textproto's dotWriter.
const (
	wBegin     = iota // nothing written yet
	wBeginLine        // at the start of a line
	wCR               // wrote "\r"
	wData             // in the middle of a line
)

// bodyWriter sends a message body with SMTP transparency (RFC 5321
// section 4.5.2: a line starting with "." gets another "." in front) and
// CRLF line endings, straight to the connection in writes of about
// bodyChunk bytes, each with its own deadline, so that a large message
// may take as long as it needs while a stalled receiver is given up after
// timeout.
//
// It produces exactly the bytes of go-smtp's data writer (textproto's
// dotWriter; FuzzBodyWriter compares them), but without a function call
// per byte and a write per 4 KiB, which made that writer the largest CPU
// cost of relaying big messages. It is used between go-smtp's Data and
// CloseWithResponse, when go-smtp's own buffer is empty: finish writes the
// end of data too, and the caller says so with DataCommand.SentRaw.
type bodyWriter struct {
	conn    deadlineWriter
	timeout time.Duration
	chunk   int // write once this many bytes are buffered
	out     []byte
	state   int
	err     error // the first write error; sticky
	// crlf: the queue vouches for CRLF line endings (queue.Message.CRLF):
	// only dot-stuffing is left to do, found with one (vectorised)
	// IndexByte per line and no per-byte state (writeCRLF).
	crlf bool
}

// send copies r to the connection through in; readErr is an error reading
// r, netErr one writing to the connection.
func (w *bodyWriter) send(r io.Reader, in []byte) (readErr, netErr error) {
	for {
		n, err := r.Read(in)
		if n > 0 {
			if werr := w.write(in[:n]); werr != nil {
				return nil, werr
			}
		}
		if err == io.EOF {
			return nil, w.finish()
		}
		if err != nil {
			return err, nil
		}
	}
}

// write stuffs p into the output buffer, writing it out as it fills.
func (w *bodyWriter) write(p []byte) error {
	if w.crlf && w.writeCRLF(p) {
		return w.err
	}
	nl := -1 // index of the next '\n' in p, len(p) if none; -1: not searched yet
	for len(p) > 0 && w.err == nil {
		if w.state == wData {
			// Copy up to the next '\r' or '\n' as is.
			if nl < 0 {
				if nl = bytes.IndexByte(p, '\n'); nl < 0 {
					nl = len(p)
				}
			}
			j := nl
			if r := bytes.IndexByte(p[:nl], '\r'); r >= 0 {
				j = r
			}
			w.out = append(w.out, p[:j]...)
			p, nl = p[j:], nl-j
			if len(p) == 0 {
				break
			}
		}
		w.step(p[0])
		p, nl = p[1:], nl-1
		if nl < 0 {
			nl = -1
		}
		if len(w.out) >= w.chunk {
			w.flush()
		}
	}
	if len(w.out) >= w.chunk {
		w.flush()
	}
	return w.err
}

// writeCRLF is write for data with CRLF line endings only: every line
// that starts with "." gets another, nothing else changes (no CR to look
// for, no byte through step), and the state after p is what step would
// have left. It declines (false, nothing written) a chunk whose CR and LF
// counts show a bare one after all, which write then handles byte-exactly
// as textproto does; the counts do not see every bare one (a bare CR and
// a bare LF in one chunk cancel out), so it relies on the queue's promise.
// A chunk after a CR starts with its LF, through step.
func (w *bodyWriter) writeCRLF(p []byte) bool {
	if w.state == wCR && len(p) > 0 {
		w.step(p[0])
		p = p[1:]
	}
	if len(p) == 0 {
		return true
	}
	end := 0
	if p[len(p)-1] == '\r' {
		end = 1
	}
	if bytes.Count(p, []byte{'\r'}) != bytes.Count(p, []byte{'\n'})+end {
		return false
	}
	if (w.state == wBegin || w.state == wBeginLine) && p[0] == '.' {
		w.out = append(w.out, '.')
	}
	// One IndexByte per line, one append per run of lines that need no
	// stuffing (bytes.Index(p, "\n.") goes line by line too, slower).
	run := 0
	for i := 0; ; i++ {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			break
		}
		i += j
		if i+1 < len(p) && p[i+1] == '.' {
			w.out = append(append(w.out, p[run:i+1]...), '.')
			run = i + 1
		}
	}
	w.out = append(w.out, p[run:]...)
	switch p[len(p)-1] {
	case '\n':
		w.state = wBeginLine
	case '\r':
		w.state = wCR
	default:
		w.state = wData
	}
	if len(w.out) >= w.chunk {
		w.flush()
	}
	return true
}

// step handles one byte exactly as textproto's dotWriter does.
func (w *bodyWriter) step(c byte) {
	switch w.state {
	case wBegin, wBeginLine:
		w.state = wData
		if c == '.' {
			w.out = append(w.out, '.')
		}
		fallthrough
	case wData:
		if c == '\r' {
			w.state = wCR
		}
		if c == '\n' {
			w.out = append(w.out, '\r')
			w.state = wBeginLine
		}
	case wCR:
		w.state = wData
		if c == '\n' {
			w.state = wBeginLine
		}
	}
	w.out = append(w.out, c)
}

// flush writes the buffer out, with a deadline of its own.
func (w *bodyWriter) flush() {
	if len(w.out) == 0 || w.err != nil {
		return
	}
	if w.err = w.conn.SetWriteDeadline(time.Now().Add(w.timeout)); w.err != nil {
		return
	}
	if _, w.err = w.conn.Write(w.out); w.err != nil {
		return
	}
	w.out = w.out[:0]
}

// sendFile is send for a message whose data goes on the wire as stored
// (queue.Message.CRLF and NoDotLines): the header block through write,
// then n bytes of f straight from the file to the socket (conn.ReadFrom:
// sendfile(2) for a TCP connection), in pieces of fileChunk bytes, each
// with its own deadline, then the end of data after the data's last byte.
func (w *bodyWriter) sendFile(conn io.ReaderFrom, head []byte, f *os.File, n int64) (readErr, netErr error) {
	if err := w.write(head); err != nil {
		return nil, err
	}
	w.flush()
	if w.err != nil {
		return nil, w.err
	}
	var last [1]byte
	if n > 0 {
		if _, err := f.ReadAt(last[:], n-1); err != nil {
			return err, nil
		}
	}
	for left := n; left > 0; {
		if w.err = w.conn.SetWriteDeadline(time.Now().Add(w.timeout)); w.err != nil {
			return nil, w.err
		}
		k := min(left, fileChunk)
		sent, err := conn.ReadFrom(io.LimitReader(f, k))
		left -= sent
		if err != nil {
			// ReadFrom does not say which side failed: the file is on
			// local disk, so a failure is taken as the network's.
			w.err = err
			return nil, err
		}
		if sent < k {
			return io.ErrUnexpectedEOF, nil // the spool file is shorter than its record says
		}
	}
	if n > 0 {
		w.state = wData
		switch last[0] {
		case '\n':
			w.state = wBeginLine
		case '\r':
			w.state = wCR
		}
	}
	return nil, w.finish()
}

// fileChunk is how much of a spool file goes out under one write deadline.
const fileChunk = 1 << 20

// finish writes the rest of the body and the end of data, as textproto's
// dot writer closes: ".\r\n" after a line ending, "\n.\r\n" after a CR,
// "\r\n.\r\n" otherwise (an empty body too). The caller then tells
// go-smtp (DataCommand.SentRaw, FORK.md section 18) and reads the reply:
// the message's last bytes and the end of data go in one write.
func (w *bodyWriter) finish() error {
	switch w.state {
	case wBeginLine:
		w.out = append(w.out, ".\r\n"...)
	case wCR:
		w.out = append(w.out, "\n.\r\n"...)
	default:
		w.out = append(w.out, "\r\n.\r\n"...)
	}
	w.flush()
	return w.err
}
