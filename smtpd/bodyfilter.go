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
	lineLen  int
	prefix   [9]byte // first bytes of the current header line
	hops     int
}

func newBodyFilter(w io.Writer, normalize bool) *bodyFilter {
	return &bodyFilter{w: w, normalize: normalize, inHeader: true}
}

var crlf = []byte("\r\n")

func (f *bodyFilter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && !f.bad {
		if f.cr { // the previous chunk ended in CR
			f.cr = false
			if p[0] == '\n' {
				p = p[1:]
				if err := f.newline(); err != nil {
					return 0, err
				}
				continue
			}
			if err := f.strayCR(); err != nil {
				return 0, err
			}
			continue
		}
		// Scan to the next LF with IndexByte (vectorised), then look for a
		// CR inside the line: only one right before the LF is legitimate.
		i := bytes.IndexByte(p, '\n')
		line := p
		if i >= 0 {
			line = p[:i]
		}
		j := bytes.IndexByte(line, '\r')
		switch {
		case j >= 0 && j < len(line)-1: // CR inside the line: stray
			if err := f.text(line[:j]); err != nil {
				return 0, err
			}
			p, f.cr = p[j+1:], true // the next byte is not LF: strayCR
		case i < 0: // no LF in this chunk
			if j == len(line)-1 { // ends in CR: wait for the next byte
				line, f.cr = line[:j], true
			}
			if err := f.text(line); err != nil {
				return 0, err
			}
			p = nil
		case j == len(line)-1 && j >= 0: // CRLF
			if err := f.text(line[:j]); err != nil {
				return 0, err
			}
			if err := f.newline(); err != nil {
				return 0, err
			}
			p = p[i+1:]
		default: // bare LF
			if err := f.text(line); err != nil {
				return 0, err
			}
			p = p[i+1:]
			if !f.normalize {
				f.bad = true
				break
			}
			if err := f.newline(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

// finish handles a CR at the very end of the data (go-smtp's data always
// ends in CRLF, so this is defensive).
func (f *bodyFilter) finish() error {
	if f.cr && !f.bad {
		f.cr = false
		return f.strayCR()
	}
	return nil
}

func (f *bodyFilter) strayCR() error {
	if !f.normalize {
		f.bad = true
		return nil
	}
	return f.text([]byte{' '})
}

func (f *bodyFilter) text(b []byte) error {
	if f.inHeader && f.lineLen < len(f.prefix) {
		copy(f.prefix[f.lineLen:], b)
	}
	f.lineLen += len(b)
	_, err := f.w.Write(b)
	return err
}

func (f *bodyFilter) newline() error {
	if f.inHeader {
		if f.lineLen == 0 {
			f.inHeader = false // the empty line ends the header section
		} else if f.lineLen >= len(f.prefix) && bytes.EqualFold(f.prefix[:], []byte("received:")) {
			f.hops++
		}
	}
	f.lineLen = 0
	_, err := f.w.Write(crlf)
	return err
}
