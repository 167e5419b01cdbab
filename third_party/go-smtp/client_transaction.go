package smtp

import (
	"bytes"
	"errors"
	"time"
)

// ErrNoRecipients is Transaction.DataError when the server accepted none
// of the recipients and did not refuse DATA itself.
var ErrNoRecipients = errors.New("smtp: no recipient accepted")

// Transaction is the outcome of SendTransaction: the answer to each
// recipient and, if the server is waiting for the message, its writer.
type Transaction struct {
	// RcptErrors has one entry per recipient given to SendTransaction, in
	// the same order: nil if the server accepted the recipient, else its
	// refusal (an *SMTPError).
	RcptErrors []error

	// Data is non-nil when the server waits for the message (it answered
	// DATA with 354 and accepted at least one recipient): write the
	// message (CRLF line endings; dot-stuffing is done by the writer) and
	// Close it, which sends the final dot and returns the server's reply
	// to it (CloseWithResponse also returns its text, CloseWithLMTPResponse
	// the per-recipient replies of an LMTP server).
	Data *DataCommand

	// DataError says why Data is nil: the server's refusal of DATA (an
	// *SMTPError), or ErrNoRecipients when no recipient was accepted and
	// the server did not refuse DATA itself (in lockstep DATA is not
	// sent; a pipelining server that answered 354 anyway got the lone dot
	// RFC 2920 section 3.1 asks for). The transaction is then still open on
	// the server: call Reset before the next one.
	DataError error
}

// SendTransaction runs MAIL FROM, one RCPT TO per recipient and DATA.
//
// If the server offered PIPELINING (RFC 2920), the commands go out in one
// write and the replies are read in order; otherwise they are sent in
// lockstep, which gives the same result. mopts and ropts are used exactly
// as Mail and Rcpt use them (ropts is nil, or has one entry, possibly nil,
// per recipient), and every command line is built and checked before
// anything is sent, so a local error (a CR in an address, an option the
// server does not support) sends nothing.
//
// The error is non-nil if the server refused MAIL (an *SMTPError; the
// pipelined RCPT and DATA replies were read, and a stray 354 answered with
// the lone dot) or if the connection failed (then it must be closed); the
// Transaction is nil then. Otherwise see Transaction: the per-recipient
// answers and either the message writer or why there is none.
//
// Example:
//
//	tx, err := c.SendTransaction(from, nil, rcpts, nil)
//	if err != nil {
//		return err // every recipient: err
//	}
//	for i, err := range tx.RcptErrors {
//		// rcpts[i]: err == nil means accepted
//	}
//	if tx.Data == nil {
//		c.Reset()
//		return tx.DataError
//	}
//	if _, err := tx.Data.Write(msg); err != nil {
//		return err
//	}
//	return tx.Data.Close() // the reply to the final dot
func (c *Client) SendTransaction(from string, mopts *MailOptions, rcpts []string, ropts []*RcptOptions) (*Transaction, error) {
	return c.sendTransaction(false, from, mopts, rcpts, ropts)
}

// ResetError is the error of SendTransactionAfterReset when RSET failed:
// the server refused it or the connection failed under it. Nothing of the
// transaction counts (no message data was sent); with PIPELINING the
// replies to the rest of the group are left unread, so the connection
// must be closed.
type ResetError struct{ Err error }

func (e *ResetError) Error() string { return "smtp: RSET: " + e.Err.Error() }
func (e *ResetError) Unwrap() error { return e.Err }

// SendTransactionAfterReset is SendTransaction preceded by RSET (RFC 5321
// section 4.1.1.5), for a connection reused after an earlier transaction:
// RSET ends any transaction left open and finds a connection the server
// dropped while it was idle. With PIPELINING the RSET goes out in the
// same group as MAIL, RCPT and DATA (RFC 2920 section 3.1 allows RSET
// anywhere in a group), so the reuse costs no round trip of its own;
// without, RSET is sent first in lockstep. A failed RSET returns a
// *ResetError (see there); otherwise the result is SendTransaction's.
func (c *Client) SendTransactionAfterReset(from string, mopts *MailOptions, rcpts []string, ropts []*RcptOptions) (*Transaction, error) {
	return c.sendTransaction(true, from, mopts, rcpts, ropts)
}

func (c *Client) sendTransaction(reset bool, from string, mopts *MailOptions, rcpts []string, ropts []*RcptOptions) (*Transaction, error) {
	if len(rcpts) == 0 {
		return nil, errors.New("smtp: SendTransaction without recipients")
	}
	if ropts != nil && len(ropts) != len(rcpts) {
		return nil, errors.New("smtp: SendTransaction needs one RcptOptions per recipient")
	}
	if err := validateLine(from); err != nil {
		return nil, err
	}
	if err := c.hello(); err != nil {
		return nil, err
	}
	mail, err := c.mailCommand(from, mopts)
	if err != nil {
		return nil, err
	}
	rcptCmds := make([]string, len(rcpts))
	for i, to := range rcpts {
		var opts *RcptOptions
		if ropts != nil {
			opts = ropts[i]
		}
		if rcptCmds[i], err = c.rcptCommand(to, opts); err != nil {
			return nil, err
		}
	}

	c.rcpts = nil
	if _, ok := c.ext["PIPELINING"]; ok {
		return c.pipelinedTransaction(reset, mail, rcpts, rcptCmds)
	}
	if reset {
		if _, _, err := c.cmd(250, "RSET"); err != nil {
			return nil, &ResetError{err}
		}
	}
	return c.lockstepTransaction(mail, rcpts, rcptCmds)
}

func isSMTPError(err error) bool {
	var smtpErr *SMTPError
	return errors.As(err, &smtpErr)
}

func (c *Client) lockstepTransaction(mail string, rcpts, rcptCmds []string) (*Transaction, error) {
	if _, _, err := c.cmd(250, "%s", mail); err != nil {
		return nil, err
	}
	tx := &Transaction{RcptErrors: make([]error, len(rcpts))}
	for i, cmd := range rcptCmds {
		_, _, err := c.cmd(25, "%s", cmd)
		switch {
		case err == nil:
			c.rcpts = append(c.rcpts, rcpts[i])
		case isSMTPError(err):
			tx.RcptErrors[i] = err
		default:
			return nil, err
		}
	}
	if len(c.rcpts) == 0 {
		tx.DataError = ErrNoRecipients
		return tx, nil
	}
	d, err := c.Data()
	switch {
	case err == nil:
		tx.Data = d
	case isSMTPError(err):
		tx.DataError = err
	default:
		return nil, err
	}
	return tx, nil
}

// pipelinedTransaction sends MAIL, the RCPTs and DATA as one group (RFC
// 2920 section 3.1: DATA is the last command of a group), RSET first when
// reset, and checks every reply.
func (c *Client) pipelinedTransaction(reset bool, mail string, rcpts, rcptCmds []string) (*Transaction, error) {
	var group bytes.Buffer
	if reset {
		group.WriteString("RSET\r\n")
	}
	group.WriteString(mail + "\r\n")
	for _, cmd := range rcptCmds {
		group.WriteString(cmd + "\r\n")
	}
	group.WriteString("DATA\r\n")

	defer c.conn.SetDeadline(time.Time{})
	c.conn.SetDeadline(time.Now().Add(c.CommandTimeout))
	// One write: bufio.Writer writes a large buffer straight through.
	_, err := c.text.W.Write(group.Bytes())
	if err == nil {
		err = c.text.W.Flush()
	}
	if err != nil {
		if reset { // the connection failed before RSET was answered
			return nil, &ResetError{err}
		}
		return nil, err
	}

	read := func(expect int) error {
		c.conn.SetDeadline(time.Now().Add(c.CommandTimeout))
		_, _, err := c.readResponse(expect)
		return err
	}
	if reset {
		if err := read(250); err != nil {
			return nil, &ResetError{err}
		}
	}
	mailErr := read(250)
	if mailErr != nil && !isSMTPError(mailErr) {
		return nil, mailErr
	}
	tx := &Transaction{RcptErrors: make([]error, len(rcpts))}
	var accepted []string
	for i := range rcpts {
		err := read(25)
		switch {
		case err == nil:
			accepted = append(accepted, rcpts[i])
		case isSMTPError(err):
			tx.RcptErrors[i] = err
		default:
			return nil, err
		}
	}
	dataErr := read(354)
	if dataErr != nil && !isSMTPError(dataErr) {
		return nil, dataErr
	}

	if mailErr != nil || len(accepted) == 0 {
		if dataErr == nil {
			// RFC 2920 section 3.1: DATA was accepted although there is
			// nothing to send: end it with a lone dot.
			if err := c.loneDot(); err != nil {
				return nil, err
			}
			dataErr = ErrNoRecipients
		}
		if mailErr != nil {
			return nil, mailErr
		}
		tx.DataError = dataErr
		return tx, nil
	}
	c.rcpts = accepted
	if dataErr != nil {
		tx.DataError = dataErr
		return tx, nil
	}
	tx.Data = &DataCommand{client: c}
	return tx, nil
}

// loneDot ends an accepted DATA with no message; the reply does not matter
// unless the connection failed.
func (c *Client) loneDot() error {
	if _, err := c.text.W.WriteString(".\r\n"); err != nil {
		return err
	}
	if err := c.text.W.Flush(); err != nil {
		return err
	}
	c.conn.SetDeadline(time.Now().Add(c.SubmissionTimeout))
	if _, _, err := c.readResponse(250); err != nil && !isSMTPError(err) {
		return err
	}
	return nil
}
