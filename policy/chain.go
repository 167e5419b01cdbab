package policy

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
)

// Chain is a listener's ordered list of checks per stage. Build it with
// Add before the listener starts; after that it is read-only and safe for
// concurrent use.
type Chain struct {
	connect []ConnectCheck
	helo    []HeloCheck
	mail    []MailCheck
	rcpt    []RcptCheck
	data    []DataCheck
	names   []string
	refused map[string]*atomic.Uint64 // by check name
}

// Add appends c to the chain of every stage it implements, in the order
// of the calls. It panics if c implements none (a programming error in the
// chain's construction).
func (ch *Chain) Add(c Check) *Chain {
	n := 0
	if x, ok := c.(ConnectCheck); ok {
		ch.connect, n = append(ch.connect, x), n+1
	}
	if x, ok := c.(HeloCheck); ok {
		ch.helo, n = append(ch.helo, x), n+1
	}
	if x, ok := c.(MailCheck); ok {
		ch.mail, n = append(ch.mail, x), n+1
	}
	if x, ok := c.(RcptCheck); ok {
		ch.rcpt, n = append(ch.rcpt, x), n+1
	}
	if x, ok := c.(DataCheck); ok {
		ch.data, n = append(ch.data, x), n+1
	}
	if n == 0 {
		panic(fmt.Sprintf("policy: check %q implements no stage", c.Name()))
	}
	if ch.refused == nil {
		ch.refused = map[string]*atomic.Uint64{}
	}
	if ch.refused[c.Name()] == nil {
		ch.refused[c.Name()] = new(atomic.Uint64)
		ch.names = append(ch.names, c.Name())
	}
	return ch
}

// Names lists the checks in the order they were added, once each.
func (ch *Chain) Names() []string { return append([]string(nil), ch.names...) }

// Stages lists, per stage, the names of its checks in order: the chain as
// the listener runs it (for logs and "mxedge config check").
func (ch *Chain) Stages() map[string][]string {
	out := map[string][]string{}
	add := func(stage string, c Check) { out[stage] = append(out[stage], c.Name()) }
	for _, c := range ch.connect {
		add("connect", c)
	}
	for _, c := range ch.helo {
		add("helo", c)
	}
	for _, c := range ch.mail {
		add("mail", c)
	}
	for _, c := range ch.rcpt {
		add("rcpt", c)
	}
	for _, c := range ch.data {
		add("data", c)
	}
	return out
}

// Refusals returns the number of refusals per check name so far.
func (ch *Chain) Refusals() map[string]uint64 {
	out := make(map[string]uint64, len(ch.refused))
	for name, n := range ch.refused {
		out[name] = n.Load()
	}
	return out
}

// Decision is what the chain concluded at one stage: the deciding result
// (Check names its check) or, when no check refused, the accumulated
// headers and delays of all of them, and the first hold (Check names the
// check that asked for it).
type Decision struct {
	Result
	// Check is the name of the check that refused or accepted with OK;
	// "" when none did.
	Check string
	// Logged are the replies of checks in log-only mode that matched
	// before the decision, for the listener's log.
	Logged []Note
	// Pending, only at connect: the decision is not known yet because a
	// check returned a Later; Pending runs the rest of the stage (the
	// Laters and the results after the first one, in order) and returns
	// the final decision. The decision before it is not refused and not
	// OK. Call it once.
	Pending func(ctx context.Context) Decision
}

// Note is a log-only check's match: the reply it would have sent.
type Note struct {
	Check  string
	Reply  *Reply
	Reason string
}

// Refused reports whether the decision refuses the command.
func (d Decision) Refused() bool { return d.Reply != nil }

// Connect runs the connect checks, before the banner. Checks return at
// once; a check that returned a Later leaves the decision to
// Decision.Pending, and the checks after it are still called (so that
// their lookups start too) until one decides at once.
func (ch *Chain) Connect(ctx context.Context, c *Conn) Decision {
	var d Decision
	var rest []step // from the first Later on
	for _, x := range ch.connect {
		r := x.CheckConnect(ctx, c)
		if r.Later != nil {
			rest = append(rest, step{x.Name(), Result{Later: r.Later}})
			continue
		}
		r = enforce(r)
		if rest != nil {
			rest = append(rest, step{x.Name(), r})
			if r.Reply != nil || r.OK {
				break
			}
			continue
		}
		if ch.fold(&d, x.Name(), r) {
			return d
		}
	}
	if rest != nil {
		d.Pending = func(ctx context.Context) Decision {
			for _, st := range rest {
				r := st.r
				if r.Later != nil {
					r = r.Later(ctx)
					r.Later = nil
					r = enforce(r)
				}
				if ch.fold(&d, st.name, r) {
					return d
				}
			}
			return d
		}
	}
	return d
}

// step is a connect check's result waiting for the Later before it.
type step struct {
	name string
	r    Result
}

// Helo runs the HELO checks.
func (ch *Chain) Helo(ctx context.Context, c *Conn) Decision {
	return run(ch, ch.helo, func(x HeloCheck) Result { return x.CheckHelo(ctx, c) })
}

// Mail runs the MAIL checks.
func (ch *Chain) Mail(ctx context.Context, c *Conn, t *Txn) Decision {
	return run(ch, ch.mail, func(x MailCheck) Result { return x.CheckMail(ctx, c, t) })
}

// Rcpt runs the RCPT checks for r.
func (ch *Chain) Rcpt(ctx context.Context, c *Conn, t *Txn, r Rcpt) Decision {
	return run(ch, ch.rcpt, func(x RcptCheck) Result { return x.CheckRcpt(ctx, c, t, r) })
}

// Data runs the DATA checks on m. Headers of every check that did not
// refuse are collected in order.
func (ch *Chain) Data(ctx context.Context, c *Conn, t *Txn, m Message) Decision {
	return run(ch, ch.data, func(x DataCheck) Result { return x.CheckData(ctx, c, t, m) })
}

// Streams returns the stream writers of the DATA checks that want the
// data while it arrives (Streamer); see Streamer for their life.
func (ch *Chain) Streams(ctx context.Context, c *Conn, t *Txn) []StreamWriter {
	var out []StreamWriter
	for _, x := range ch.data {
		if s, ok := x.(Streamer); ok {
			if w := s.Stream(ctx, c, t); w != nil {
				out = append(out, StreamWriter{Check: x.Name(), WriteCloser: w})
			}
		}
	}
	return out
}

// HasConnect reports whether the chain has connect checks.
func (ch *Chain) HasConnect() bool { return len(ch.connect) > 0 }

// HasData reports whether the chain has DATA checks (else the listener
// need not offer them the message).
func (ch *Chain) HasData() bool { return len(ch.data) > 0 }

// StreamWriter is one Streamer's writer, named by its check.
type StreamWriter struct {
	Check string
	io.WriteCloser
}

// run runs one stage's checks in order: the first refusal or OK decides;
// delays add up (capped), headers and log-only matches collect.
func run[C Check](ch *Chain, checks []C, call func(C) Result) Decision {
	var d Decision
	for _, c := range checks {
		r := call(c)
		r.Later = nil // only for connect checks
		if ch.fold(&d, c.Name(), enforce(r)) {
			break
		}
	}
	return d
}

// fold adds check name's result r to d and reports whether it decides.
func (ch *Chain) fold(d *Decision, name string, r Result) bool {
	d.Delay = min(d.Delay+r.Delay, MaxDelay)
	if r.Logged != nil && r.Reply == nil && !r.OK {
		d.Logged = append(d.Logged, Note{Check: name, Reply: r.Logged, Reason: r.Reason})
	}
	if r.Reply != nil || r.OK || r.Discard {
		r.Delay = d.Delay
		r.Headers = nil
		r.Logged = nil
		*d = Decision{Result: r, Check: name, Logged: d.Logged}
		if r.Reply != nil {
			ch.refused[name].Add(1)
		}
		return true
	}
	d.Headers = append(d.Headers, r.Headers...)
	if r.Hold && !d.Hold {
		d.Hold, d.Reason, d.Check = true, r.Reason, name
	}
	return false
}

// enforce applies the contract to a check's result: an internal error is
// a 4xx, never a 5xx and never an acceptance; a refusal cannot also be OK.
func enforce(r Result) Result {
	if r.Delay < 0 {
		r.Delay = 0
	}
	if r.Err != nil {
		r.OK, r.Discard = false, false
		if r.Reply == nil || r.Reply.Code/100 != 4 {
			r.Reply = TempLocal()
		}
	}
	if r.Reply != nil {
		r.OK, r.Discard = false, false
		if c := r.Reply.Code; c < 400 || c > 599 {
			// Not a refusal: a check bug, answered as an internal error.
			r.Err = fmt.Errorf("policy: reply code %d is not a refusal", c)
			r.Reply = TempLocal()
		}
	}
	if r.Reply == nil || r.Reply.Code/100 != 4 {
		r.EndSession = false // only a deferral ends a session after its transaction
	}
	return r
}
