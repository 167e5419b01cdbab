package smtp

import (
	"bytes"
	"fmt"
	"io"
)

type EnhancedCode [3]int

// SMTPError specifies the error code, enhanced error code (if any) and
// message returned by the server.
type SMTPError struct {
	Code         int
	EnhancedCode EnhancedCode
	Message      string
}

// NoEnhancedCode is used to indicate that enhanced error code should not be
// included in response.
//
// Note that RFC 2034 requires an enhanced code to be included in all 2xx, 4xx
// and 5xx responses. This constant is exported for use by extensions, you
// should probably use EnhancedCodeNotSet instead.
var NoEnhancedCode = EnhancedCode{-1, -1, -1}

// EnhancedCodeNotSet is a nil value of EnhancedCode field in SMTPError, used
// to indicate that backend failed to provide enhanced status code. X.0.0 will
// be used (X is derived from error code).
var EnhancedCodeNotSet = EnhancedCode{0, 0, 0}

func (err *SMTPError) Error() string {
	s := fmt.Sprintf("SMTP error %03d", err.Code)
	if err.Message != "" {
		s += ": " + err.Message
	}
	return s
}

func (err *SMTPError) Temporary() bool {
	return err.Code/100 == 4
}

var ErrDataTooLarge = &SMTPError{
	Code:         552,
	EnhancedCode: EnhancedCode{5, 3, 4},
	Message:      "Maximum message size exceeded",
}

// dataReader reads the message after DATA (RFC 5321 section 4.1.1.4):
// it removes the dot of dot-stuffed lines (section 4.5.2) and ends at the
// line "." (CRLF "." CRLF, the start of the message counting as the start
// of a line). Every other byte, bare CR and bare LF included, is passed on
// exactly as sent, so that the backend can refuse or repair them (SMTP
// smuggling, RFC 5321 section 2.3.8).
//
// Semantics are those of go-smtp v0.25.1's byte-by-byte state machine
// (kept as refDataReader in data_ref_test.go, FuzzDataReader compares the
// two), including its quirks: after a CR, a second CR does not start a new
// line end ("\r\r\n" is not a line end), and ".\r" followed by anything
// but LF drops both the dot and the CR. What is new is speed: in the middle
// of a line it copies whole runs at once, across ordinary line ends, and
// only falls back to the state machine at a line that starts with a dot
// (or when the input buffered so far ends). It never reads ahead of what it
// needs to decide, so it never blocks on input past the final dot, and it
// never consumes a byte after it.
//
// There is no limit on the length of a line: only the size of the message
// is limited (MaxMessageBytes, ErrDataTooLarge).
type dataReader struct {
	r     *connReader
	state int

	limited  bool
	n        int64 // Maximum bytes remaining
	tooLarge bool
}

const (
	stateBeginLine = iota // beginning of line; initial state; must be zero
	stateDot              // read . at beginning of line
	stateDotCR            // read .\r at beginning of line
	stateCR               // read \r (possibly at end of line)
	stateData             // reading data in middle of line
	stateEOF              // reached .\r\n end marker line
)

func newDataReader(c *Conn) *dataReader {
	dr := &dataReader{
		r: c.r,
	}

	if c.server.MaxMessageBytes > 0 {
		dr.limited = true
		dr.n = int64(c.server.MaxMessageBytes)
	}

	return dr
}

func (r *dataReader) Read(b []byte) (n int, err error) {
	if r.limited {
		if r.n <= 0 {
			return r.overLimit()
		}
		if int64(len(b)) > r.n {
			b = b[0:r.n]
		}
	}

	n, err = r.read(b)

	if r.limited {
		r.n -= int64(n)
	}
	return
}

// overLimit is Read once MaxMessageBytes bytes of the message were read:
// a message of exactly that size ends here (io.EOF), one more byte of
// message content is ErrDataTooLarge (and stays so).
func (r *dataReader) overLimit() (int, error) {
	if r.tooLarge {
		return 0, ErrDataTooLarge
	}
	var one [1]byte
	n, err := r.read(one[:])
	if n > 0 {
		r.tooLarge = true
		return 0, ErrDataTooLarge
	}
	return 0, err
}

func (r *dataReader) read(b []byte) (n int, err error) {
	cr := r.r
	for n < len(b) && r.state != stateEOF {
		if cr.r == cr.w {
			if n > 0 {
				// Hand over what we have rather than wait for more.
				return n, nil
			}
			if err = cr.fill(); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return n, err
			}
			continue
		}

		if r.state == stateData {
			in := cr.buf[cr.r:cr.w]
			if room := len(b) - n; len(in) > room {
				in = in[:room]
			}
			k, state := scanData(in)
			copy(b[n:], in[:k])
			n += k
			cr.r += k
			r.state = state
			continue
		}

		// One byte through the state machine (refDataReader's).
		c := cr.buf[cr.r]
		cr.r++
		switch r.state {
		case stateBeginLine:
			if c == '.' {
				r.state = stateDot
				continue
			}
			if c == '\r' {
				r.state = stateCR
				break
			}
			r.state = stateData
		case stateDot:
			if c == '\r' {
				r.state = stateDotCR
				continue
			}
			r.state = stateData
		case stateDotCR:
			if c == '\n' {
				r.state = stateEOF
				continue
			}
			r.state = stateData
		case stateCR:
			if c == '\n' {
				r.state = stateBeginLine
				break
			}
			r.state = stateData
		}
		b[n] = c
		n++
	}
	if err == nil && r.state == stateEOF {
		err = io.EOF
	}
	return
}

// scanData returns how many bytes of in, read in stateData, are message
// content that the state machine would pass on unchanged, and the state
// after them. It stops before a dot at the start of a line (the dot may
// have to be removed, or end the data) and at the end of in (where the
// state machine needs the next byte to decide). In the state machine's
// terms, from stateData:
//
//   - anything but CR stays in stateData;
//   - CR goes to stateCR, and from there LF goes to stateBeginLine while
//     anything else (a second CR too) goes back to stateData;
//   - from stateBeginLine, "." goes to stateDot (stop here), CR goes to
//     stateCR exactly as from stateData, anything else to stateData.
func scanData(in []byte) (int, int) {
	i := 0
	for {
		j := bytes.IndexByte(in[i:], '\r')
		if j < 0 {
			return len(in), stateData
		}
		i += j + 1 // through the CR: stateCR
		if i == len(in) {
			return i, stateCR
		}
		if in[i] != '\n' {
			i++ // CR and something else, even CR: stateData
			continue
		}
		i++ // CRLF: stateBeginLine
		if i == len(in) || in[i] == '.' {
			return i, stateBeginLine
		}
		// Not a dot: as if in stateData, CR included.
	}
}
