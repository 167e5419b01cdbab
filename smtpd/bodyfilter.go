package smtpd

import (
	"bytes"
	"io"
)

// maxHops is the largest number of Received headers accepted on a message
// (Postfix hopcount_limit = 50); more means a mail loop.
const maxHops = 50

// bodyFilter sits between the DATA stream and the spool file. It enforces
// the listener's bare line ending policy and counts Received headers in the
// header section.
//
// RFC 5321 section 2.3.8: lines end in CRLF. go-smtp ends DATA only on
// CRLF.CRLF but passes bare LF and bare CR into the message; a downstream
// MTA that ends DATA on LF.LF would then see a second, smuggled message.
// With normalize, a bare LF becomes CRLF and a CR not followed by LF
// becomes a space; with reject, the message is marked bad (and the rest
// discarded). Either way nothing with a bare CR or LF reaches the spool.
type bodyFilter struct {
	w         io.Writer
	normalize bool

	cr  bool // the previous byte was a CR not yet written
	bad bool // reject mode: a bare CR or LF was seen

	inHeader bool
	dotLines bool // a line of the data starts with "." (it needs dot-stuffing again on the way out)
	lineLen  int
	prefix   [9]byte // first bytes of the current header line
	hops     int
}

func newBodyFilter(w io.Writer, normalize bool) *bodyFilter {
	return &bodyFilter{w: w, normalize: normalize, inHeader: true}
}

var crlf = []byte("\r\n")

// Write passes p on in as few writes as it can: the runs of p that need
// no change (every CRLF line) go out as one slice of p, so a clean chunk
// is one write; only a bare CR or LF splits it. The writers behind it
// (the queue's spool, the DKIM verifier's pipe) pay per write.
func (f *bodyFilter) Write(p []byte) (int, error) {
	n := len(p)
	off, run := 0, 0 // p[:off] is consumed, p[run:off] is clean and not yet written
	flush := func() error {
		if off == run {
			return nil
		}
		_, err := f.w.Write(p[run:off])
		run = off
		return err
	}
	put := func(b []byte) error { // b replaces what p held at off
		if err := flush(); err != nil {
			return err
		}
		_, err := f.w.Write(b)
		return err
	}
	for off < len(p) && !f.bad {
		if f.cr { // the previous chunk ended in CR, held back
			f.cr = false
			if p[off] == '\n' {
				off++
				run = off
				f.endLine()
				if err := put(crlf); err != nil {
					return 0, err
				}
				continue
			}
			if err := f.strayCR(put); err != nil {
				return 0, err
			}
			continue
		}
		// Scan to the next LF with IndexByte (vectorised), then look for a
		// CR inside the line: only one right before the LF is legitimate.
		q := p[off:]
		i := bytes.IndexByte(q, '\n')
		line := q
		if i >= 0 {
			line = q[:i]
		}
		j := bytes.IndexByte(line, '\r')
		switch {
		case j >= 0 && j < len(line)-1: // CR inside the line: stray
			f.text(line[:j])
			off += j
			if err := flush(); err != nil {
				return 0, err
			}
			off++
			run, f.cr = off, true // the next byte is not LF: strayCR
		case i < 0: // no LF in this chunk
			if j == len(line)-1 { // ends in CR: hold it back for the next byte
				f.text(line[:j])
				off += j
				if err := flush(); err != nil {
					return 0, err
				}
				off++
				run, f.cr = off, true
				break
			}
			f.text(line)
			off += len(line)
		case j == len(line)-1 && j >= 0: // CRLF: passes unchanged
			f.text(line[:j])
			f.endLine()
			off += i + 1
		default: // bare LF
			f.text(line)
			off += i
			if err := flush(); err != nil {
				return 0, err
			}
			off++
			run = off
			if !f.normalize {
				f.bad = true
				break
			}
			f.endLine()
			if err := put(crlf); err != nil {
				return 0, err
			}
		}
	}
	if f.bad {
		return n, nil // reject mode: nothing more is written
	}
	if err := flush(); err != nil {
		return 0, err
	}
	return n, nil
}

// finish handles a CR at the very end of the data (go-smtp's data always
// ends in CRLF, so this is defensive).
func (f *bodyFilter) finish() error {
	if f.cr && !f.bad {
		f.cr = false
		return f.strayCR(func(b []byte) error { _, err := f.w.Write(b); return err })
	}
	return nil
}

// strayCR handles a CR not followed by LF: a space through put in
// normalize mode, else the message is bad.
func (f *bodyFilter) strayCR(put func([]byte) error) error {
	if !f.normalize {
		f.bad = true
		return nil
	}
	f.text(space)
	return put(space)
}

var space = []byte{' '}

// text notes the bytes b of the current line (the header prefix, the
// line length); the caller writes them.
func (f *bodyFilter) text(b []byte) {
	if f.lineLen == 0 && len(b) > 0 && b[0] == '.' {
		f.dotLines = true
	}
	if f.inHeader && f.lineLen < len(f.prefix) {
		copy(f.prefix[f.lineLen:], b)
	}
	f.lineLen += len(b)
}

// endLine notes the end of a line: the empty line ends the header
// section, a Received header counts a hop.
func (f *bodyFilter) endLine() {
	if f.inHeader {
		if f.lineLen == 0 {
			f.inHeader = false
		} else if f.lineLen >= len(f.prefix) && bytes.EqualFold(f.prefix[:], []byte("received:")) {
			f.hops++
		}
	}
	f.lineLen = 0
}
