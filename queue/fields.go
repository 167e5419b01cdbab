package queue

import (
	"bytes"
	"errors"
	"fmt"
)

// maxLine is the longest header line without its CRLF (RFC 5322 section
// 2.1.1: 998 characters).
const maxLine = 998

// CheckFields returns an error unless b is a sequence of complete header
// fields that can be put on top of a message without changing its
// structure (RFC 5322 section 2.2): every line ends in CRLF and holds no
// other CR, LF or NUL, is at most 998 bytes, and either starts a field
// (a name of printable US-ASCII characters other than ':', then ':') or
// continues the previous line of b (SP or HTAB, then something other than
// white space). So the block can neither end the header section early (an
// empty line) nor glue itself onto a field it does not own (a leading
// continuation). An empty b is valid: nothing to add.
//
// Example: "Authentication-Results: mx.example; spf=pass\r\n\tsmtp.mailfrom=a@b.example\r\n".
func CheckFields(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if !bytes.HasSuffix(b, []byte("\r\n")) {
		return errors.New("header fields must end in CRLF")
	}
	for i, line := range bytes.Split(b[:len(b)-2], []byte("\r\n")) {
		if err := checkFieldLine(line, i == 0); err != nil {
			return fmt.Errorf("header line %d: %w", i+1, err)
		}
	}
	return nil
}

func checkFieldLine(line []byte, first bool) error {
	switch {
	case len(line) == 0:
		return errors.New("empty line (would end the header section)")
	case len(line) > maxLine:
		return fmt.Errorf("longer than %d bytes", maxLine)
	case bytes.ContainsAny(line, "\r\n\x00"):
		return errors.New("bare CR, LF or NUL")
	}
	if line[0] == ' ' || line[0] == '\t' {
		if first {
			return errors.New("continuation line without a field to continue")
		}
		if len(bytes.TrimLeft(line, " \t")) == 0 {
			return errors.New("white space only")
		}
		return nil
	}
	for i, c := range line {
		switch {
		case c == ':' && i > 0:
			return nil
		case c <= ' ' || c > '~' || c == ':':
			return fmt.Errorf("invalid field name %q", line[:i+1])
		}
	}
	return errors.New("no ':' after the field name")
}
