// Package delivery is mxedge's outbound SMTP client: it takes a queued
// message and hands it to the next hop of each recipient's domain.
//
// Where mail goes (destination.go): a domain in [routes] goes to that
// fixed next hop "host:port" as is, without MX lookup (Postfix
// transport_maps with smtp:[host]:port); every other domain goes to the
// smarthost if one is configured (TLS required, optional AUTH PLAIN,
// smarthost.go), else to its MX hosts: RFC 5321 section 5.1 by package
// mxroute (preference order, equal preferences shuffled, CNAME, implicit
// MX, null MX 5.1.10, this relay among the MX hosts 5.4.6, at most 5
// addresses). The walk (walk, below) tries the addresses in order and
// moves on after a connection failure, a 4xx or 5xx greeting or EHLO,
// 421, or a TLS policy failure; an address that failed is tried last
// until the queue's next retry (queue.min_backoff).
//
// Per destination it runs transactions of at most
// max_rcpts_per_transaction recipients (RFC 5321 section 3.3): MAIL FROM
// (SIZE; BODY as received, 8BITMIME or 7BIT, RFC 6152; SMTPUTF8; RET and
// ENVID), one RCPT per recipient (NOTIFY and ORCPT), DATA (params.go).
// The DSN parameters (RFC 3461) go only to a next hop that announces DSN;
// the results say whether they did (queue.Result.DSNPassed), so that the
// queue sends a "relayed" report only where the next hop cannot. Results
// are per recipient: a 5xx to one RCPT fails only that recipient, a 4xx
// defers it, and the reply to the final "." applies to every recipient
// the next hop accepted. Recipients refused as too many (452 4.5.3, RFC
// 5321 section 4.5.3.1.10) go in the next transaction at once, on the
// same connection, and the destination's limit is remembered for later
// messages (rcptlimit.go). Connection failures, timeouts and greeting/EHLO
// failures at every address defer all recipients. A message that needs
// SMTPUTF8 (a UTF-8 sender, recipient or header field) or 8BITMIME is
// returned (5.6.7, 5.6.3) by a next hop without it: no downgrade; one
// that only announced SMTPUTF8 is sent without it (utf8.go). go-smtp's
// SendMail is not used because it aborts the whole transaction on the
// first RCPT error.
// With a next hop that announces PIPELINING (RFC 2920), MAIL, the
// RCPTs and DATA go out in one write (transaction.go), after the RSET of
// a reused connection in the same write.
//
// TLS (tlspolicy.go, starttls.go): STARTTLS per policy ("none", "may",
// "encrypt", "verify", "dane"; default and per domain in config), raised
// by the domain's DANE TLSA records (RFC 7672) or MTA-STS policy (RFC
// 8461), DANE first. The plaintext EHLO carries the configured hostname.
// Every result's Relay says which TLS version, cipher and policy were
// used ("mx1.example.org:25 [192.0.2.1:25] tls=TLSv1.3/TLS_AES_128_GCM_SHA256
// policy=dane"), so the queue's delivery log line does.
//
// Concurrency (limiter.go): at most destination_concurrency transactions
// per destination, with slow start, and delivery.concurrency in all;
// destinations of one message are delivered in parallel; a delivery that
// finds its destination full waits up to 5 s, then is deferred (4.4.5),
// so that a slow destination cannot hold the queue's attempt slots.
//
// Connections are reused (session.go, conncache.go), like Postfix's
// connection cache: after a transaction that ended cleanly the session
// stays open, idle, for the next message to the same hop, up to
// idleTime unused, reuseTime old and reuseCount transactions; a session
// made under a strict TLS plan is reused only under the same plan. A
// cached connection that turns out to be closed is replaced by a new one
// once, and only before anything was accepted on it. Reuse starts with
// RSET and no new EHLO; a connection carries at most 5 verification
// probes (Dial), under servers' limits on commands without mail (Exim's
// smtp_accept_max_nonmail).
//
// A next hop (a route, the smarthost, or one MX address) that cannot be
// connected to repeatedly is marked dead (deadhop.go): for a while it is
// skipped without connecting (its recipients deferred if nothing else is
// left), and then one attempt probes it.
//
// Every network step has a deadline: connect (timeouts.connect), each
// command's reply and the TLS handshake (timeouts.reply), each write of
// the body and the reply to "." (timeouts.data_done). go-smtp's client
// sets no deadline on body writes, so the body goes out through
// bodyWriter (body.go), which sets one per write and writes the end of
// data with the message's last bytes (go-smtp fork: DataCommand.SentRaw).
// A message whose data smtpd vouched for (queue.Message.CRLF: only the
// lines starting with "." are looked for; with NoDotLines nothing is
// changed) goes from its spool file to a plain TCP connection by
// sendfile(2), in pieces with a deadline each. Cancelling the context
// closes the connection.
package delivery

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxedge/mxedge/mxroute"
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

// limits of the connection cache, the dead-hop state and the
// concurrency limiter. New sets the defaults; tests shorten them before
// the first Deliver.
type limits struct {
	idleTime   time.Duration // close a cached connection unused this long
	reuseTime  time.Duration // do not reuse a connection older than this
	reuseCount int           // do not reuse a connection after this many transactions
	maxIdle    int           // idle connections kept per next hop
	deadAfter  int           // consecutive connection failures that mark a hop dead
	deadMin    time.Duration // first dead period
	deadMax    time.Duration // cap of the doubling dead period
	failedFor  time.Duration // an address that failed is tried last this long
	slotWait   time.Duration // wait for a concurrency slot at most this long
	maxRcpts   int           // recipients per transaction
}

// Deliverer implements queue.Deliverer over SMTP. It keeps idle
// connections between deliveries: call Close when done with it.
type Deliverer struct {
	sentFiles atomic.Int64 // message data sent by sendfile (bodyWriter.sendFile)

	hostname     string
	routes       atomic.Pointer[map[string]string] // SetRoutes swaps it
	smarthost    string
	shTLS        string // smarthost_tls
	shAuth       string // smarthost_auth_file, read at each connection
	mxPort       int
	tls          atomic.Pointer[TLSPolicy] // SetTLSPolicy swaps it
	replyTimeout time.Duration             // each reply, the TLS handshake
	dataTimeout  time.Duration             // each body write, the reply to "."
	log          *slog.Logger
	dialer       net.Dialer
	source       net.IP // delivery.source_address; nil: unbound
	lim          limits
	limit        *limiter
	// now is the clock of connection ages and dead periods (not of
	// network deadlines); tests replace it.
	now func() time.Time

	resolver mxroute.Resolver // nil: no MX delivery
	self     func(host string, ip net.IP) bool
	roots    *x509.CertPool // nil: the system's
	rngMu    sync.Mutex
	rng      *rand.Rand // nil: mxroute's random source

	bufs sync.Pool // *bodyBufs

	mu     sync.Mutex            // guards idle and closed
	idle   map[string][]*session // per cache key, least recently used first
	closed bool
	quits  sync.WaitGroup // sessions being closed in the background

	hopMu  sync.Mutex           // guards hops and failed
	hops   map[string]*hopState // next hops with connection failures
	failed map[string]time.Time // addresses by time of their last connection failure

	// rcptLimits: recipients per transaction that destinations showed
	// (452 4.5.3; rcptlimit.go).
	rcptLimits rcptLimits

	tlsOut tlsCounts // sessions by TLS version and policy (tlscount.go)
}

var _ queue.Deliverer = (*Deliverer)(nil)

// New returns a Deliverer for o. It keeps up to o.MaxIdle idle
// connections per next hop. Domains without a route are delivered by MX
// only with o.Resolver (else deferred as a configuration error).
func New(o Options) *Deliverer {
	o.defaults()
	d := &Deliverer{
		hostname:     o.Hostname,
		smarthost:    o.Smarthost,
		shTLS:        o.SmarthostTLS,
		shAuth:       o.SmarthostAuthFile,
		mxPort:       o.MXPort,
		replyTimeout: o.ReplyTimeout,
		dataTimeout:  o.DataTimeout,
		log:          o.Logger,
		dialer:       net.Dialer{Timeout: o.ConnectTimeout},
		source:       o.SourceAddress,
		lim: limits{
			idleTime: DefaultIdleTime, reuseTime: DefaultReuseTime, reuseCount: DefaultReuseCount,
			maxIdle:   o.MaxIdle,
			deadAfter: DefaultDeadAfter,
			// A dead period never outlasts the queue's retry delays: the
			// retry of a message deferred because its hop was dead should
			// find the hop probed again.
			deadMin:   bounded(DefaultDeadMin, o.MinBackoff),
			deadMax:   bounded(DefaultDeadMax, o.MaxBackoff),
			failedFor: o.MinBackoff,
			slotWait:  DefaultSlotWait,
			maxRcpts:  o.MaxRcptsPerTransaction,
		},
		limit:    newLimiter(o.InitialDestinationConcurrency, o.DestinationConcurrency, o.Concurrency),
		bufs:     sync.Pool{New: newBodyBufs},
		now:      time.Now,
		idle:     map[string][]*session{},
		hops:     map[string]*hopState{},
		failed:   map[string]time.Time{},
		resolver: o.Resolver,
		self:     o.Self,
		roots:    o.RootCAs,
		rng:      o.Rand,
	}
	if d.self == nil {
		d.self = matchSelf(o.Hostname, nil)
	}
	d.routes.Store(&o.Routes)
	d.SetTLSPolicy(o.TLS)
	return d
}

// bounded is d, but at most limit if limit is positive.
func bounded(d, limit time.Duration) time.Duration {
	if limit > 0 {
		return min(d, limit)
	}
	return d
}

// Deliver implements queue.Deliverer: it groups the recipients by
// destination (destination.go) and delivers to the destinations in
// parallel, so that a slow one does not hold up the others; per
// destination, transactions of at most max_rcpts_per_transaction
// recipients run one after the other.
func (d *Deliverer) Deliver(ctx context.Context, msg *queue.Message) []queue.Result {
	dests, results := d.destinations(msg.Rcpts)
	if len(dests) == 1 {
		return append(results, d.deliverDest(ctx, msg, dests[0])...)
	}
	per := make([][]queue.Result, len(dests))
	var wg sync.WaitGroup
	for i, dest := range dests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			per[i] = d.deliverDest(ctx, msg, dest)
		}()
	}
	wg.Wait()
	for _, rs := range per {
		results = append(results, rs...)
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

// allFailed gives every recipient the result of f.
func allFailed(rcpts []string, f failure) []queue.Result {
	return all(rcpts, f.relay, f.code, f.enh, f.text)
}

// walk delivers msg to rcpts in one transaction at the first of targets
// that works (RFC 5321 section 5.1: on to the next address on a
// connection failure, a 4xx or 5xx greeting or EHLO, 421, or a TLS policy
// failure). Per target: a cached connection if there is one (and if it
// turns out to be closed, a new one), else a new connection, unless the
// hop is marked dead. connected reports that some address got as far as
// a transaction; connFailed that every address tried failed to connect.
func (d *Deliverer) walk(ctx context.Context, msg *queue.Message, targets []*target, rcpts []string) (rs []queue.Result, connected, connFailed bool) {
	body, err := msg.Open()
	if err != nil {
		d.log.Error("cannot open queued message", "queue_id", msg.ID, "err", err)
		return all(rcpts, "", 451, "4.3.0", "local error reading queued message"), false, false
	}
	defer body.Close()

	// The recipients get the last failure, except that a failure without
	// word from a server (connect, dead hop) does not replace one with
	// (a reply, a TLS policy failure): "certificate not accepted at MX
	// 10" says more than "connection refused at MX 20".
	var last failure
	note := func(f failure) {
		if last.text == "" || last.conn || !f.conn {
			last = f
		}
	}
	tried, connFails := 0, 0
	for _, t := range targets {
		if ctx.Err() != nil {
			break
		}
		if t.fail != nil {
			note(*t.fail)
			continue
		}
		probe, deadText := d.admit(t.hop)
		if deadText != "" {
			note(failure{enh: "4.4.1", text: deadText, relay: t.hop, conn: true})
			continue
		}
		if !probe { // a probe tests a new connection
			if s := d.take(t.plan.cacheKey(t.hop)); s != nil {
				// RSET goes with the transaction (transact): a connection
				// the next hop dropped is found there, and retried here.
				s.c.CommandTimeout = d.replyTimeout
				rs, retry := d.run(ctx, s, msg, body, rcpts, true)
				if !retry {
					return rs, true, false
				}
				d.log.Debug("cached connection lost, reconnecting", "queue_id", msg.ID, "relay", s.relay,
					"age", d.now().Sub(s.created).Round(time.Millisecond).String())
			}
		}
		tried++
		s, f := d.connect(ctx, t, probe)
		if s == nil {
			note(f)
			if f.conn {
				connFails++
				d.noteFailed(t.hop)
			}
			if len(targets) > 1 {
				d.log.Info("next hop failed", "queue_id", msg.ID, "relay", f.relay, "reason", f.text)
			}
			continue
		}
		rs, retry := d.run(ctx, s, msg, body, rcpts, false)
		if !retry {
			return rs, true, false
		}
		// 421 or a lost connection before anything was accepted: the next
		// address.
		note(failure{code: rs[0].Code, enh: rs[0].Enhanced, text: rs[0].Text, relay: rs[0].Relay})
		connected = true
	}
	if last.text == "" {
		last = failure{enh: "4.4.1", text: "no address to try"}
	}
	return allFailed(rcpts, last), connected, tried > 0 && connFails == tried
}

// next says what becomes of a session after a transaction.
type next int

const (
	drop  next = iota // broken, closing or cancelled: close without QUIT
	keep              // may be reused: RSET goes first in the next transaction
	reset             // a transaction may still be open: reused the same way (RSET first)
)

// run runs one transaction on s and then caches or closes s. retry
// reports that the connection turned out to be closed before any message
// data was sent (the network failed or the next hop said 421 to MAIL):
// the caller may try again, on a new connection if s was a cached one,
// else at the next address; the results then say why (all recipients
// alike). Nothing is retried once message data was sent. The transaction
// itself is transact (transaction.go).
func (d *Deliverer) run(ctx context.Context, s *session, msg *queue.Message, body io.Reader, rcpts []string, reused bool) (results []queue.Result, retry bool) {
	stop := context.AfterFunc(ctx, func() { s.raw.Close() })
	after := drop
	defer func() {
		if after == reset {
			after = keep // the RSET before reuse ends the open transaction
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

	utf8 := msg.UTF8
	if utf8 {
		if ok, _ := s.c.Extension("SMTPUTF8"); !ok {
			need, err := needsUTF8(msg, rcpts)
			if err != nil {
				d.log.Error("reading queued message failed", "queue_id", msg.ID, "err", err)
				after = keep
				return all(rcpts, s.relay, 451, "4.3.0", "local error reading queued message"), false
			}
			if need {
				// RFC 6531 section 3.4: no downgrade; return the message.
				after = keep
				return all(rcpts, s.relay, 550, "5.6.7", "next hop does not support SMTPUTF8, which this message requires"), false
			}
			utf8 = false // announced, not needed: sent without (utf8.go)
		}
	}
	if msg.Body == "8BITMIME" {
		if ok, _ := s.c.Extension("8BITMIME"); !ok {
			// RFC 6152 section 3: 8-bit data only to a server that
			// announces 8BITMIME; mxedge does not convert to 7 bit, so
			// the message is returned (RFC 3463: 5.6.3 conversion
			// required but not supported). go-smtp adds BODY=8BITMIME
			// to MAIL whenever the server announces it.
			after = keep
			return all(rcpts, s.relay, 550, "5.6.3", "next hop does not support 8BITMIME, which this message requires"), false
		}
	}
	results, after, retry = d.transact(ctx, s, msg, body, rcpts, reused, utf8)
	return results, retry
}

// closing reports whether a reply code means the connection is gone: no
// reply at all, or 421 (RFC 5321 section 3.8: the server closes the
// channel after it).
func closing(code int) bool { return code == 0 || code == 421 }

// data sends the body through w (DATA was answered 354) and returns the
// reply to the final "." and what becomes of the session; over LMTP also
// each recipient's reply (per), which overrides the one reply for those
// it names.
func (d *Deliverer) data(s *session, msg *queue.Message, body io.Reader, w *smtp.DataCommand) (code int, enh, text string, after next, per map[string]lmtpReply) {
	bufs := d.bufs.Get().(*bodyBufs)
	bw := &bodyWriter{conn: s.nc, timeout: d.dataTimeout, chunk: bodyChunk, out: bufs.out[:0], crlf: msg.CRLF}
	var readErr, netErr error
	tcp, plain := s.nc.(*net.TCPConn)
	if head, f, n, ok := spoolParts(body); ok && plain && msg.CRLF && msg.NoDotLines {
		// As stored is as sent: the file goes to the socket by sendfile(2),
		// without passing through this process (TLS needs it to).
		d.sentFiles.Add(1)
		readErr, netErr = bw.sendFile(tcp, head, f, n)
	} else {
		readErr, netErr = bw.send(body, bufs.in)
	}
	bufs.out = bw.out[:0]
	d.bufs.Put(bufs)
	// On an error, closing the connection without the final "." makes the
	// next hop discard the partial message.
	if readErr != nil {
		d.log.Error("reading queued message failed", "queue_id", msg.ID, "err", readErr)
		return 451, "4.3.0", "local error reading queued message", drop, nil
	}
	if netErr != nil {
		code, enh, text := describe(netErr)
		return code, enh, text, drop, nil
	}
	w.SentRaw() // bodyWriter wrote the end of data
	if s.lmtp {
		per, rest, after := closeLMTP(w)
		return rest.code, rest.enh, rest.text, after, per
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		code, enh, text := describe(err)
		if closing(code) {
			return code, enh, text, drop, nil
		}
		// Any reply to "." ends the transaction (RFC 5321 section 4.1.1.4).
		return code, enh, text, keep, nil
	}
	enh, text = splitEnhanced(resp.StatusText)
	return 250, enh, text, keep, nil
}

// spoolParts returns the parts of a queued message read from a spool file
// (queue.Message.Open of a message over the inline limit: its reader has
// Spooled), ok false for any other.
func spoolParts(body io.Reader) (head []byte, f *os.File, n int64, ok bool) {
	sp, ok := body.(interface {
		Spooled() (head []byte, f *os.File, n int64, ok bool)
	})
	if !ok {
		return nil, nil, 0, false
	}
	return sp.Spooled()
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

// SetRoutes replaces the fixed next hops ([routes], a configuration
// reload): deliveries and probes that look up their route from now on
// take the new ones; attempts in flight finish with their hop.
func (d *Deliverer) SetRoutes(routes map[string]string) { d.routes.Store(&routes) }

// TLSPolicy is the outbound TLS policy of a Deliverer (tlspolicy.go):
// Options.TLS, which SetTLSPolicy replaces.
type TLSPolicy struct {
	Domains map[string]string // per domain: "none", "may", "encrypt", "verify", "dane"
	Default string            // the level of the other domains ["may"]
	// STS is the source of MTA-STS policies (RFC 8461); nil: none apply.
	STS STS
	// DANE is the DANE implementation (RFC 7672); nil: no TLSA record is
	// looked up, and the level "dane" defers every delivery.
	DANE DANE
}

// SetTLSPolicy replaces the outbound TLS policy (a configuration reload):
// every delivery attempt and probe that plans its TLS from now on takes
// p; attempts in flight finish under the policy they started with. Cached
// connections are reused only under an equally strict plan, so a stricter
// policy opens new ones.
func (d *Deliverer) SetTLSPolicy(p TLSPolicy) {
	if p.Default == "" {
		p.Default = levelMay
	}
	d.tls.Store(&p)
}
