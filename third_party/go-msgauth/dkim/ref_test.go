package dkim

import (
	"io"
	"regexp"
)

// mxedge fork: go-msgauth v0.7.0's code that the fork replaced, kept
// unchanged (but for the names) as the reference the fork's code is
// tested against (fork_test.go). Its behaviour is the specification:
// every output byte must be the same.

// refBodyCanonicalizers are v0.7.0's body canonicalizers, by name.
var refBodyCanonicalizers = map[Canonicalization]func(w io.Writer) io.WriteCloser{
	CanonicalizationSimple: func(w io.Writer) io.WriteCloser {
		return &refSimpleBodyCanonicalizer{simpleBodyCanonicalizer: simpleBodyCanonicalizer{w: w}}
	},
	CanonicalizationRelaxed: func(w io.Writer) io.WriteCloser {
		return &refRelaxedBodyCanonicalizer{relaxedBodyCanonicalizer: relaxedBodyCanonicalizer{w: w}}
	},
}

// refCrlfFixer is v0.7.0's crlfFixer: one byte at a time, a new slice
// on every call.
type refCrlfFixer struct {
	cr bool
}

func (cf *refCrlfFixer) Fix(b []byte) []byte {
	res := make([]byte, 0, len(b))
	for _, ch := range b {
		prevCR := cf.cr
		cf.cr = false
		switch ch {
		case '\r':
			cf.cr = true
		case '\n':
			if !prevCR {
				res = append(res, '\r')
			}
		}
		res = append(res, ch)
	}
	return res
}

// refSimpleBodyCanonicalizer is v0.7.0's simple body canonicalizer:
// every write is appended to crlfBuf, through refCrlfFixer. Its Close is
// simpleBodyCanonicalizer's, unchanged in the fork.
type refSimpleBodyCanonicalizer struct {
	simpleBodyCanonicalizer
	fixer refCrlfFixer
}

func (c *refSimpleBodyCanonicalizer) Write(b []byte) (int, error) {
	written := len(b)
	b = append(c.crlfBuf, b...)

	b = c.fixer.Fix(b)

	end := len(b)
	// If it ends with \r, maybe the next write will begin with \n
	if end > 0 && b[end-1] == '\r' {
		end--
	}
	// Keep all \r\n sequences
	for end >= 2 {
		prev := b[end-2]
		cur := b[end-1]
		if prev != '\r' || cur != '\n' {
			break
		}
		end -= 2
	}

	c.crlfBuf = b[end:]

	var err error
	if end > 0 {
		_, err = c.w.Write(b[:end])
	}
	return written, err
}

// refRemoveSignature is v0.7.0's removeSignature, a regexp.
func refRemoveSignature(s string) string {
	return refSigRegex.ReplaceAllString(s, "$1")
}

var refSigRegex = regexp.MustCompile(`(b\s*=)[^;]+`)

// refRelaxedBodyCanonicalizer is v0.7.0's relaxed body canonicalizer: byte
// by byte, into a new buffer on every write, through refCrlfFixer. Its
// Close is relaxedBodyCanonicalizer's, unchanged in the fork.
type refRelaxedBodyCanonicalizer struct {
	relaxedBodyCanonicalizer
	fixer refCrlfFixer
}

func (c *refRelaxedBodyCanonicalizer) Write(b []byte) (int, error) {
	written := len(b)

	b = c.fixer.Fix(b)

	canonical := make([]byte, 0, len(b))
	for _, ch := range b {
		if ch == ' ' || ch == '\t' {
			c.wsp = true
		} else if ch == '\r' || ch == '\n' {
			c.wsp = false
			c.crlfBuf = append(c.crlfBuf, ch)
		} else {
			if len(c.crlfBuf) > 0 {
				canonical = append(canonical, c.crlfBuf...)
				c.crlfBuf = c.crlfBuf[:0]
			}
			if c.wsp {
				canonical = append(canonical, ' ')
				c.wsp = false
			}

			canonical = append(canonical, ch)
		}
	}

	if !c.written && len(canonical) > 0 {
		c.written = true
	}

	_, err := c.w.Write(canonical)
	return written, err
}
