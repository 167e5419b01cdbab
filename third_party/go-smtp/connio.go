package smtp

import (
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Replies are not written one by one: writeResponse appends to wbuf, and
// flush writes everything held at once. flush runs before every read from
// the connection that may block (connReader.fill), before STARTTLS's
// handshake and before the connection is closed. So a client that
// pipelines (RFC 2920) gets the replies to a whole group of commands in one
// packet, as from Postfix, and no reply ever waits while the server waits
// for the client.

// writeResponse holds a reply for the next flush.
func (c *Conn) writeResponse(code int, enhCode EnhancedCode, text ...string) {
	// All responses must include an enhanced code, if it is missing - use
	// a generic code X.0.0.
	if enhCode == EnhancedCodeNotSet {
		cat := code / 100
		switch cat {
		case 2, 4, 5:
			enhCode = EnhancedCode{cat, 0, 0}
		default:
			enhCode = NoEnhancedCode
		}
	}

	c.countReply(code)

	// transform each single line with \n, into separate lines
	text = strings.Split(strings.Join(text, "\n"), "\n")

	c.wmu.Lock()
	defer c.wmu.Unlock()
	lastLineIndex := len(text) - 1
	for i := 0; i <= lastLineIndex; i++ {
		c.wbuf = strconv.AppendInt(c.wbuf, int64(code), 10)
		if i < lastLineIndex {
			c.wbuf = append(c.wbuf, '-')
		} else {
			c.wbuf = append(c.wbuf, ' ')
			if enhCode != NoEnhancedCode {
				c.wbuf = strconv.AppendInt(c.wbuf, int64(enhCode[0]), 10)
				c.wbuf = append(c.wbuf, '.')
				c.wbuf = strconv.AppendInt(c.wbuf, int64(enhCode[1]), 10)
				c.wbuf = append(c.wbuf, '.')
				c.wbuf = strconv.AppendInt(c.wbuf, int64(enhCode[2]), 10)
				c.wbuf = append(c.wbuf, ' ')
			}
		}
		// A CR in a text (a backend's message) would be a bare CR in the
		// reply stream.
		c.wbuf = append(c.wbuf, strings.Replace(text[i], "\r", " ", -1)...)
		c.wbuf = append(c.wbuf, '\r', '\n')
	}
}

// flush writes the replies held back, within WriteTimeout. After a write
// error, every flush returns it.
func (c *Conn) flush() error {
	conn := c.Conn()

	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil || len(c.wbuf) == 0 {
		return c.werr
	}
	if c.server.WriteTimeout != 0 {
		conn.SetWriteDeadline(time.Now().Add(c.server.WriteTimeout))
	}
	_, err := conn.Write(c.wbuf)
	if c.server.Debug != nil {
		c.server.Debug.Write(c.wbuf)
	}
	if cap(c.wbuf) > smallBufferSize {
		c.wbuf = nil // an idle session holds little memory
	} else {
		c.wbuf = c.wbuf[:0]
	}
	c.werr = err
	return err
}

// writeError writes err as the reply if it is an *SMTPError, else a reply
// with the given code and err's text. A 421 closes the connection after
// the reply (RFC 5321 section 3.8).
func (c *Conn) writeError(code int, enhCode EnhancedCode, err error) {
	var smtpErr *SMTPError
	if errors.As(err, &smtpErr) {
		c.writeResponse(smtpErr.Code, smtpErr.EnhancedCode, smtpErr.Message)
		if smtpErr.Code == 421 {
			c.Close()
		}
	} else {
		c.writeResponse(code, enhCode, err.Error())
	}
}

// readLine reads a command line (a command, or a response during AUTH)
// within ReadTimeout, without its line ending. A line is a command only
// once its LF arrived: a line cut off by the timeout or the end of the
// connection is an error, and is never executed.
//
// A line longer than MaxCommandLineLength is answered "500 5.5.2 Line too
// long" at once and skipped up to its LF; readLine then returns
// errLineTooLong. If the line goes on for more than maxDiscardLine bytes
// readLine returns errLineNeverEnds, and the connection is closed. Errors
// other than errLineTooLong are sticky.
func (c *Conn) readLine() (string, error) {
	if c.server.ReadTimeout != 0 {
		if err := c.Conn().SetReadDeadline(time.Now().Add(c.server.ReadTimeout)); err != nil {
			return "", err
		}
	}

	line, err := c.r.readLine(c.server.commandLineLimit())
	if err == errLineTooLong {
		c.protocolError(500, EnhancedCode{5, 5, 2}, "Line too long")
		if err := c.r.discardLine(); err != nil {
			return "", err
		}
		return "", errLineTooLong
	}
	if err != nil {
		return "", err
	}
	// As net/textproto's ReadLine: without the final LF or CRLF.
	n := len(line) - 1
	if n > 0 && line[n-1] == '\r' {
		n--
	}
	return string(line[:n]), nil
}

// readFailed ends the session after readLine failed. A timeout is answered
// (RFC 5321 section 4.5.3.2, wording of Postfix); the end of the
// connection is not. In every case the partial line, if any, is dropped.
func (c *Conn) readFailed(err error) error {
	var netErr net.Error
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF || errors.Is(err, net.ErrClosed):
		return nil
	case err == errLineNeverEnds:
		return nil // "Line too long" was answered
	case errors.As(err, &netErr) && netErr.Timeout():
		c.writeResponse(421, EnhancedCode{4, 4, 2}, c.server.Domain+" Error: timeout exceeded")
		return nil
	}
	c.writeResponse(421, EnhancedCode{4, 4, 0}, "Connection error, sorry")
	return err
}
