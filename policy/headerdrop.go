package policy

import (
	"bytes"
	"io"
)

// HeaderDropper is an optional addition to a DataCheck that keeps some
// incoming header fields out of the stored message, e.g. forged
// Authentication-Results fields that carry this relay's authserv-id (RFC
// 8601 section 5). The listener filters the message on its way into the
// queue; checks that stream it (Streamer) still see it as received, so a
// DKIM signature is verified over the original.
//
// DropNames lists the field names (case-insensitive) the check wants to
// see; the listener buffers only those fields (up to MaxDropField bytes;
// a longer one is dropped whole) and calls DropField with each, complete
// with its name, folding and CRLF. DropField must not block and must be
// safe for concurrent use; its state, if any, goes into t.
type HeaderDropper interface {
	DataCheck
	DropNames() []string
	DropField(c *Conn, t *Txn, field []byte) bool
}

// MaxDropField bounds a header field a HeaderDropper is shown: a longer
// field of a name it asked for is not stored.
const MaxDropField = 64 << 10

// HeaderFilter returns w wrapped in the filter of the chain's
// HeaderDroppers for this transaction, or w itself if there are none.
// Write of the result returns len(p) when w took every byte it was given.
func (ch *Chain) HeaderFilter(c *Conn, t *Txn, w io.Writer) io.Writer {
	var ds []HeaderDropper
	for _, x := range ch.data {
		if d, ok := x.(HeaderDropper); ok {
			ds = append(ds, d)
		}
	}
	if len(ds) == 0 {
		return w
	}
	f := &fieldFilter{w: w}
	for _, d := range ds {
		for _, n := range d.DropNames() {
			f.names = append(f.names, []byte(n))
		}
	}
	f.drop = func(field []byte) bool {
		for _, d := range ds {
			if d.DropField(c, t, field) {
				return true
			}
		}
		return false
	}
	return f
}

// NewFieldFilter is the filter HeaderFilter builds: it writes the message
// streamed into it to w, without the header fields named in names for
// which drop returns true. Exported for tests and fuzzing.
func NewFieldFilter(w io.Writer, names []string, drop func(field []byte) bool) io.Writer {
	f := &fieldFilter{w: w, drop: drop}
	for _, n := range names {
		f.names = append(f.names, []byte(n))
	}
	return f
}

// fieldFilter is a line-based state machine over the header section (RFC
// 5322 section 2.2: a field is its first line and the continuation lines
// that start with SP or HTAB; an empty line ends the section). Other
// fields pass line by line; the body passes untouched.
type fieldFilter struct {
	w     io.Writer
	names [][]byte
	drop  func([]byte) bool

	body    bool   // past the header section
	line    []byte // the current line, not yet complete
	long    bool   // the current line outgrew the buffer: passed through
	pending []byte // a field of a wanted name, being collected
	over    bool   // pending outgrew MaxDropField: dropped
}

func (f *fieldFilter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && !f.body {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if f.long {
				if err := f.out(p); err != nil {
					return 0, err
				}
				return n, nil
			}
			f.line = append(f.line, p...)
			if len(f.line) > MaxDropField {
				// A line this long is no field we asked for: let it pass.
				if err := f.flushPending(); err != nil {
					return 0, err
				}
				if err := f.out(f.line); err != nil {
					return 0, err
				}
				f.line, f.long = f.line[:0], true
			}
			return n, nil
		}
		chunk := p[:i+1]
		p = p[i+1:]
		if f.long {
			f.long = false
			if err := f.out(chunk); err != nil {
				return 0, err
			}
			continue
		}
		f.line = append(f.line, chunk...)
		if err := f.endLine(); err != nil {
			return 0, err
		}
		f.line = f.line[:0]
	}
	if len(p) > 0 {
		if err := f.out(p); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// endLine handles one complete header line (f.line, with its LF).
func (f *fieldFilter) endLine() error {
	l := f.line
	switch {
	case len(bytes.TrimRight(l, "\r\n")) == 0: // the empty line
		if err := f.flushPending(); err != nil {
			return err
		}
		f.body = true
		return f.out(l)
	case l[0] == ' ' || l[0] == '\t': // continuation
		if f.pending != nil || f.over {
			f.collect(l)
			return nil
		}
		return f.out(l)
	}
	if err := f.flushPending(); err != nil {
		return err
	}
	if f.wanted(l) {
		f.collect(l)
		return nil
	}
	return f.out(l)
}

func (f *fieldFilter) collect(l []byte) {
	if f.over {
		return
	}
	if len(f.pending)+len(l) > MaxDropField {
		f.pending, f.over = nil, true
		return
	}
	f.pending = append(f.pending, l...)
}

func (f *fieldFilter) wanted(l []byte) bool {
	name, _, ok := bytes.Cut(l, []byte(":"))
	if !ok {
		return false
	}
	name = bytes.TrimRight(name, " \t")
	for _, n := range f.names {
		if bytes.EqualFold(name, n) {
			return true
		}
	}
	return false
}

// flushPending decides the collected field.
func (f *fieldFilter) flushPending() error {
	p, over := f.pending, f.over
	f.pending, f.over = nil, false
	if over || p == nil || f.drop(p) {
		return nil
	}
	return f.out(p)
}

func (f *fieldFilter) out(b []byte) error {
	_, err := f.w.Write(b)
	return err
}

// Flush decides a field still pending at the end of the data (a message
// without a body) and writes what is left; the listener calls it once the
// data is complete.
func (f *fieldFilter) Flush() error {
	if !f.body {
		if err := f.flushPending(); err != nil {
			return err
		}
		if len(f.line) > 0 {
			err := f.out(f.line)
			f.line = f.line[:0]
			return err
		}
	}
	return nil
}
