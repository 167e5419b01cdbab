package dkim

import (
	"bytes"
	"io"
	"strings"
)

// Canonicalization is a canonicalization algorithm.
type Canonicalization string

const (
	CanonicalizationSimple  Canonicalization = "simple"
	CanonicalizationRelaxed                  = "relaxed"
)

type canonicalizer interface {
	CanonicalizeHeader(s string) string
	CanonicalizeBody(w io.Writer) io.WriteCloser
}

var canonicalizers = map[Canonicalization]canonicalizer{
	CanonicalizationSimple:  new(simpleCanonicalizer),
	CanonicalizationRelaxed: new(relaxedCanonicalizer),
}

// crlfFixer fixes any lone LF without a preceding CR.
type crlfFixer struct {
	cr bool // the last byte of the previous call was CR
}

// Fix returns b with a CR inserted before every LF that does not follow a
// CR (in b, or at the end of the previous call). mxedge fork: when there is
// no such LF (mail from SMTP has none), b itself is returned, without a
// copy; the caller must not keep it beyond its own Write.
func (cf *crlfFixer) Fix(b []byte) []byte {
	if len(b) == 0 {
		return b
	}
	prevCR := cf.cr
	cf.cr = b[len(b)-1] == '\r'
	var res []byte
	done := 0 // b[:done] is in res
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			break
		}
		j += i
		if j > 0 {
			prevCR = b[j-1] == '\r'
		}
		if !prevCR {
			if res == nil {
				res = make([]byte, 0, len(b)+len(b)/32+1)
			}
			res = append(res, b[done:j]...)
			res = append(res, '\r')
			done = j
		}
		i = j + 1
	}
	if res == nil {
		return b
	}
	return append(res, b[done:]...)
}

type simpleCanonicalizer struct{}

func (c *simpleCanonicalizer) CanonicalizeHeader(s string) string {
	return s
}

type simpleBodyCanonicalizer struct {
	w         io.Writer
	crlfBuf   []byte
	crlfFixer crlfFixer
}

// Write implements RFC 6376 section 3.4.3: CRLFs at the end of the body
// are dropped, so a run of CRLFs (and a last lone CR, maybe the start of
// one) is held back in crlfBuf until a byte that is not part of it
// follows. mxedge fork: the input is no longer copied behind crlfBuf on
// every write (v0.7.0 appended it): what is held back is written first,
// then the input up to its own trailing run, which alone is copied into
// crlfBuf; only a write short enough that the run may reach back into
// crlfBuf goes v0.7.0's way.
func (c *simpleBodyCanonicalizer) Write(b []byte) (int, error) {
	written := len(b)
	b = c.crlfFixer.Fix(b) // the caller's bytes if nothing was fixed
	end := trailingCRLFStart(b)

	if len(c.crlfBuf) > 0 && end < 2 {
		// crlfBuf is CRLFs and maybe a CR: they may pair with b.
		b = append(c.crlfBuf, b...)
		end = trailingCRLFStart(b)
		c.crlfBuf = b[end:]
		var err error
		if end > 0 {
			_, err = c.w.Write(b[:end])
		}
		return written, err
	}

	if len(c.crlfBuf) > 0 {
		if _, err := c.w.Write(c.crlfBuf); err != nil {
			return written, err
		}
	}
	var err error
	if end > 0 {
		_, err = c.w.Write(b[:end])
	}
	c.crlfBuf = append(c.crlfBuf[:0], b[end:]...)
	return written, err
}

// trailingCRLFStart returns where the CRLFs at the end of b start, with a
// lone CR at the very end counted as part of them.
func trailingCRLFStart(b []byte) int {
	end := len(b)
	// If it ends with \r, maybe the next write will begin with \n
	if end > 0 && b[end-1] == '\r' {
		end--
	}
	// Keep all \r\n sequences
	for end >= 2 && b[end-2] == '\r' && b[end-1] == '\n' {
		end -= 2
	}
	return end
}

func (c *simpleBodyCanonicalizer) Close() error {
	// Flush crlfBuf if it ends with a single \r (without a matching \n)
	if len(c.crlfBuf) > 0 && c.crlfBuf[len(c.crlfBuf)-1] == '\r' {
		if _, err := c.w.Write(c.crlfBuf); err != nil {
			return err
		}
	}
	c.crlfBuf = nil

	if _, err := c.w.Write([]byte(crlf)); err != nil {
		return err
	}
	return nil
}

func (c *simpleCanonicalizer) CanonicalizeBody(w io.Writer) io.WriteCloser {
	return &simpleBodyCanonicalizer{w: w}
}

type relaxedCanonicalizer struct{}

func (c *relaxedCanonicalizer) CanonicalizeHeader(s string) string {
	k, v, ok := strings.Cut(s, ":")
	if !ok {
		return strings.TrimSpace(strings.ToLower(s)) + ":" + crlf
	}

	k = strings.TrimSpace(strings.ToLower(k))
	v = strings.Join(strings.FieldsFunc(v, func(r rune) bool {
		return r == ' ' || r == '\t' || r == '\n' || r == '\r'
	}), " ")
	return k + ":" + v + crlf
}

type relaxedBodyCanonicalizer struct {
	w         io.Writer
	crlfBuf   []byte
	wsp       bool
	written   bool
	crlfFixer crlfFixer
	out       []byte // mxedge fork: the output buffer, kept across writes
}

// Write implements RFC 6376 section 3.4.4: whitespace at the end of a line
// is dropped, other runs of it become one space, and CRLFs are held back
// in crlfBuf until something else follows (empty lines at the end of the
// body are dropped). mxedge fork: runs of other bytes are copied at once,
// into an output buffer kept across writes (v0.7.0 appended byte by byte
// to a new buffer on every write).
func (c *relaxedBodyCanonicalizer) Write(b []byte) (int, error) {
	written := len(b)

	b = c.crlfFixer.Fix(b)

	if need := len(b) + len(c.crlfBuf) + 1; cap(c.out) < need {
		c.out = make([]byte, 0, need)
	}
	canonical := c.out[:0]
	for len(b) > 0 {
		n := plainRun(b)
		if n == 0 {
			if ch := b[0]; ch == ' ' || ch == '\t' {
				c.wsp = true
			} else {
				c.wsp = false
				c.crlfBuf = append(c.crlfBuf, ch)
			}
			b = b[1:]
			continue
		}
		if len(c.crlfBuf) > 0 {
			canonical = append(canonical, c.crlfBuf...)
			c.crlfBuf = c.crlfBuf[:0]
		}
		if c.wsp {
			canonical = append(canonical, ' ')
			c.wsp = false
		}
		canonical = append(canonical, b[:n]...)
		b = b[n:]
	}
	c.out = canonical

	if !c.written && len(canonical) > 0 {
		c.written = true
	}

	_, err := c.w.Write(canonical)
	return written, err
}

// plainRun returns the length of the start of b that is copied as it
// is: bytes other than space, tab, CR and LF, and single spaces between
// two of them (a space between words stays one space).
func plainRun(b []byte) int {
	i := 0
	for i < len(b) {
		if !isWSPorCRLF(b[i]) {
			i++
		} else if b[i] == ' ' && i > 0 && i+1 < len(b) && !isWSPorCRLF(b[i+1]) {
			i += 2
		} else {
			break
		}
	}
	return i
}

func isWSPorCRLF(ch byte) bool {
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'
}

func (c *relaxedBodyCanonicalizer) Close() error {
	if c.written {
		if _, err := c.w.Write([]byte(crlf)); err != nil {
			return err
		}
	}
	return nil
}

func (c *relaxedCanonicalizer) CanonicalizeBody(w io.Writer) io.WriteCloser {
	return &relaxedBodyCanonicalizer{w: w}
}

type limitedWriter struct {
	W io.Writer
	N int64
}

func (w *limitedWriter) Write(b []byte) (int, error) {
	if w.N <= 0 {
		return len(b), nil
	}

	skipped := 0
	if int64(len(b)) > w.N {
		b = b[:w.N]
		skipped = int(int64(len(b)) - w.N)
	}

	n, err := w.W.Write(b)
	w.N -= int64(n)
	return n + skipped, err
}
