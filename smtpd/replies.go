package smtpd

import (
	"errors"
	"fmt"
	"net"

	"github.com/emersion/go-smtp"

	"github.com/mxedge/mxedge/policy"
	"github.com/mxedge/mxedge/queue"
)

// Every reply the listener decides itself is built here (those of the
// policy chain come from its checks), so that codes are
// consistent and no internal error text reaches a client. Enhanced status
// codes per RFC 3463 / RFC 5248.

func reply(code int, enh smtp.EnhancedCode, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

var (
	replyBadRcpt   = reply(501, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax")
	replyBadSender = reply(501, smtp.EnhancedCode{5, 1, 7}, "Bad sender address syntax")
	replyNeedUTF8  = reply(553, smtp.EnhancedCode{5, 6, 7}, "Non-ASCII address requires SMTPUTF8")
	// RFC 5321 section 2.3.8: lines end in CRLF; bare CR or LF is how SMTP
	// smuggling hides a second message (CVE-2023-51764 and relatives).
	replyBareLineEnding = reply(550, smtp.EnhancedCode{5, 5, 2}, "Message contains bare CR or LF line endings; use CRLF")
	replyTooManyHops    = reply(554, smtp.EnhancedCode{5, 4, 6}, "Too many hops (mail loop?)")
	replyLineTooLong    = reply(500, smtp.EnhancedCode{5, 5, 2}, "Line too long")
	replyTempLocal      = reply(451, smtp.EnhancedCode{4, 3, 0}, "Temporary local problem, try again later")
	replyNoSpace        = reply(452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage, try again later")
	replyTimeout        = reply(421, smtp.EnhancedCode{4, 4, 2}, "Timeout exceeded, closing connection")
	// The listener's session limit (Postfix smtpd_client_connection_count
	// and process limits): the client may come back later.
	replySessionLimit = reply(421, smtp.EnhancedCode{4, 7, 0}, "Too many connections, try again later")
	// Submission (RFC 6409 section 4.3, RFC 4954 section 6).
	replyNeedTLS  = reply(530, smtp.EnhancedCode{5, 7, 0}, "Must issue a STARTTLS command first")
	replyNeedAuth = reply(530, smtp.EnhancedCode{5, 7, 0}, "Authentication required")
	// The pregreet test (postscreen's wording for a client that talks
	// before its turn).
	replyPregreet = reply(554, smtp.EnhancedCode{5, 5, 1}, "Protocol error")
	// A session's caps: SessionMessages, SessionTime.
	replyTooManyMessages = reply(421, smtp.EnhancedCode{4, 7, 0}, "Error: too many messages in one session, closing connection")
	// The MAIL after a transaction in which a check ended the session
	// (policy.Result.EndSession, e.g. too many unknown recipients).
	replyEndSession = reply(421, smtp.EnhancedCode{4, 7, 0}, "Too many errors in this session, closing connection")
	// RCPT TO:<postmaster> on a listener without relay domains.
	replyNoPostmaster = reply(550, smtp.EnhancedCode{5, 1, 1}, "<postmaster>: Recipient address rejected: no relay domain to deliver it to")
)

// replySessionTime ends a session past Options.SessionTime, in the words
// of go-smtp's (and Postfix's) timeout.
func replySessionTime(host string) *smtp.SMTPError {
	return reply(421, smtp.EnhancedCode{4, 4, 2}, host+" Error: session time limit exceeded")
}

// toSMTP is a reply of the policy chain as go-smtp sends it.
func toSMTP(r *policy.Reply) *smtp.SMTPError {
	return reply(r.Code, smtp.EnhancedCode(r.Enhanced), r.Text)
}

// replyLine is rep as one line on the wire, without CRLF.
func replyLine(rep *smtp.SMTPError) string {
	e := rep.EnhancedCode
	if e == smtp.NoEnhancedCode || e == smtp.EnhancedCodeNotSet {
		return fmt.Sprintf("%d %s", rep.Code, rep.Message)
	}
	return fmt.Sprintf("%d %d.%d.%d %s", rep.Code, e[0], e[1], e[2], rep.Message)
}

// replyQueued is the 250 after DATA. go-smtp sends the code and text of the
// error Data returns, so a 2xx "error" is how a backend puts the queue ID in
// the reply; operators and senders quote it when tracing a message.
func replyQueued(id string) *smtp.SMTPError {
	return reply(250, smtp.EnhancedCode{2, 0, 0}, "Ok: queued as "+id)
}

// dataReply maps an error from receiving or storing a message to the reply
// the client sees. go-smtp would turn any error that is not an SMTPError
// into a permanent 554; an internal or disk failure must be a 4xx so the
// sender retries (RFC 5321 section 4.2.5), and its text stays in our log.
func dataReply(err error) *smtp.SMTPError {
	var se *smtp.SMTPError
	switch {
	case errors.As(err, &se):
		return se // go-smtp's own: 552 5.3.4 size exceeded
	case errors.Is(err, smtp.ErrTooLongLine):
		return replyLineTooLong
	case errors.Is(err, queue.ErrNoSpace):
		return replyNoSpace
	case isTimeout(err):
		return replyTimeout
	}
	return replyTempLocal
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
