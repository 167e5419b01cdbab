package verifycache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// Result is the outcome of one probe.
type Result string

const (
	ResultExists   Result = "exists"   // 2xx to RCPT TO
	ResultUnknown  Result = "unknown"  // 5xx to RCPT TO
	ResultTempfail Result = "tempfail" // anything else
)

// Probe stages, the last step a probe reached (ProbeResult.Stage).
const (
	stageRoute    = "route"
	stageLimit    = "limit"
	stageConnect  = "connect"
	stageGreeting = "greeting"
	stageMail     = "mail"
	stageRcpt     = "rcpt"
)

// ProbeResult is one probe as it went.
type ProbeResult struct {
	Addr   string `json:"addr"`
	Route  string `json:"route"`
	Result Result `json:"result"`
	// Reply is the reply that decided Result, one line
	// ("550 5.1.1 <x@example.org>: User unknown"), or what went wrong
	// ("connect to 10.0.0.25:25: connection refused").
	Reply string `json:"reply"`
	// Stage is the last step reached: route, limit, connect, greeting
	// (greeting and EHLO), mail, rcpt.
	Stage   string        `json:"stage"`
	Latency time.Duration `json:"latency_ns"`
	// Reused: the probe ran on a connection kept from an earlier probe.
	Reused bool `json:"reused"`
	// Refused: a 5xx that refused the probe rather than the address (to
	// the greeting, EHLO or MAIL, or with status X.3.X / X.5.X); a
	// configuration problem worth a warning. Result is tempfail.
	Refused bool `json:"refused,omitempty"`
	// Transcript is the dialogue, "C: " and "S: " lines (admin probes).
	Transcript []string `json:"transcript,omitempty"`
}

// prober runs probes over the Dialer, within the per-hop limits.
type prober struct {
	dialer   Dialer
	conf     atomic.Pointer[probeConf] // configure swaps it
	now      func() time.Time          // real time, for latencies
	features hopFeatures               // next hops' extensions, learnt from EHLO
}

// probeConf are a prober's settings (Options).
type probeConf struct {
	sender      string        // "" is the null sender
	timeout     time.Duration // whole probe
	stepTimeout time.Duration // each command's reply
	limits      *limiter
}

// configure takes o's settings for the probes that start from now on.
// The per-hop limits keep their state unless Concurrency or Rate changed.
func (p *prober) configure(o Options) {
	c := &probeConf{sender: o.ProbeSender, timeout: o.ProbeTimeout, stepTimeout: o.ReplyTimeout}
	if old := p.conf.Load(); old != nil && old.limits.conc == max(o.Concurrency, 1) && old.limits.perSec == o.Rate {
		c.limits = old.limits
	} else {
		c.limits = newLimiter(o.Concurrency, o.Rate)
	}
	p.conf.Store(c)
}

// probe verifies addr. transcript asks for a fresh connection (greeting
// included), a recorded dialogue and QUIT at the end; otherwise a cached
// connection is reused when there is one and given back afterwards.
func (p *prober) probe(ctx context.Context, addr string, transcript bool) ProbeResult {
	start := p.now()
	pc := p.conf.Load() // the settings of the whole probe
	ctx, cancel := context.WithTimeout(ctx, pc.timeout)
	defer cancel()
	res := ProbeResult{Addr: addr, Result: ResultTempfail, Stage: stageRoute}
	hops, err := p.dialer.Hops(ctx, domainOf(addr))
	if err == nil && len(hops) == 0 {
		err = errors.New("no next hop")
	}
	if err != nil {
		res.Reply = "route: " + sanitize(err.Error())
	}
	for _, hop := range hops {
		var r ProbeResult
		release, err := pc.limits.acquire(ctx, hop.String())
		if err != nil {
			r = ProbeResult{Addr: addr, Route: hop.String(), Result: ResultTempfail, Stage: stageLimit,
				Reply: "probe limit of " + hop.String() + ": " + reason(err)}
		} else {
			r = p.probeHop(ctx, pc, hop, addr, transcript)
			release()
		}
		if transcript && (r.Stage == stageConnect || r.Stage == stageLimit) {
			r.Transcript = append(r.Transcript, "-- "+r.Reply)
		}
		r.Transcript = append(res.Transcript, r.Transcript...)
		res = r
		// A reply to RCPT decides; a host that could not be asked does
		// not (the next one is tried, as delivery tries the next MX).
		if res.Stage == stageRcpt || ctx.Err() != nil {
			break
		}
	}
	res.Latency = p.now().Sub(start)
	return res
}

// probeHop runs the dialogue with one next hop, under the probe's
// settings pc: on a cached connection if there is one, and if that turns
// out to be closed, on a new one.
func (p *prober) probeHop(ctx context.Context, pc *probeConf, hop Hop, addr string, transcript bool) ProbeResult {
	for fresh := transcript; ; fresh = true {
		log := &dialogueLog{keep: transcript}
		var debug io.Writer
		if transcript {
			debug = log
		}
		res := ProbeResult{Addr: addr, Route: hop.String(), Result: ResultTempfail, Stage: stageConnect}
		c, err := hop.Dial(ctx, fresh, debug)
		if err != nil {
			var de *DialError
			switch {
			case errors.As(err, &de) && de.Stage == "greeting":
				res.Stage, res.Refused = stageGreeting, de.Refused
				res.Reply = sanitize(de.Text)
			case errors.As(err, &de):
				res.Reply = sanitize(de.Text)
			default:
				res.Reply = "connect to " + hop.String() + ": " + reason(err)
			}
			res.Transcript = log.lines
			return res
		}
		c.Client().DebugWriter = log
		r, stale := p.dialogue(ctx, pc, c, log, hop.String(), addr, transcript)
		if !stale {
			r.Reused = c.Reused()
			return r
		}
		// The cached connection was closed by the far end meanwhile:
		// start over on a new one.
	}
}

// dialogue runs MAIL and RCPT on a greeted connection and then gives it
// back (Release: the next user's RSET ends the transaction) or, for a
// transcript, says QUIT. Never DATA. stale reports a reused connection
// that failed before any reply (the far end closed it while idle): the
// caller retries on a new one.
func (p *prober) dialogue(ctx context.Context, pc *probeConf, c Conn, log *dialogueLog, route, addr string, transcript bool) (res ProbeResult, stale bool) {
	res = ProbeResult{Addr: addr, Route: route, Result: ResultTempfail, Stage: stageMail}
	cl := c.Client()
	// The connection is greeted: its EHLO reply is known (extensions.go).
	utf8, _ := cl.Extension("SMTPUTF8")
	p.features.note(domainOf(addr), utf8, p.now())
	var opts *smtp.MailOptions
	if !isASCII(addr) {
		opts = &smtp.MailOptions{UTF8: true} // RFC 6531 section 3.4
	}
	err := step(ctx, c, pc.stepTimeout, func() error { return cl.Mail(pc.sender, opts) })
	if err == nil {
		res.Stage = stageRcpt
		err = step(ctx, c, pc.stepTimeout, func() error { return cl.Rcpt(addr, nil) })
	}
	cl.DebugWriter = nil
	var se *smtp.SMTPError
	if err != nil && res.Stage == stageMail && c.Reused() && (!errors.As(err, &se) || se.Code == 421) {
		c.Abort()
		return res, true
	}
	res.Transcript = log.lines
	if err != nil && !isSMTPError(err) {
		// A network error: the connection is gone.
		c.Abort()
		p.fail(&res, err)
		return res, false
	}
	if err != nil {
		p.fail(&res, err)
	} else {
		res.Result = ResultExists
		res.Reply = log.last
		if res.Reply == "" {
			res.Reply = "250 (accepted)"
		}
	}
	if transcript {
		cl.DebugWriter = log
		_ = step(ctx, c, pc.stepTimeout, cl.Quit)
		res.Transcript = log.lines
		c.Abort()
	} else {
		c.Release()
	}
	return res, false
}

// fail classifies err, from the stage in res.Stage, into res.
func (p *prober) fail(res *ProbeResult, err error) {
	res.Result = ResultTempfail
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		switch {
		case res.Stage == stageConnect:
			res.Reply = "connect to " + res.Route + ": " + reason(err)
		default:
			res.Reply = "lost connection with " + res.Route + " in " + res.Stage + ": " + reason(err)
		}
		return
	}
	res.Reply = formatReply(se)
	if se.Code/100 != 5 {
		return
	}
	// A 5xx. Only a refusal of RCPT says the address does not exist, and
	// only if its status is about the address or policy: X.3.X (mail
	// system) and X.5.X (protocol) refuse the probe itself (RFC 3463).
	if res.Stage == stageRcpt && se.EnhancedCode[1] != 3 && se.EnhancedCode[1] != 5 {
		res.Result = ResultUnknown
		return
	}
	res.Refused = true
}

// formatReply writes a reply of the next hop as one printable line.
func formatReply(se *smtp.SMTPError) string {
	e := se.EnhancedCode
	msg := sanitize(se.Message)
	if e == (smtp.EnhancedCode{}) || e == smtp.NoEnhancedCode {
		return fmt.Sprintf("%d %s", se.Code, msg)
	}
	return fmt.Sprintf("%d %d.%d.%d %s", se.Code, e[0], e[1], e[2], msg)
}

// maxReply bounds a reply kept in the cache and quoted to clients (an SMTP
// reply line is at most 512 octets, RFC 5321 section 4.5.3.1.5).
const maxReply = 300

// sanitize makes text from the network safe to log, store and quote in
// our own replies: printable ASCII, lines joined, bounded.
func sanitize(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < maxReply; i++ {
		c := s[i]
		switch {
		case c == '\n' || c == '\r' || c == '\t':
			if b.Len() > 0 && !strings.HasSuffix(b.String(), " ") {
				b.WriteByte(' ')
			}
		case c < 0x20 || c >= 0x7f:
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	return strings.TrimSpace(b.String())
}

func isSMTPError(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se)
}

// reason is a short text for a network error.
func reason(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	return sanitize(err.Error())
}

// step runs one command of the dialogue: its reply within timeout and
// within ctx (whose end closes the connection, unblocking any read).
func step(ctx context.Context, c Conn, timeout time.Duration, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	c.Client().CommandTimeout = max(timeout, time.Millisecond)
	stop := context.AfterFunc(ctx, c.Abort)
	err := fn()
	if !stop() && err == nil {
		err = ctx.Err() // closed under the command: the connection is gone
		if err == nil {
			err = net.ErrClosed
		}
	}
	if err != nil && !isSMTPError(err) && ctx.Err() != nil {
		err = ctx.Err()
	}
	return err
}

// dialogueLog sees the bytes of the connection (go-smtp's DebugWriter:
// our commands and the server's replies, in order). It remembers the last
// reply line, and with keep the whole dialogue.
type dialogueLog struct {
	keep    bool
	partial []byte
	last    string
	lines   []string
}

// maxTranscript bounds a recorded dialogue.
const maxTranscript = 100

func (d *dialogueLog) Write(b []byte) (int, error) {
	d.partial = append(d.partial, b...)
	for {
		i := bytes.IndexByte(d.partial, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(d.partial[:i]), "\r")
		d.partial = d.partial[i+1:]
		isReply := len(line) >= 3 && line[0] >= '2' && line[0] <= '5' && line[1] >= '0' && line[1] <= '9' && line[2] >= '0' && line[2] <= '9'
		if isReply {
			d.last = sanitize(line)
		}
		if d.keep && len(d.lines) < maxTranscript {
			who := "C: "
			if isReply {
				who = "S: "
			}
			d.lines = append(d.lines, who+sanitize(line))
		}
	}
	if len(d.partial) > 4096 {
		d.partial = d.partial[:0]
	}
	return len(b), nil
}

func domainOf(addr string) string {
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		return addr[at+1:]
	}
	return ""
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
