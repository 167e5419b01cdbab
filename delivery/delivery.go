// Package delivery is mxedge's outbound SMTP client: it takes a queued
// message and hands it to the next hop of each recipient's domain.
//
// First version: every domain is delivered to its configured route (a fixed
// next hop "host:port", used as is without MX lookup, like Postfix's
// smtp:[host]:port). MX routing (RFC 5321 section 5) and TLS policy come
// later.
//
// Per next hop it runs one transaction with all of the message's
// recipients for that hop (RFC 5321 section 3.3): MAIL FROM, one RCPT per
// recipient, DATA. Results are per recipient: a 5xx to one RCPT fails only
// that recipient, a 4xx defers it, and the reply to the final "." applies
// to every recipient the next hop accepted. Connection failures, timeouts
// and greeting/EHLO failures defer all recipients of that hop. go-smtp's
// SendMail is not used because it aborts the whole transaction on the
// first RCPT error.
//
// Connections are reused (session.go, conncache.go), like Postfix's
// connection cache: after a transaction that ended cleanly the session
// stays open, idle, for the next message to the same hop, up to
// idleTime unused, reuseTime old and reuseCount transactions. A cached
// connection that turns out to be closed is replaced by a new one once,
// and only before anything was accepted on it.
//
// A next hop that cannot be connected to repeatedly is marked dead
// (deadhop.go): for a while its recipients are deferred at once, without
// connecting, and then one attempt probes it.
//
// Every network step has a deadline: connect (timeouts.connect), each
// command's reply (timeouts.reply), each write of the body and the reply to
// "." (timeouts.data_done). go-smtp's client sets no deadline on body
// writes, so the body goes out through bodyWriter (body.go), which sets
// one per write. Cancelling the context closes the connection.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxedge/mxedge/config"
	"github.com/mxedge/mxedge/queue"
)

// Defaults of the connection cache and the dead-hop state; see limits.
const (
	// DefaultIdleTime closes a cached connection unused this long
	// (Postfix smtp_connection_cache_time_limit 2s).
	DefaultIdleTime = 2 * time.Second
	// DefaultReuseTime: a connection this old is not reused (Postfix
	// smtp_connection_reuse_time_limit 300s).
	DefaultReuseTime = 300 * time.Second
	// DefaultReuseCount: a connection is not reused after this many
	// transactions (Postfix smtp_connection_reuse_count_limit is
	// unlimited by default; a bound spreads load when the next hop is a
	// pool of servers behind one address).
	DefaultReuseCount = 100
	// DefaultDeadAfter consecutive connection failures mark a hop dead.
	DefaultDeadAfter = 3
	// DefaultDeadMin is the first dead period; it doubles, up to
	// DefaultDeadMax, while the probes keep failing.
	DefaultDeadMin = 60 * time.Second
	DefaultDeadMax = 10 * time.Minute
)

// limits of the connection cache and the dead-hop state. New sets the
// defaults; tests shorten them before the first Deliver.
type limits struct {
	idleTime   time.Duration // close a cached connection unused this long
	reuseTime  time.Duration // do not reuse a connection older than this
	reuseCount int           // do not reuse a connection after this many transactions
	maxIdle    int           // idle connections kept per next hop
	deadAfter  int           // consecutive connection failures that mark a hop dead
	deadMin    time.Duration // first dead period
	deadMax    time.Duration // cap of the doubling dead period
}

// Deliverer implements queue.Deliverer over SMTP. It keeps idle
// connections between deliveries: call Close when done with it.
type Deliverer struct {
	hostname string
	routes   map[string]string
	t        config.Timeouts
	log      *slog.Logger
	dialer   net.Dialer
	lim      limits
	// now is the clock of connection ages and dead periods (not of
	// network deadlines); tests replace it.
	now func() time.Time

	bufs sync.Pool // *bodyBufs

	mu     sync.Mutex            // guards idle and closed
	idle   map[string][]*session // per next hop, least recently used first
	closed bool
	quits  sync.WaitGroup // sessions being closed in the background

	hopMu sync.Mutex           // guards hops
	hops  map[string]*hopState // next hops with connection failures
}

var _ queue.Deliverer = (*Deliverer)(nil)

// New returns a Deliverer for cfg's routes and timeouts. It keeps up to
// queue.concurrency idle connections per next hop.
func New(cfg *config.Config, log *slog.Logger) *Deliverer {
	return &Deliverer{
		hostname: cfg.Hostname,
		routes:   cfg.Routes,
		t:        cfg.Timeouts,
		log:      log,
		dialer:   net.Dialer{Timeout: cfg.Timeouts.Connect.D()},
		lim: limits{
			idleTime: DefaultIdleTime, reuseTime: DefaultReuseTime, reuseCount: DefaultReuseCount,
			maxIdle:   max(cfg.Queue.Concurrency, 1),
			deadAfter: DefaultDeadAfter, deadMin: DefaultDeadMin, deadMax: DefaultDeadMax,
		},
		bufs: sync.Pool{New: newBodyBufs},
		now:  time.Now,
		idle: map[string][]*session{},
		hops: map[string]*hopState{},
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

// all gives every recipient the same result.
func all(rcpts []string, relay string, code int, enh, text string) []queue.Result {
	rs := make([]queue.Result, len(rcpts))
	for i, r := range rcpts {
		rs[i] = queue.Result{Rcpt: r, Code: code, Enhanced: enh, Text: text, Relay: relay}
	}
	return rs
}

// transaction delivers msg to rcpts at one next hop: on a cached
// connection if there is one, else (or if that one turns out to be
// closed) on a new connection, unless the hop is marked dead.
func (d *Deliverer) transaction(ctx context.Context, hop string, msg *queue.Message, rcpts []string) []queue.Result {
	body, err := msg.Open()
	if err != nil {
		d.log.Error("cannot open queued message", "queue_id", msg.ID, "err", err)
		return all(rcpts, "", 451, "4.3.0", "local error reading queued message")
	}
	defer body.Close()

	probe, deadText := d.admit(hop)
	if deadText != "" {
		return all(rcpts, hop, 0, "4.4.1", deadText)
	}
	if !probe { // a probe tests a new connection
		if s := d.take(hop); s != nil {
			rs, stale := d.run(ctx, s, msg, body, rcpts, true)
			if !stale {
				return rs
			}
			d.log.Debug("cached connection lost, reconnecting", "queue_id", msg.ID, "relay", s.relay,
				"age", d.now().Sub(s.created).Round(time.Millisecond).String())
		}
	}
	s, code, enh, text := d.connect(ctx, hop, probe)
	if s == nil {
		return all(rcpts, hop, code, enh, text)
	}
	rs, _ := d.run(ctx, s, msg, body, rcpts, false)
	return rs
}

// next says what becomes of a session after a transaction.
type next int

const (
	drop  next = iota // broken, closing or cancelled: close without QUIT
	keep              // outside any transaction: may be reused
	reset             // a transaction may still be open: RSET, then reuse
)

// run runs one transaction on s and then caches or closes s. stale
// reports that s was a reused connection that turned out to be closed
// before the next hop accepted anything (the network failed or it said
// 421 to MAIL): results are then empty and the caller may retry on a new
// connection. Nothing is retried once MAIL was accepted.
func (d *Deliverer) run(ctx context.Context, s *session, msg *queue.Message, body io.Reader, rcpts []string, reused bool) (results []queue.Result, stale bool) {
	stop := context.AfterFunc(ctx, func() { s.nc.Close() })
	after := drop
	defer func() {
		if after == reset {
			after = keep
			if err := s.reset(d.hostname); err != nil {
				after = drop
			}
		}
		if !stop() { // the context closed the connection
			after = drop
		}
		if after == keep {
			d.park(s)
		} else {
			s.c.Close()
		}
	}()

	if msg.UTF8 {
		if ok, _ := s.c.Extension("SMTPUTF8"); !ok {
			// RFC 6531 section 3.4: no downgrade; return the message.
			after = keep
			return all(rcpts, s.relay, 550, "5.6.7", "next hop does not support SMTPUTF8, which this message requires"), false
		}
	}
	s.count++
	if err := s.c.Mail(msg.From, &smtp.MailOptions{Size: msg.Size, UTF8: msg.UTF8}); err != nil {
		code, enh, text := describe(err)
		if closing(code) {
			if reused && ctx.Err() == nil {
				return nil, true
			}
			return all(rcpts, s.relay, code, enh, text), false
		}
		after = keep // a refused MAIL starts no transaction
		return all(rcpts, s.relay, code, enh, text), false
	}
	if reused {
		d.hopAlive(s.hop)
	}
	var accepted []queue.Result
	for i, r := range rcpts {
		err := s.c.Rcpt(r, nil)
		if err == nil {
			accepted = append(accepted, queue.Result{Rcpt: r, Relay: s.relay})
			continue
		}
		code, enh, text := describe(err)
		if closing(code) {
			// The rest, and those already accepted, are deferred.
			for _, a := range accepted {
				results = append(results, queue.Result{Rcpt: a.Rcpt, Code: code, Enhanced: enh, Text: text, Relay: s.relay})
			}
			return append(results, all(rcpts[i:], s.relay, code, enh, text)...), false
		}
		results = append(results, queue.Result{Rcpt: r, Code: code, Enhanced: enh, Text: text, Relay: s.relay})
	}
	if len(accepted) == 0 {
		after = reset // MAIL was accepted: end that transaction
		return results, false
	}
	code, enh, text, a := d.data(s, msg, body)
	after = a
	for i := range accepted {
		accepted[i].Code, accepted[i].Enhanced, accepted[i].Text = code, enh, text
	}
	return append(results, accepted...), false
}

// closing reports whether a reply code means the connection is gone: no
// reply at all, or 421 (RFC 5321 section 3.8: the server closes the
// channel after it).
func closing(code int) bool { return code == 0 || code == 421 }

// data sends the body and returns the reply to the final "." and what
// becomes of the session.
func (d *Deliverer) data(s *session, msg *queue.Message, body io.Reader) (int, string, string, next) {
	w, err := s.c.Data()
	if err != nil {
		code, enh, text := describe(err)
		if closing(code) {
			return code, enh, text, drop
		}
		return code, enh, text, reset
	}
	bufs := d.bufs.Get().(*bodyBufs)
	bw := &bodyWriter{conn: s.nc, timeout: d.t.DataDone.D(), chunk: bodyChunk, out: bufs.out[:0]}
	readErr, netErr := bw.send(body, bufs.in)
	bufs.out = bw.out[:0]
	d.bufs.Put(bufs)
	// On an error, closing the connection without the final "." makes the
	// next hop discard the partial message.
	if readErr != nil {
		d.log.Error("reading queued message failed", "queue_id", msg.ID, "err", readErr)
		return 451, "4.3.0", "local error reading queued message", drop
	}
	if netErr != nil {
		code, enh, text := describe(netErr)
		return code, enh, text, drop
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		code, enh, text := describe(err)
		if closing(code) {
			return code, enh, text, drop
		}
		// Any reply to "." ends the transaction (RFC 5321 section 4.1.1.4).
		return code, enh, text, keep
	}
	enh, text := splitEnhanced(resp.StatusText)
	return 250, enh, text, keep
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
	case errors.Is(err, io.EOF):
		return "connection closed by next hop"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Op + ": " + oe.Err.Error()
	}
	return err.Error()
}
