package smtp

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/ioutil"
	"net"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
)

// Number of errors we'll tolerate per connection before closing. Defaults to 3.
const errThreshold = 3

type Conn struct {
	conn   net.Conn // guarded by locker: replaced by STARTTLS
	r      *connReader
	server *Server
	helo   string

	// Number of errors witnessed on this connection (replies >= 400 when
	// Server.ErrorLimits is set, else syntax errors), and of junk commands
	// (Server.ErrorLimits.Junk).
	errCount  int
	junkCount int
	junkError bool // the current junk command was counted as an error

	session    Session
	locker     sync.Mutex
	binarymime bool

	// Replies not yet written (see flush), and the first write error.
	wmu  sync.Mutex
	wbuf []byte
	werr error

	bdatPipe      *io.PipeWriter
	bdatStatus    *statusCollector // used for BDAT on LMTP
	dataResult    chan error
	bytesReceived int64 // counts total size of chunks when BDAT is used

	fromReceived bool
	recipients   []string
	didAuth      bool
}

func newConn(c net.Conn, s *Server) *Conn {
	sc := &Conn{
		server: s,
		conn:   c,
	}

	sc.init()
	return sc
}

// init sets up the reader over the current connection (again after
// STARTTLS: nothing read before the handshake survives it).
func (c *Conn) init() {
	var rd io.Reader = c.conn
	if c.server.Debug != nil {
		rd = io.TeeReader(rd, c.server.Debug)
	}
	c.r = newConnReader(rd, c.server.commandLineLimit(), c.flush)
}

// Commands are dispatched to the appropriate handler functions.
func (c *Conn) handle(cmd string, arg string) {
	// If panic happens during command handling - send 421 response
	// and close connection.
	defer func() {
		if err := recover(); err != nil {
			c.writeResponse(421, EnhancedCode{4, 0, 0}, "Internal server error")
			c.Close()

			stack := debug.Stack()
			c.server.ErrorLog.Printf("panic serving %v: %v\n%s", c.Conn().RemoteAddr(), err, stack)
		}
	}()

	if cmd == "" {
		c.protocolError(500, EnhancedCode{5, 5, 2}, "Error: bad syntax")
		return
	}

	cmd = strings.ToUpper(cmd)
	switch cmd {
	case "SEND", "SOML", "SAML", "EXPN", "HELP", "TURN":
		if cmd == "HELP" {
			c.junk()
		}
		// These commands are not implemented in any state
		c.writeResponse(502, EnhancedCode{5, 5, 1}, fmt.Sprintf("%v command not implemented", cmd))
	case "HELO", "EHLO", "LHLO":
		lmtp := cmd == "LHLO"
		enhanced := lmtp || cmd == "EHLO"
		if c.server.LMTP && !lmtp {
			c.writeResponse(500, EnhancedCode{5, 5, 1}, "This is a LMTP server, use LHLO")
			return
		}
		if !c.server.LMTP && lmtp {
			c.writeResponse(500, EnhancedCode{5, 5, 1}, "This is not a LMTP server")
			return
		}
		c.handleGreet(enhanced, arg)
	case "MAIL":
		c.handleMail(arg)
	case "RCPT":
		c.handleRcpt(arg)
	case "VRFY":
		c.junk()
		c.writeResponse(252, EnhancedCode{2, 5, 0}, "Cannot VRFY user, but will accept message")
	case "NOOP":
		c.junk()
		c.writeResponse(250, EnhancedCode{2, 0, 0}, "Ok")
	case "RSET": // Reset session
		c.junk()
		c.reset()
		c.writeResponse(250, EnhancedCode{2, 0, 0}, "Ok")
	case "BDAT":
		c.handleBdat(arg)
	case "DATA":
		c.handleData(arg)
	case "QUIT":
		c.writeResponse(221, EnhancedCode{2, 0, 0}, "Bye")
		c.Close()
	case "AUTH":
		c.handleAuth(arg)
	case "STARTTLS":
		c.handleStartTLS(arg)
	default:
		c.junk()
		// The command is not echoed: it is client input, and may hold
		// control bytes.
		c.protocolError(500, EnhancedCode{5, 5, 2}, "Error: command not recognized")
	}
}

func (c *Conn) Server() *Server {
	return c.server
}

func (c *Conn) Session() Session {
	c.locker.Lock()
	defer c.locker.Unlock()
	return c.session
}

func (c *Conn) setSession(session Session) {
	c.locker.Lock()
	defer c.locker.Unlock()
	c.session = session
}

// Close writes the replies not yet sent and closes the connection. The
// session ends on the connection's own goroutine: a message being received
// with BDAT is aborted (its Data gets ErrDataReset) and waited for, then
// the Session is logged out.
func (c *Conn) Close() error {
	c.flush()
	return c.Conn().Close()
}

// teardown ends the session, on the connection's goroutine, after the
// command loop.
func (c *Conn) teardown() {
	c.flush()
	c.abortBdat()

	c.locker.Lock()
	session := c.session
	c.session = nil
	conn := c.conn
	c.locker.Unlock()

	if session != nil {
		session.Logout()
	}
	conn.Close()
	c.r.release()
}

// TLSConnectionState returns the connection's TLS connection state.
// Zero values are returned if the connection doesn't use TLS.
func (c *Conn) TLSConnectionState() (state tls.ConnectionState, ok bool) {
	tc, ok := c.Conn().(*tls.Conn)
	if !ok {
		return
	}
	return tc.ConnectionState(), true
}

func (c *Conn) Hostname() string {
	return c.helo
}

// Conn returns the connection (a *tls.Conn after STARTTLS). Writing to it
// directly bypasses the replies the server has not sent yet: return an
// *SMTPError from a Session method instead (a 421 closes the connection).
func (c *Conn) Conn() net.Conn {
	c.locker.Lock()
	defer c.locker.Unlock()
	return c.conn
}

func (c *Conn) authAllowed() bool {
	_, isTLS := c.TLSConnectionState()
	return isTLS || c.server.AllowInsecureAuth
}

// protocolError writes errors responses and closes the connection once too many
// have occurred.
func (c *Conn) protocolError(code int, ec EnhancedCode, msg string) {
	c.writeResponse(code, ec, msg)
	if c.server.ErrorLimits.Hard > 0 {
		return // counted by writeResponse
	}

	c.errCount++
	if c.errCount > errThreshold {
		c.writeResponse(500, EnhancedCode{5, 5, 1}, "Too many errors. Quiting now")
		c.Close()
	}
}

// junk counts a junk command (NOOP, RSET, VRFY, HELP, unknown); beyond
// ErrorLimits.Junk each one is an error. A junk command whose reply is an
// error anyway counts once: the extra error is taken back by the reply.
func (c *Conn) junk() {
	l := c.server.ErrorLimits
	if l.Hard == 0 || l.Junk == 0 {
		return
	}
	c.junkCount++
	if c.junkCount > l.Junk {
		c.errCount++
		c.junkError = true
	}
}

// countReply counts a reply of code towards the error limits, and waits
// ErrorLimits.Sleep first once the session is over the soft limit.
func (c *Conn) countReply(code int) {
	l := c.server.ErrorLimits
	if l.Hard == 0 {
		return
	}
	before := c.errCount // errors before this command's
	if c.junkError {
		before--
	}
	if l.Soft > 0 && l.Sleep > 0 && before >= l.Soft && before < l.Hard {
		time.Sleep(l.Sleep)
	}
	if code >= 400 {
		if c.junkError {
			c.junkError = false // counted by junk already
		} else {
			c.errCount++
		}
	} else {
		c.junkError = false
	}
}

// delivered starts the error counts again after a message was accepted.
func (c *Conn) delivered(code int) {
	if code/100 == 2 {
		c.errCount, c.junkCount = 0, 0
	}
}

// holdErrors is how many errors beyond ErrorLimits.Hard a transaction
// with accepted recipients may make before it is cut off all the same
// (Postfix's smtpd_recipient_limit default: a list server's RCPTs).
const holdErrors = 1000

// tooManyErrors reports whether the session reached ErrorLimits.Hard; if
// so it has answered 421 and the session must end. A transaction that
// has accepted recipients is not cut: the limit waits for its end (DATA,
// RSET, MAIL), so that recipients already answered 250 are not lost with
// the connection, up to holdErrors more errors.
func (c *Conn) tooManyErrors() bool {
	l := c.server.ErrorLimits
	if l.Hard == 0 || c.errCount < l.Hard {
		return false
	}
	if len(c.recipients) > 0 && c.errCount < l.Hard+holdErrors {
		return false
	}
	c.writeResponse(421, EnhancedCode{4, 7, 0}, c.server.Domain+" Error: too many errors")
	return true
}

// GREET state -> waiting for HELO
func (c *Conn) handleGreet(enhanced bool, arg string) {
	domain, err := parseHelloArgument(arg)
	if err == errHelloControl {
		// Never echoed, and never handed to the backend (which would put
		// it into a Received header).
		c.writeResponse(501, EnhancedCode{5, 5, 2}, "Invalid domain name")
		return
	}
	if err != nil {
		c.writeResponse(501, EnhancedCode{5, 5, 2}, "Syntax: EHLO hostname")
		return
	}
	// c.helo is populated before NewSession so
	// NewSession can access it via Conn.Hostname.
	c.helo = domain

	// RFC 5321: "An EHLO command MAY be issued by a client later in the session"
	if c.session != nil {
		// RFC 5321: "... the SMTP server MUST clear all buffers
		// and reset the state exactly as if a RSET command has been issued."
		c.reset()
	} else {
		sess, err := c.server.Backend.NewSession(c)
		if err != nil {
			c.helo = ""
			c.writeError(451, EnhancedCode{4, 0, 0}, err)
			return
		}

		c.setSession(sess)
	}

	// RFC 5321 section 4.1.1.1: the reply names the server.
	if !enhanced {
		c.writeResponse(250, NoEnhancedCode, c.server.Domain)
		return
	}

	caps := []string{
		"PIPELINING",
		"8BITMIME",
		"ENHANCEDSTATUSCODES",
		"CHUNKING",
	}
	if _, isTLS := c.TLSConnectionState(); c.server.TLSConfig != nil && !isTLS {
		caps = append(caps, "STARTTLS")
	}
	if c.authAllowed() {
		mechs := c.authMechanisms()

		authCap := "AUTH"
		for _, name := range mechs {
			authCap += " " + name
		}

		if len(mechs) > 0 {
			caps = append(caps, authCap)
		}
	}
	if c.server.EnableSMTPUTF8 {
		caps = append(caps, "SMTPUTF8")
	}
	if _, isTLS := c.TLSConnectionState(); isTLS && c.server.EnableREQUIRETLS {
		caps = append(caps, "REQUIRETLS")
	}
	if c.server.EnableBINARYMIME {
		caps = append(caps, "BINARYMIME")
	}
	if c.server.EnableDSN {
		caps = append(caps, "DSN")
	}
	if c.server.MaxMessageBytes > 0 {
		caps = append(caps, fmt.Sprintf("SIZE %v", c.server.MaxMessageBytes))
	} else {
		caps = append(caps, "SIZE")
	}
	if c.server.MaxRecipients > 0 {
		caps = append(caps, fmt.Sprintf("LIMITS RCPTMAX=%v", c.server.MaxRecipients))
	}
	if c.server.EnableRRVS {
		caps = append(caps, "RRVS")
	}
	if c.server.EnableDELIVERBY {
		if c.server.MinimumDeliverByTime == 0 {
			caps = append(caps, "DELIVERBY")
		} else {
			caps = append(caps, fmt.Sprintf("DELIVERBY %d", int(c.server.MinimumDeliverByTime.Seconds())))
		}
	}
	if c.server.EnableMTPRIORITY {
		if c.server.MtPriorityProfile == PriorityUnspecified {
			caps = append(caps, "MT-PRIORITY")
		} else {
			caps = append(caps, fmt.Sprintf("MT-PRIORITY %s", c.server.MtPriorityProfile))
		}
	}

	args := []string{c.server.Domain}
	args = append(args, caps...)
	c.writeResponse(250, NoEnhancedCode, args...)
}

// READY state -> waiting for MAIL
func (c *Conn) handleMail(arg string) {
	// RFC 5321 section 4.1.4: MAIL needs EHLO/HELO first and starts a
	// transaction only outside of one; otherwise 503 (section 4.3.2).
	if c.helo == "" {
		c.writeResponse(503, EnhancedCode{5, 5, 1}, "Error: send HELO/EHLO first")
		return
	}
	if c.fromReceived || c.bdatPipe != nil {
		c.writeResponse(503, EnhancedCode{5, 5, 1}, "Error: nested MAIL command")
		return
	}

	arg, ok := cutPrefixFold(arg, "FROM:")
	if !ok {
		c.writeResponse(501, EnhancedCode{5, 5, 2}, "Syntax: MAIL FROM:<address>")
		return
	}

	p := parser{s: strings.TrimSpace(arg)}
	from, err := p.parseReversePath()
	if err != nil {
		c.writeResponse(501, EnhancedCode{5, 1, 7}, "Bad sender address syntax")
		return
	}
	args, err := parseArgs(p.s)
	if err != nil {
		c.writeResponse(501, EnhancedCode{5, 5, 4}, "Unable to parse MAIL ESMTP parameters")
		return
	}

	opts := &MailOptions{}

	c.binarymime = false
	// This is where the Conn may put BODY=8BITMIME, but we already
	// read the DATA as bytes, so it does not effect our processing.
	for key, value := range args {
		switch key {
		case "SIZE":
			size, err := strconv.ParseUint(value, 10, 32)
			if err != nil {
				c.writeResponse(501, EnhancedCode{5, 5, 4}, "Unable to parse SIZE as an integer")
				return
			}

			if c.server.MaxMessageBytes > 0 && int64(size) > c.server.MaxMessageBytes {
				c.writeResponse(552, EnhancedCode{5, 3, 4}, "Message size exceeds fixed limit")
				return
			}

			opts.Size = int64(size)
		case "SMTPUTF8":
			if !c.server.EnableSMTPUTF8 {
				c.writeResponse(555, EnhancedCode{5, 5, 4}, "Unsupported option: SMTPUTF8")
				return
			}
			opts.UTF8 = true
		case "REQUIRETLS":
			if !c.server.EnableREQUIRETLS {
				c.writeResponse(555, EnhancedCode{5, 5, 4}, "Unsupported option: REQUIRETLS")
				return
			}
			opts.RequireTLS = true
		case "BODY":
			value = strings.ToUpper(value)
			switch BodyType(value) {
			case BodyBinaryMIME:
				if !c.server.EnableBINARYMIME {
					c.writeResponse(555, EnhancedCode{5, 5, 4}, "Unsupported option: BODY=BINARYMIME")
					return
				}
				c.binarymime = true
			case Body7Bit, Body8BitMIME:
				// This space is intentionally left blank
			default:
				c.writeResponse(501, EnhancedCode{5, 5, 4}, "Unknown BODY value")
				return
			}
			opts.Body = BodyType(value)
		case "RET":
			if !c.server.EnableDSN {
				c.writeResponse(555, EnhancedCode{5, 5, 4}, "Unsupported option: RET")
				return
			}
			value = strings.ToUpper(value)
			switch DSNReturn(value) {
			case DSNReturnFull, DSNReturnHeaders:
				// This space is intentionally left blank
			default:
				c.writeResponse(501, EnhancedCode{5, 5, 4}, "Unknown RET value")
				return
			}
			opts.Return = DSNReturn(value)
		case "ENVID":
			if !c.server.EnableDSN {
				c.writeResponse(555, EnhancedCode{5, 5, 4}, "Unsupported option: ENVID")
				return
			}
			value, err := decodeXtext(value)
			if err != nil || value == "" || !isPrintableASCII(value) {
				c.writeResponse(501, EnhancedCode{5, 5, 4}, "Malformed ENVID parameter value")
				return
			}
			opts.EnvelopeID = value
		case "AUTH":
			value, err := decodeXtext(value)
			if err != nil || value == "" {
				c.writeResponse(501, EnhancedCode{5, 5, 4}, "Malformed AUTH parameter value")
				return
			}
			if value == "<>" {
				value = ""
			} else {
				p := parser{s: value}
				value, err = p.parseMailbox()
				if err != nil || p.s != "" {
					c.writeResponse(501, EnhancedCode{5, 5, 4}, "Malformed AUTH parameter mailbox")
					return
				}
			}
			opts.Auth = &value
		default:
			// RFC 5321 section 4.1.1.11.
			c.writeResponse(555, EnhancedCode{5, 5, 4}, "Unsupported option: "+printableParam(key))
			return
		}
	}

	if c.sessionResult(c.Session().Mail(from, opts), 250, EnhancedCode{2, 1, 0}, "Ok") {
		c.fromReceived = true
	}
}

// sessionResult writes the reply to a command that a Session method
// decided, and reports whether the command succeeded. A nil error is the
// success reply given; an *SMTPError is sent as it is, and counts as
// success if its code is 2xx (so that a backend chooses its own success
// reply); a 421 closes the connection after it is sent (RFC 5321 section
// 3.8). Any other error is a 451 with the error's text.
func (c *Conn) sessionResult(err error, code int, enh EnhancedCode, msg string) bool {
	if err == nil {
		c.writeResponse(code, enh, msg)
		return true
	}
	c.writeError(451, EnhancedCode{4, 0, 0}, err)
	var smtpErr *SMTPError
	return errors.As(err, &smtpErr) && smtpErr.Code/100 == 2
}

// printableParam makes an ESMTP parameter name safe to quote in a reply.
func printableParam(s string) string {
	if len(s) > 32 {
		s = s[:32]
	}
	b := []byte(s)
	for i, ch := range b {
		if ch < ' ' || ch > '~' {
			b[i] = '?'
		}
	}
	return string(b)
}

// This regexp matches 'hexchar' token defined in
// https://tools.ietf.org/html/rfc4954#section-8 however it is intentionally
// relaxed by requiring only '+' to be present.  It allows us to detect
// malformed values such as +A or +HH and report them appropriately.
var hexcharRe = regexp.MustCompile(`\+[0-9A-F]?[0-9A-F]?`)

func decodeXtext(val string) (string, error) {
	if !strings.Contains(val, "+") {
		return val, nil
	}

	var replaceErr error
	decoded := hexcharRe.ReplaceAllStringFunc(val, func(match string) string {
		if len(match) != 3 {
			replaceErr = errors.New("incomplete hexchar")
			return ""
		}
		char, err := strconv.ParseInt(match, 16, 8)
		if err != nil {
			replaceErr = err
			return ""
		}

		return string(rune(char))
	})
	if replaceErr != nil {
		return "", replaceErr
	}

	return decoded, nil
}

// This regexp matches 'EmbeddedUnicodeChar' token defined in
// https://datatracker.ietf.org/doc/html/rfc6533.html#section-3
// however it is intentionally relaxed by requiring only '\x{HEX}' to be
// present.  It also matches disallowed characters in QCHAR and QUCHAR defined
// in above.
// So it allows us to detect malformed values and report them appropriately.
var eUOrDCharRe = regexp.MustCompile(`\\x[{][0-9A-F]+[}]|[[:cntrl:] \\+=]`)

// Decodes the utf-8-addr-xtext or the utf-8-addr-unitext form.
func decodeUTF8AddrXtext(val string) (string, error) {
	var replaceErr error
	decoded := eUOrDCharRe.ReplaceAllStringFunc(val, func(match string) string {
		if len(match) == 1 {
			replaceErr = errors.New("disallowed character:" + match)
			return ""
		}

		hexpoint := match[3 : len(match)-1]
		char, err := strconv.ParseUint(hexpoint, 16, 21)
		if err != nil {
			replaceErr = err
			return ""
		}
		switch len(hexpoint) {
		case 2:
			switch {
			// all xtext-specials
			case 0x01 <= char && char <= 0x09 ||
				0x11 <= char && char <= 0x19 ||
				char == 0x10 || char == 0x20 ||
				char == 0x2B || char == 0x3D || char == 0x7F:
			// 2-digit forms
			case char == 0x5C || 0x80 <= char && char <= 0xFF:
				// This space is intentionally left blank
			default:
				replaceErr = errors.New("illegal hexpoint:" + hexpoint)
				return ""
			}
		// 3-digit forms
		case 3:
			switch {
			case 0x100 <= char && char <= 0xFFF:
				// This space is intentionally left blank
			default:
				replaceErr = errors.New("illegal hexpoint:" + hexpoint)
				return ""
			}
		// 4-digit forms excluding surrogate
		case 4:
			switch {
			case 0x1000 <= char && char <= 0xD7FF:
			case 0xE000 <= char && char <= 0xFFFF:
				// This space is intentionally left blank
			default:
				replaceErr = errors.New("illegal hexpoint:" + hexpoint)
				return ""
			}
		// 5-digit forms
		case 5:
			switch {
			case 0x1_0000 <= char && char <= 0xF_FFFF:
				// This space is intentionally left blank
			default:
				replaceErr = errors.New("illegal hexpoint:" + hexpoint)
				return ""
			}
		// 6-digit forms
		case 6:
			switch {
			case 0x10_0000 <= char && char <= 0x10_FFFF:
				// This space is intentionally left blank
			default:
				replaceErr = errors.New("illegal hexpoint:" + hexpoint)
				return ""
			}
		// the other invalid forms
		default:
			replaceErr = errors.New("illegal hexpoint:" + hexpoint)
			return ""
		}

		return string(rune(char))
	})
	if replaceErr != nil {
		return "", replaceErr
	}

	return decoded, nil
}

func decodeTypedAddress(val string) (DSNAddressType, string, error) {
	tv := strings.SplitN(val, ";", 2)
	if len(tv) != 2 || tv[0] == "" || tv[1] == "" {
		return "", "", errors.New("bad address")
	}
	aType, aAddr := strings.ToUpper(tv[0]), tv[1]

	var err error
	switch DSNAddressType(aType) {
	case DSNAddressTypeRFC822:
		aAddr, err = decodeXtext(aAddr)
		if err == nil && !isPrintableASCII(aAddr) {
			err = errors.New("illegal address:" + aAddr)
		}
	case DSNAddressTypeUTF8:
		aAddr, err = decodeUTF8AddrXtext(aAddr)
	default:
		err = errors.New("unknown address type:" + aType)
	}
	if err != nil {
		return "", "", err
	}

	return DSNAddressType(aType), aAddr, nil
}

func encodeXtext(raw string) string {
	var out strings.Builder
	out.Grow(len(raw))

	for _, ch := range raw {
		switch {
		case ch >= '!' && ch <= '~' && ch != '+' && ch != '=':
			// printable non-space US-ASCII except '+' and '='
			out.WriteRune(ch)
		default:
			out.WriteRune('+')
			out.WriteString(strings.ToUpper(strconv.FormatInt(int64(ch), 16)))
		}
	}
	return out.String()
}

// Encodes raw string to the utf-8-addr-xtext form in RFC 6533.
func encodeUTF8AddrXtext(raw string) string {
	var out strings.Builder
	out.Grow(len(raw))

	for _, ch := range raw {
		switch {
		case ch >= '!' && ch <= '~' && ch != '+' && ch != '=':
			// printable non-space US-ASCII except '+' and '='
			out.WriteRune(ch)
		default:
			out.WriteRune('\\')
			out.WriteRune('x')
			out.WriteRune('{')
			out.WriteString(strings.ToUpper(strconv.FormatInt(int64(ch), 16)))
			out.WriteRune('}')
		}
	}
	return out.String()
}

// Encodes raw string to the utf-8-addr-unitext form in RFC 6533.
func encodeUTF8AddrUnitext(raw string) string {
	var out strings.Builder
	out.Grow(len(raw))

	for _, ch := range raw {
		switch {
		case ch >= '!' && ch <= '~' && ch != '+' && ch != '=':
			// printable non-space US-ASCII except '+' and '='
			out.WriteRune(ch)
		case ch <= '\x7F':
			// other ASCII: CTLs, space and specials
			out.WriteRune('\\')
			out.WriteRune('x')
			out.WriteRune('{')
			out.WriteString(strings.ToUpper(strconv.FormatInt(int64(ch), 16)))
			out.WriteRune('}')
		default:
			// UTF-8 non-ASCII
			out.WriteRune(ch)
		}
	}
	return out.String()
}

func isPrintableASCII(val string) bool {
	for _, ch := range val {
		if ch < ' ' || '~' < ch {
			return false
		}
	}
	return true
}

// MAIL state -> waiting for RCPTs followed by DATA
func (c *Conn) handleRcpt(arg string) {
	// RFC 5321 section 4.1.4: RCPT only after MAIL (503, section 4.3.2).
	if !c.fromReceived {
		c.writeResponse(503, EnhancedCode{5, 5, 1}, "Error: need MAIL command")
		return
	}
	if c.bdatPipe != nil {
		c.writeResponse(503, EnhancedCode{5, 5, 1}, "Error: RCPT not allowed during message transfer")
		return
	}

	arg, ok := cutPrefixFold(arg, "TO:")
	if !ok {
		c.writeResponse(501, EnhancedCode{5, 5, 2}, "Syntax: RCPT TO:<address>")
		return
	}

	p := parser{s: strings.TrimSpace(arg)}
	recipient, err := p.parseForwardPath()
	if err != nil {
		c.writeResponse(501, EnhancedCode{5, 1, 3}, "Bad recipient address syntax")
		return
	}

	if c.server.MaxRecipients > 0 && len(c.recipients) >= c.server.MaxRecipients {
		c.writeResponse(452, EnhancedCode{4, 5, 3}, fmt.Sprintf("Maximum limit of %v recipients reached", c.server.MaxRecipients))
		return
	}

	args, err := parseArgs(p.s)
	if err != nil {
		c.writeResponse(501, EnhancedCode{5, 5, 4}, "Unable to parse RCPT ESMTP parameters")
		return
	}

	opts := &RcptOptions{}

	for key, value := range args {
		switch key {
		case "NOTIFY":
			if !c.server.EnableDSN {
				c.writeResponse(555, EnhancedCode{5, 5, 4}, "Unsupported option: NOTIFY")
				return
			}
			notify := []DSNNotify{}
			for _, val := range strings.Split(value, ",") {
				notify = append(notify, DSNNotify(strings.ToUpper(val)))
			}
			if err := checkNotifySet(notify); err != nil {
				c.writeResponse(501, EnhancedCode{5, 5, 4}, "Malformed NOTIFY parameter value")
				return
			}
			opts.Notify = notify
		case "ORCPT":
			if !c.server.EnableDSN {
				c.writeResponse(555, EnhancedCode{5, 5, 4}, "Unsupported option: ORCPT")
				return
			}
			aType, aAddr, err := decodeTypedAddress(value)
			if err != nil || aAddr == "" {
				c.writeResponse(501, EnhancedCode{5, 5, 4}, "Malformed ORCPT parameter value")
				return
			}
			opts.OriginalRecipientType = aType
			opts.OriginalRecipient = aAddr
		case "RRVS":
			if !c.server.EnableRRVS {
				c.writeResponse(555, EnhancedCode{5, 5, 4}, "Unsupported option: RRVS")
				return
			}
			value, _, _ = strings.Cut(value, ";") // discard the no-support action
			rrvsTime, err := time.Parse(time.RFC3339, value)
			if err != nil {
				c.writeResponse(501, EnhancedCode{5, 5, 4}, "Malformed RRVS parameter value")
				return
			}
			opts.RequireRecipientValidSince = rrvsTime
		case "BY":
			if !c.server.EnableDELIVERBY {
				c.writeResponse(555, EnhancedCode{5, 5, 4}, "Unsupported option: BY")
				return
			}
			deliverBy := parseDeliverByArgument(value)
			if deliverBy == nil {
				c.writeResponse(501, EnhancedCode{5, 5, 4}, "Malformed BY parameter value")
				return
			}
			if c.server.MinimumDeliverByTime != 0 &&
				deliverBy.Mode == DeliverByReturn &&
				deliverBy.Time < c.server.MinimumDeliverByTime {
				c.writeResponse(501, EnhancedCode{5, 5, 4}, "BY parameter is below server minimum")
				return
			}
			opts.DeliverBy = deliverBy
		case "MT-PRIORITY":
			if !c.server.EnableMTPRIORITY {
				c.writeResponse(555, EnhancedCode{5, 5, 4}, "Unsupported option: MT-PRIORITY")
				return
			}
			mtPriority, err := strconv.Atoi(value)
			if err != nil {
				c.writeResponse(501, EnhancedCode{5, 5, 4}, "Malformed MT-PRIORITY parameter value")
				return
			}
			if mtPriority < -9 || mtPriority > 9 {
				c.writeResponse(501, EnhancedCode{5, 5, 4}, "MT-PRIORITY is outside valid range")
				return
			}
			opts.MTPriority = &mtPriority
		default:
			// RFC 5321 section 4.1.1.11.
			c.writeResponse(555, EnhancedCode{5, 5, 4}, "Unsupported option: "+printableParam(key))
			return
		}
	}

	if c.sessionResult(c.Session().Rcpt(recipient, opts), 250, EnhancedCode{2, 1, 5}, "Ok") {
		c.recipients = append(c.recipients, recipient)
	}
}

func checkNotifySet(values []DSNNotify) error {
	if len(values) == 0 {
		return errors.New("Malformed NOTIFY parameter value")
	}

	seen := map[DSNNotify]struct{}{}
	for _, val := range values {
		switch val {
		case DSNNotifyNever, DSNNotifyDelayed, DSNNotifyFailure, DSNNotifySuccess:
			if _, ok := seen[val]; ok {
				return errors.New("Malformed NOTIFY parameter value")
			}
		default:
			return errors.New("Malformed NOTIFY parameter value")
		}
		seen[val] = struct{}{}
	}
	if _, ok := seen[DSNNotifyNever]; ok && len(seen) > 1 {
		return errors.New("Malformed NOTIFY parameter value")
	}

	return nil
}

func (c *Conn) handleAuth(arg string) {
	if c.helo == "" {
		c.writeResponse(503, EnhancedCode{5, 5, 1}, "Error: send HELO/EHLO first")
		return
	}
	if _, ok := c.Session().(AuthSession); !ok {
		// A listener without AUTH (an MX): as Postfix says it.
		c.writeResponse(503, EnhancedCode{5, 5, 1}, "Error: authentication not enabled")
		return
	}
	if c.didAuth {
		c.writeResponse(503, EnhancedCode{5, 5, 1}, "Already authenticated")
		return
	}
	if c.fromReceived {
		// RFC 4954 section 4: AUTH is not permitted during a transaction.
		c.writeResponse(503, EnhancedCode{5, 5, 1}, "Error: AUTH not allowed during a mail transaction")
		return
	}

	parts := strings.Fields(arg)
	if len(parts) == 0 {
		c.writeResponse(501, EnhancedCode{5, 5, 4}, "Syntax: AUTH mechanism [initial-response]")
		return
	}

	if !c.authAllowed() {
		// RFC 4954 section 6: 538 5.7.11, encryption required for the
		// requested mechanism (every mechanism: none is offered before TLS).
		c.writeResponse(538, EnhancedCode{5, 7, 11}, "Encryption required for requested authentication mechanism")
		return
	}

	mechanism := strings.ToUpper(parts[0])

	// Parse client initial response if there is one
	var ir []byte
	if len(parts) > 1 {
		var err error
		ir, err = decodeSASLResponse(parts[1])
		if err != nil {
			// RFC 4954 section 4: a response that cannot be decoded is 501.
			c.writeResponse(501, EnhancedCode{5, 5, 2}, "Invalid base64 data")
			return
		}
	}

	sasl, err := c.auth(mechanism)
	if err != nil {
		c.writeError(454, EnhancedCode{4, 7, 0}, err)
		return
	}

	response := ir
	for {
		challenge, done, err := sasl.Next(response)
		if err != nil {
			c.writeError(454, EnhancedCode{4, 7, 0}, err)
			return
		}

		if done {
			break
		}

		encoded := ""
		if len(challenge) > 0 {
			encoded = base64.StdEncoding.EncodeToString(challenge)
		}
		c.writeResponse(334, NoEnhancedCode, encoded)

		encoded, err = c.readLine()
		if err != nil {
			// A too long line was answered; any other error is sticky and
			// ends the session in the command loop.
			return
		}

		if encoded == "*" {
			// RFC 4954 section 4: the client cancels with "*", 501.
			c.writeResponse(501, EnhancedCode{5, 7, 0}, "Authentication cancelled")
			return
		}

		response, err = decodeSASLResponse(encoded)
		if err != nil {
			c.writeResponse(501, EnhancedCode{5, 5, 2}, "Invalid base64 data")
			return
		}
	}

	c.writeResponse(235, EnhancedCode{2, 0, 0}, "Authentication succeeded")
	c.didAuth = true
}

func decodeSASLResponse(s string) ([]byte, error) {
	if s == "=" {
		return []byte{}, nil
	}
	return base64.StdEncoding.DecodeString(s)
}

func (c *Conn) authMechanisms() []string {
	if authSession, ok := c.Session().(AuthSession); ok {
		return authSession.AuthMechanisms()
	}
	return nil
}

func (c *Conn) auth(mech string) (sasl.Server, error) {
	if authSession, ok := c.Session().(AuthSession); ok {
		return authSession.Auth(mech)
	}
	return nil, ErrAuthUnknownMechanism
}

func (c *Conn) handleStartTLS(arg string) {
	if arg != "" {
		c.writeResponse(501, EnhancedCode{5, 5, 4}, "Syntax: STARTTLS")
		return
	}
	if _, isTLS := c.TLSConnectionState(); isTLS {
		c.writeResponse(502, EnhancedCode{5, 5, 1}, "Already running in TLS")
		return
	}

	if c.server.TLSConfig == nil {
		c.writeResponse(502, EnhancedCode{5, 5, 1}, "TLS not supported")
		return
	}

	// A message being received with BDAT ends here (RFC 3207 section 4.2
	// resets the session); wait for the backend before the handshake.
	c.abortBdat()

	c.writeResponse(220, EnhancedCode{2, 0, 0}, "Ready to start TLS")
	if err := c.flush(); err != nil {
		return
	}
	// CVE-2011-0411: whatever the client sent after STARTTLS, before the
	// handshake, is plaintext anyone on the path could have inserted. It
	// is thrown away, never read as commands after the handshake.
	c.r.discardBuffered()

	// Upgrade to TLS
	conn := c.Conn()
	tlsConn := tls.Server(conn, c.server.TLSConfig)
	if d := c.server.ReadTimeout; d != 0 {
		conn.SetReadDeadline(time.Now().Add(d))
	}
	if d := c.server.WriteTimeout; d != 0 {
		conn.SetWriteDeadline(time.Now().Add(d))
	}
	if err := tlsConn.Handshake(); err != nil {
		// The stream is in an unknown state (part of a handshake): there
		// is no way to go on in plaintext.
		conn.Close()
		return
	}

	c.locker.Lock()
	c.conn = tlsConn
	c.locker.Unlock()
	c.init()

	// Reset all state and close the previous Session.
	// This is different from just calling reset() since we want the Backend to
	// be able to see the information about TLS connection in the
	// ConnectionState object passed to it.
	if session := c.Session(); session != nil {
		session.Logout()
		c.setSession(nil)
	}
	c.helo = ""
	c.didAuth = false
	c.reset()
}

// DATA
func (c *Conn) handleData(arg string) {
	if arg != "" {
		c.writeResponse(501, EnhancedCode{5, 5, 4}, "DATA command should not have any arguments")
		return
	}
	if c.bdatPipe != nil {
		c.writeResponse(503, EnhancedCode{5, 5, 1}, "Error: DATA not allowed during message transfer")
		return
	}
	if c.binarymime {
		c.writeResponse(503, EnhancedCode{5, 5, 1}, "Error: DATA not allowed for BINARYMIME messages, use BDAT")
		return
	}

	// RFC 5321 sections 4.1.4, 4.3.2: DATA only after RCPT.
	if !c.fromReceived || len(c.recipients) == 0 {
		c.writeResponse(503, EnhancedCode{5, 5, 1}, "Error: need RCPT command")
		return
	}

	// We have recipients, go to accept data. The reply goes out before the
	// data reader waits for the client (connReader.fill).
	c.writeResponse(354, NoEnhancedCode, "End data with <CR><LF>.<CR><LF>")

	defer c.reset()
	c.r.useLarge()
	defer c.r.useSmallSoon()

	if c.server.LMTP {
		c.handleDataLMTP()
		return
	}

	r := newDataReader(c)
	err := c.Session().Data(r)
	r.limited = false
	// Make sure all the data has been consumed.
	if _, rerr := io.Copy(ioutil.Discard, r); rerr != nil {
		// The stream broke (timeout, connection closed): the message is
		// not complete, whatever Data said. The read error is sticky: the
		// command loop answers it and closes, so nothing that was meant
		// to be message data is ever read as a command.
		return
	}
	code, enhancedCode, msg := dataErrorToStatus(err)
	c.writeResponse(code, enhancedCode, msg)
	c.delivered(code)
	if code == 421 {
		c.Close()
	}
}

func (c *Conn) handleBdat(arg string) {
	args := strings.Fields(arg)
	if len(args) == 0 {
		c.writeResponse(501, EnhancedCode{5, 5, 4}, "Missing chunk size argument")
		return
	}
	if len(args) > 2 {
		c.writeResponse(501, EnhancedCode{5, 5, 4}, "Too many arguments")
		return
	}

	last := false
	if len(args) == 2 {
		if !strings.EqualFold(args[1], "LAST") {
			c.writeResponse(501, EnhancedCode{5, 5, 4}, "Unknown BDAT argument")
			return
		}
		last = true
	}

	// ParseUint instead of Atoi so we will not accept negative values.
	size, err := strconv.ParseUint(args[0], 10, 32)
	if err != nil {
		c.writeResponse(501, EnhancedCode{5, 5, 4}, "Malformed size argument")
		return
	}

	// A read error while a chunk is skipped is sticky: the command loop
	// ends the session, the rest of the chunk is never read as commands.
	if !c.fromReceived || len(c.recipients) == 0 {
		c.writeResponse(503, EnhancedCode{5, 5, 1}, "Error: need RCPT command")
		// The chunk follows the command even when the command is rejected.
		c.r.discardN(int64(size))
		return
	}

	if c.server.MaxMessageBytes != 0 && c.bytesReceived+int64(size) > c.server.MaxMessageBytes {
		c.writeResponse(552, EnhancedCode{5, 3, 4}, "Message size exceeds fixed limit")

		// Discard chunk itself without passing it to backend.
		c.r.discardN(int64(size))

		c.reset()
		return
	}

	if c.bdatStatus == nil && c.server.LMTP {
		c.bdatStatus = c.createStatusCollector()
	}

	if c.bdatPipe == nil {
		var r *io.PipeReader
		r, c.bdatPipe = io.Pipe()

		c.dataResult = make(chan error, 1)

		session, status, recipients := c.Session(), c.bdatStatus, c.recipients
		go func() {
			defer func() {
				if err := recover(); err != nil {
					c.handlePanic(err, status)

					c.dataResult <- errPanic
					r.CloseWithError(errPanic)
				}
			}()

			var err error
			if !c.server.LMTP {
				err = session.Data(r)
			} else {
				lmtpSession, ok := session.(LMTPSession)
				if !ok {
					err = session.Data(r)
					for _, rcpt := range recipients {
						status.SetStatus(rcpt, err)
					}
				} else {
					err = lmtpSession.LMTPData(r, status)
				}
			}

			c.dataResult <- err
			r.CloseWithError(err)
		}()
	}

	c.r.useLarge()
	defer c.r.useSmallSoon()

	rest, readErr, writeErr := c.copyChunk(int64(size))
	if readErr != nil {
		// The client is gone or timed out mid-chunk: the command loop
		// ends the session on the sticky error (teardown aborts the
		// message).
		return
	}
	if writeErr != nil {
		// Backend might return an error early using CloseWithError without consuming
		// the whole chunk.
		if c.r.discardN(rest) != nil {
			return
		}
		if err := c.endBdat(); err != nil {
			writeErr = err
		}
		code, enh, msg := dataErrorToStatus(writeErr)
		c.writeResponse(code, enh, msg)

		if writeErr == errPanic || code == 421 {
			c.Close()
		}

		c.reset()
		return
	}

	c.bytesReceived += int64(size)

	if last {
		c.bdatPipe.Close()

		err := c.endBdat()

		if c.server.LMTP {
			c.bdatStatus.fillRemaining(err)
			for i, rcpt := range c.recipients {
				code, enchCode, msg := dataErrorToStatus(<-c.bdatStatus.status[i])
				c.writeResponse(code, enchCode, "<"+rcpt+"> "+msg)
			}
		} else {
			code, enh, msg := dataErrorToStatus(err)
			c.writeResponse(code, enh, msg)
			c.delivered(code)
			if code == 421 {
				c.Close()
			}
		}

		if err == errPanic {
			c.Close()
			return
		}

		c.reset()
	} else {
		c.writeResponse(250, EnhancedCode{2, 0, 0}, "Continue")
	}
}

// copyChunk passes the next n bytes of input (a BDAT chunk) to the
// backend's Data. It returns how much of the chunk is left, and either the
// read error (the stream broke) or the write error (Data returned before it
// read the whole chunk).
func (c *Conn) copyChunk(n int64) (rest int64, readErr, writeErr error) {
	cr := c.r
	for n > 0 {
		if cr.r == cr.w {
			if err := cr.fill(); err != nil {
				return n, err, nil
			}
		}
		k := cr.w - cr.r
		if int64(k) > n {
			k = int(n)
		}
		w, err := c.bdatPipe.Write(cr.buf[cr.r : cr.r+k])
		cr.r += w
		n -= int64(w)
		if err != nil {
			return n, nil, err
		}
	}
	return 0, nil, nil
}

// endBdat waits for the backend's Data of a BDAT message (its reader is
// closed) and returns its result.
func (c *Conn) endBdat() error {
	err := <-c.dataResult
	c.bdatPipe = nil
	return err
}

// abortBdat ends a message being received with BDAT: the backend's Data
// gets ErrDataReset, and abortBdat returns once Data returned, so that no
// backend code runs behind the next command. Data's result is dropped: RSET,
// EHLO, STARTTLS, QUIT and a lost connection get no reply for it (RFC 3030
// section 4.1).
func (c *Conn) abortBdat() {
	if c.bdatPipe == nil {
		return
	}
	c.bdatPipe.CloseWithError(ErrDataReset)
	c.endBdat()
}

// ErrDataReset is returned by Reader pased to Data function if client does not
// send another BDAT command and instead closes connection or issues RSET command.
var ErrDataReset = errors.New("smtp: message transmission aborted")

var errPanic = &SMTPError{
	Code:         421,
	EnhancedCode: EnhancedCode{4, 0, 0},
	Message:      "Internal server error",
}

func (c *Conn) handlePanic(err interface{}, status *statusCollector) {
	if status != nil {
		status.fillRemaining(errPanic)
	}

	stack := debug.Stack()
	c.server.ErrorLog.Printf("panic serving %v: %v\n%s", c.Conn().RemoteAddr(), err, stack)
}

func (c *Conn) createStatusCollector() *statusCollector {
	rcptCounts := make(map[string]int, len(c.recipients))

	status := &statusCollector{
		statusMap: make(map[string]chan error, len(c.recipients)),
		status:    make([]chan error, 0, len(c.recipients)),
	}
	for _, rcpt := range c.recipients {
		rcptCounts[rcpt]++
	}
	// Create channels with buffer sizes necessary to fit all
	// statuses for a single recipient to avoid deadlocks.
	for rcpt, count := range rcptCounts {
		status.statusMap[rcpt] = make(chan error, count)
	}
	for _, rcpt := range c.recipients {
		status.status = append(status.status, status.statusMap[rcpt])
	}

	return status
}

type statusCollector struct {
	// Contains map from recipient to list of channels that are used for that
	// recipient.
	statusMap map[string]chan error

	// Contains channels from statusMap, in the same
	// order as Conn.recipients.
	status []chan error
}

// fillRemaining sets status for all recipients SetStatus was not called for before.
func (s *statusCollector) fillRemaining(err error) {
	// Amount of times certain recipient was specified is indicated by the channel
	// buffer size, so once we fill it, we can be confident that we sent
	// at least as much statuses as needed. Extra statuses will be ignored anyway.
chLoop:
	for _, ch := range s.statusMap {
		for {
			select {
			case ch <- err:
			default:
				continue chLoop
			}
		}
	}
}

func (s *statusCollector) SetStatus(rcptTo string, err error) {
	ch := s.statusMap[rcptTo]
	if ch == nil {
		panic("SetStatus is called for recipient that was not specified before")
	}

	select {
	case ch <- err:
	default:
		// There enough buffer space to fit all statuses at once, if this is
		// not the case - backend is doing something wrong.
		panic("SetStatus is called more times than particular recipient was specified")
	}
}

func (c *Conn) handleDataLMTP() {
	r := newDataReader(c)
	status := c.createStatusCollector()

	done := make(chan bool, 1)

	lmtpSession, ok := c.Session().(LMTPSession)
	if !ok {
		// Fallback to using a single status for all recipients.
		err := c.Session().Data(r)
		r.limited = false
		io.Copy(ioutil.Discard, r) // Make sure all the data has been consumed
		for _, rcpt := range c.recipients {
			status.SetStatus(rcpt, err)
		}
		done <- true
	} else {
		go func() {
			defer func() {
				if err := recover(); err != nil {
					status.fillRemaining(&SMTPError{
						Code:         421,
						EnhancedCode: EnhancedCode{4, 0, 0},
						Message:      "Internal server error",
					})

					stack := debug.Stack()
					c.server.ErrorLog.Printf("panic serving %v: %v\n%s", c.Conn().RemoteAddr(), err, stack)
					done <- false
				}
			}()

			status.fillRemaining(lmtpSession.LMTPData(r, status))
			r.limited = false
			io.Copy(ioutil.Discard, r) // Make sure all the data has been consumed
			done <- true
		}()
	}

	for i, rcpt := range c.recipients {
		code, enchCode, msg := dataErrorToStatus(<-status.status[i])
		c.writeResponse(code, enchCode, "<"+rcpt+"> "+msg)
		// Each status as soon as it is known: the backend may wait for
		// the client to see it (and replies are otherwise held until the
		// next read).
		c.flush()
	}

	// If done gets false, the panic occurred in LMTPData and the connection
	// should be closed.
	if !<-done {
		c.Close()
	}
}

func dataErrorToStatus(err error) (code int, enchCode EnhancedCode, msg string) {
	if err != nil {
		var smtperr *SMTPError
		if errors.As(err, &smtperr) {
			return smtperr.Code, smtperr.EnhancedCode, smtperr.Message
		} else {
			return 554, EnhancedCode{5, 0, 0}, "Error: transaction failed: " + err.Error()
		}
	}

	return 250, EnhancedCode{2, 0, 0}, "OK: queued"
}

func (c *Conn) Reject() {
	c.writeResponse(421, EnhancedCode{4, 4, 5}, "Too busy. Try again later.")
	c.Close()
}

func (c *Conn) greet() {
	protocol := "ESMTP"
	if c.server.LMTP {
		protocol = "LMTP"
	}
	c.writeResponse(220, NoEnhancedCode, fmt.Sprintf("%v %s Service Ready", c.server.Domain, protocol))
}

func (c *Conn) reset() {
	// Before the lock: the backend's Data may still call into Conn.
	c.abortBdat()

	c.locker.Lock()
	defer c.locker.Unlock()

	c.bdatStatus = nil
	c.bytesReceived = 0

	if c.session != nil {
		c.session.Reset()
	}

	c.fromReceived = false
	c.recipients = nil
}
