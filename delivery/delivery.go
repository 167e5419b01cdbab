// Package delivery is mxedge's outbound SMTP client: it takes a queued
// message and hands it to the next hop of each recipient's domain.
//
// First version: every domain is delivered to its configured route (a fixed
// next hop "host:port", used as is without MX lookup, like Postfix's
// smtp:[host]:port). MX routing (RFC 5321 section 5) and TLS policy come
// later.
//
// Per next hop it opens one connection and runs one transaction with all of
// the message's recipients for that hop (RFC 5321 section 3.3):
// EHLO <hostname>, MAIL FROM, one RCPT per recipient, DATA, QUIT. Results
// are per recipient: a 5xx to one RCPT fails only that recipient, a 4xx
// defers it, and the reply to the final "." applies to every recipient the
// next hop accepted. Connection failures, timeouts and greeting/EHLO
// failures defer all recipients of that hop. go-smtp's SendMail is not used
// because it aborts the whole transaction on the first RCPT error.
//
// Every network step has a deadline: connect (timeouts.connect), each
// command's reply (timeouts.reply), each write of the body and the reply to
// "." (timeouts.data_done). go-smtp's client sets no deadline on body
// writes, so deadlineWriter extends the connection's write deadline per
// write. Cancelling the context closes the connection.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxedge/mxedge/config"
	"github.com/mxedge/mxedge/queue"
)

// Deliverer implements queue.Deliverer over SMTP.
type Deliverer struct {
	hostname string
	routes   map[string]string
	t        config.Timeouts
	log      *slog.Logger
	dialer   net.Dialer
}

var _ queue.Deliverer = (*Deliverer)(nil)

// New returns a Deliverer for cfg's routes and timeouts.
func New(cfg *config.Config, log *slog.Logger) *Deliverer {
	return &Deliverer{
		hostname: cfg.Hostname,
		routes:   cfg.Routes,
		t:        cfg.Timeouts,
		log:      log,
		dialer:   net.Dialer{Timeout: cfg.Timeouts.Connect.D()},
	}
}

// Deliver implements queue.Deliverer: it groups the recipients by next hop
// and runs one transaction per hop, one hop after the other.
func (d *Deliverer) Deliver(ctx context.Context, msg *queue.Message) []queue.Result {
	var results []queue.Result
	var hops []string
	byHop := map[string][]string{}
	for _, rcpt := range msg.Rcpts {
		hop, ok := d.routes[domainOf(rcpt)]
		if !ok {
			results = append(results, queue.Result{Rcpt: rcpt, Code: 451, Enhanced: "4.3.5",
				Text: "no route for domain " + domainOf(rcpt) + " (configuration error)"})
			continue
		}
		if byHop[hop] == nil {
			hops = append(hops, hop)
		}
		byHop[hop] = append(byHop[hop], rcpt)
	}
	for _, hop := range hops {
		results = append(results, d.transaction(ctx, hop, msg, byHop[hop])...)
	}
	return results
}

// domainOf returns the (normalised, lowercase) domain of a wire address.
func domainOf(addr string) string {
	return addr[strings.LastIndexByte(addr, '@')+1:]
}

// transaction delivers msg to rcpts at one next hop.
func (d *Deliverer) transaction(ctx context.Context, hop string, msg *queue.Message, rcpts []string) []queue.Result {
	relay := hop
	all := func(code int, enh, text string) []queue.Result {
		rs := make([]queue.Result, len(rcpts))
		for i, r := range rcpts {
			rs[i] = queue.Result{Rcpt: r, Code: code, Enhanced: enh, Text: text, Relay: relay}
		}
		return rs
	}
	conn, err := d.dialer.DialContext(ctx, "tcp", strings.NewReplacer("[", "", "]", "").Replace(hop))
	if err != nil {
		return all(0, "4.4.1", "connect to "+hop+": "+netReason(err))
	}
	if ra := conn.RemoteAddr().String(); ra != hop {
		relay = hop + " [" + ra + "]"
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c := smtp.NewClient(conn)
	defer c.Close()
	c.CommandTimeout = d.t.Reply.D()
	c.SubmissionTimeout = d.t.DataDone.D()

	if err := c.Hello(d.hostname); err != nil {
		// A refused greeting or EHLO is a property of the host, not of the
		// recipients: defer (issue: MX walk moves on to the next host).
		code, enh, text := describe(err)
		if code/100 == 5 {
			code, enh = 0, "4.4.0"
			text = "greeting/EHLO refused: " + text
		}
		return all(code, enh, text)
	}
	if msg.UTF8 {
		if ok, _ := c.Extension("SMTPUTF8"); !ok {
			// RFC 6531 section 3.4: no downgrade; return the message.
			return all(550, "5.6.7", "next hop does not support SMTPUTF8, which this message requires")
		}
	}
	mailOpts := &smtp.MailOptions{Size: msg.Size, UTF8: msg.UTF8}
	if err := c.Mail(msg.From, mailOpts); err != nil {
		return all(describe(err))
	}
	var results, accepted []queue.Result
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			code, enh, text := describe(err)
			if code == 0 { // the connection broke: the rest is deferred
				for _, rest := range rcpts[len(results)+len(accepted):] {
					results = append(results, queue.Result{Rcpt: rest, Code: 0, Enhanced: enh, Text: text, Relay: relay})
				}
				return results
			}
			results = append(results, queue.Result{Rcpt: r, Code: code, Enhanced: enh, Text: text, Relay: relay})
			continue
		}
		accepted = append(accepted, queue.Result{Rcpt: r, Relay: relay})
	}
	if len(accepted) == 0 {
		_ = c.Quit()
		return results
	}
	code, enh, text := d.data(c, conn, msg)
	for i := range accepted {
		accepted[i].Code, accepted[i].Enhanced, accepted[i].Text = code, enh, text
	}
	if code/100 == 2 {
		_ = c.Quit()
	}
	return append(results, accepted...)
}

// data sends the body and returns the reply to the final ".".
func (d *Deliverer) data(c *smtp.Client, conn net.Conn, msg *queue.Message) (int, string, string) {
	body, err := msg.Open()
	if err != nil {
		d.log.Error("cannot open queued message", "queue_id", msg.ID, "err", err)
		return 451, "4.3.0", "local error reading queued message"
	}
	defer body.Close()
	w, err := c.Data()
	if err != nil {
		return describe(err)
	}
	dw := &deadlineWriter{w: w, conn: conn, d: d.t.DataDone.D()}
	if _, err := io.Copy(dw, body); err != nil {
		if dw.err == nil { // reading our own spool file failed
			d.log.Error("reading queued message failed", "queue_id", msg.ID, "err", err)
			return 451, "4.3.0", "local error reading queued message"
		}
		return describe(dw.err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return describe(err)
	}
	enh, text := splitEnhanced(resp.StatusText)
	return 250, enh, text
}

// splitEnhanced splits "2.0.0 Ok: queued" into its enhanced status code
// (RFC 3463) and the rest; go-smtp parses the code out of error replies
// only.
func splitEnhanced(s string) (string, string) {
	code, rest, ok := strings.Cut(s, " ")
	if !ok || len(code) < 5 || code[1] != '.' || code[0] < '2' || code[0] > '5' {
		return "", s
	}
	for _, part := range strings.Split(code, ".")[1:] {
		if part == "" || strings.Trim(part, "0123456789") != "" {
			return "", s
		}
	}
	return code, rest
}

// deadlineWriter pushes the connection's write deadline out before each
// write of the body, so a large message may take as long as it needs while
// a stalled receiver is given up after d.
type deadlineWriter struct {
	w    io.Writer
	conn net.Conn
	d    time.Duration
	err  error
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	if err := w.conn.SetWriteDeadline(time.Now().Add(w.d)); err != nil {
		w.err = err
		return 0, err
	}
	n, err := w.w.Write(p)
	if err != nil {
		w.err = err
	}
	return n, err
}

// describe turns a client error into (code, enhanced code, text). Replies
// from the next hop keep their code; anything else (timeout, reset, TLS)
// has code 0, which the queue treats as temporary.
func describe(err error) (int, string, string) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		enh := ""
		if e := se.EnhancedCode; e != smtp.NoEnhancedCode && e != smtp.EnhancedCodeNotSet {
			enh = fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2])
		}
		return se.Code, enh, se.Message
	}
	return 0, "4.4.2", netReason(err)
}

// netReason is a short, log-safe reason for a network error.
func netReason(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, net.ErrClosed):
		return "connection closed"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Op + ": " + oe.Err.Error()
	}
	return err.Error()
}
