package delivery

import (
	"context"
	"errors"
	"io"

	"github.com/emersion/go-smtp"
	"github.com/mxedge/mxedge/queue"
)

// The transaction send path: MAIL FROM, one RCPT TO per recipient, DATA,
// the body and the final dot.
//
// RFC 2920 section 3.1: when the next hop announces PIPELINING, MAIL,
// every RCPT and DATA go out as one group, in one write, and the replies
// are read in order (go-smtp fork: Client.SendTransaction, FORK.md
// section 11); otherwise they go in lockstep, one command per reply, with
// the same outcome. Every reply is checked:
//
//   - a refused MAIL refuses every recipient (the pipelined RCPT and DATA
//     replies are read and dropped);
//   - a refused RCPT fails (5xx) or defers (4xx) that recipient only;
//   - no recipient accepted: DATA is refused, or, if the next hop
//     answered 354 all the same, it gets the lone dot (no message);
//     nothing is sent and the open transaction is ended by the RSET that
//     opens the next transaction on the connection;
//   - DATA refused with recipients accepted: those recipients get DATA's
//     reply;
//   - a 421 anywhere, or a connection that fails before the message was
//     sent, defers every recipient (RFC 5321 section 3.8).
//
// A connection failure under the group is not attributed to a command:
// with pipelining the MAIL reply may never have been read. No message
// data went out then, so the caller may try again (walk: a new connection
// for a cached one, else the next address); a message is never sent
// twice, because nothing is retried once DATA was accepted.

// transact runs one transaction for rcpts on s and returns the results,
// what becomes of s, and whether the caller may try again elsewhere (the
// connection failed, or the next hop said 421 to MAIL, before any message
// data was sent; the results then say why, every recipient alike).
// utf8 says whether MAIL carries SMTPUTF8 (run decides, utf8.go). The
// DSN parameters go per recipient (params.go); over LMTP each accepted
// recipient gets its own reply to the final dot.
func (d *Deliverer) transact(ctx context.Context, s *session, msg *queue.Message, body io.Reader, rcpts []string, reused, utf8 bool) (results []queue.Result, after next, retry bool) {
	s.count++
	var ropts []*smtp.RcptOptions // nil: no recipient has DSN parameters
	for i, r := range rcpts {
		if o := rcptOptions(msg, r); o != nil {
			if ropts == nil {
				ropts = make([]*smtp.RcptOptions, len(rcpts))
			}
			ropts[i] = o
		}
	}
	send := s.c.SendTransaction
	if reused {
		// RFC 5321 section 4.1.1.5: RSET before a reused connection's
		// next transaction, in the same pipelined group (fork:
		// SendTransactionAfterReset).
		send = s.c.SendTransactionAfterReset
	}
	tx, err := send(msg.From, mailOptions(msg, utf8), rcpts, ropts)
	if re := (*smtp.ResetError)(nil); errors.As(err, &re) {
		// The cached connection is gone (or refuses RSET): nothing of
		// the message went out; the caller tries a new connection (and
		// logs it).
		return all(rcpts, s.relay, 0, "4.4.2", "cached connection lost: "+re.Err.Error()), drop, ctx.Err() == nil
	}
	if err != nil {
		code, enh, text := describe(err)
		if closing(code) {
			return all(rcpts, s.relay, code, enh, text), drop, ctx.Err() == nil
		}
		// A refused MAIL starts no transaction (a pipelined 354 after it
		// got the lone dot).
		return all(rcpts, s.relay, code, enh, text), keep, false
	}
	if reused {
		d.hopAlive(s.hop)
	}
	accepted := make([]queue.Result, 0, len(rcpts))
	dsnPassed := hasDSN(s.c)
	for i, r := range rcpts {
		rerr := tx.RcptErrors[i]
		if rerr == nil {
			accepted = append(accepted, queue.Result{Rcpt: r, Relay: s.relay, DSNPassed: dsnPassed})
			continue
		}
		code, enh, text := describe(rerr)
		if closing(code) {
			// 421 to a RCPT from a server that kept the connection long
			// enough for the later replies: the rest, and those accepted
			// already, are deferred; closing without the final dot
			// discards a DATA the server may have accepted.
			for _, a := range accepted {
				results = append(results, queue.Result{Rcpt: a.Rcpt, Code: code, Enhanced: enh, Text: text, Relay: s.relay})
			}
			return append(results, all(rcpts[i:], s.relay, code, enh, text)...), drop, false
		}
		results = append(results, queue.Result{Rcpt: r, Code: code, Enhanced: enh, Text: text, Relay: s.relay})
	}
	if tx.Data == nil {
		after = reset // MAIL was accepted: the RSET before reuse ends it
		if len(accepted) == 0 {
			if code, _, _ := describe(tx.DataError); closing(code) && !errors.Is(tx.DataError, smtp.ErrNoRecipients) {
				after = drop
			}
			return results, after, false
		}
		code, enh, text := describe(tx.DataError)
		if closing(code) {
			after = drop
		}
		for i := range accepted {
			accepted[i].Code, accepted[i].Enhanced, accepted[i].Text = code, enh, text
		}
		return append(results, accepted...), after, false
	}
	code, enh, text, a, per := d.data(s, msg, body, tx.Data)
	for i := range accepted {
		accepted[i].Code, accepted[i].Enhanced, accepted[i].Text = code, enh, text
		if r, ok := per[accepted[i].Rcpt]; ok { // LMTP: its own reply
			accepted[i].Code, accepted[i].Enhanced, accepted[i].Text = r.code, r.enh, r.text
		}
	}
	return append(results, accepted...), a, false
}
