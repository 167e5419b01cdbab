package delivery

import (
	"bufio"
	"bytes"
	"errors"
	"io"

	"github.com/mxedge/mxedge/queue"
)

// maxHeaderScan bounds the header section read to decide needsUTF8; a
// longer one is taken as needing SMTPUTF8.
const maxHeaderScan = 1 << 20

// needsUTF8 reports whether msg, received with SMTPUTF8, really needs it
// at a next hop that lacks the extension: a non-ASCII sender or
// recipient, or a non-ASCII byte in the header section. Without any, the
// message goes without SMTPUTF8 (what Postfix does, smtputf8_enable:
// "the SMTPUTF8 request is ignored for mail that contains only ASCII");
// RFC 6531 section 3.4 leaves only a bounce for the others. The body is
// not looked at: 8-bit body text is BODY=8BITMIME's business.
func needsUTF8(msg *queue.Message, rcpts []string) (bool, error) {
	if !ascii(msg.From) {
		return true, nil
	}
	for _, r := range rcpts {
		if !ascii(r) {
			return true, nil
		}
	}
	f, err := msg.Open()
	if err != nil {
		return false, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(io.LimitReader(f, maxHeaderScan), 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if !ascii(string(line)) {
			return true, nil
		}
		if bytes.Equal(line, []byte("\r\n")) || bytes.Equal(line, []byte("\n")) {
			return false, nil // end of the header section
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue // a long line: read on
		case errors.Is(err, io.EOF):
			// The end of a message without a body, or maxHeaderScan.
			return msg.Size > maxHeaderScan, nil
		case err != nil:
			return false, err
		}
	}
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
