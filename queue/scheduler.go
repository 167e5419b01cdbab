package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mxedge/mxedge/dsn"
)

// ErrNotFound is returned for a queue ID that is not (or no longer) queued.
var ErrNotFound = errors.New("no such message")

// Message is one delivery attempt's view of a queued message.
type Message struct {
	ID      string
	From    string   // reverse-path, "" for the null sender
	Rcpts   []string // recipients still pending, each exactly once
	Arrival time.Time
	Size    int64
	Body    string // MAIL BODY= value to pass on: "", "7BIT" or "8BITMIME"
	UTF8    bool   // SMTPUTF8 is required
	CRLF    bool   // the data has CRLF line endings only (Envelope.CRLF)
	// NoDotLines: and no line of the data starts with "." (Envelope.NoDotLines)
	NoDotLines bool
	Attempt    int    // 1 for the first attempt (failed signing counts, see Signer)
	Origin     Origin // where the message came from
	// DSN parameters (RFC 3461) to pass to a next hop that announces DSN:
	// RET and ENVID of MAIL, NOTIFY and ORCPT per pending recipient (only
	// those that gave any are in Params).
	Ret    string // "FULL", "HDRS" or ""
	EnvID  string // decoded
	Params map[string]RcptParams

	open func() (io.ReadCloser, error)
}

// Open returns the message as stored, as it is to be sent: the header
// block (Signer output, then the fields prepended while it was received),
// then the data (trace headers, then what the client sent), with CRLF line
// endings and without dot-stuffing; Size bytes. The caller closes it.
func (m *Message) Open() (io.ReadCloser, error) { return m.open() }

// RcptParams are a recipient's DSN parameters from its RCPT (RFC 3461
// sections 4.1, 4.2), as Rcpt stores them.
type RcptParams struct {
	Notify []string // e.g. ["FAILURE","DELAY"], ["NEVER"]; nil = none given
	ORcpt  string   // "rfc822;user@example.org" (decoded), "" = none
}

// Result is the outcome of one attempt for one recipient.
type Result struct {
	Rcpt string
	// Code is the SMTP reply code that decided the outcome: 2xx delivered,
	// 5xx failed permanently, anything else (4xx, or 0 when there was no
	// reply: connection refused, timeout, TLS failure) deferred.
	Code     int
	Enhanced string // enhanced status code, e.g. "5.1.1"; derived from Code if empty
	Text     string // reply text or error, without internal detail that must not reach a bounce
	Relay    string // next hop that answered, e.g. "backend.example[10.0.0.5]:25"
	// Class is how the deliverer chose the next hop, for Observer:
	// "route" (a fixed next hop), "mx" (MX lookup) or "smarthost"; ""
	// when it found none (no route, no result).
	Class string
	// DSNPassed: the next hop announced DSN and accepted the recipient
	// with its DSN parameters, so any success report is its job (RFC
	// 3461 section 5.2.1); without it a delivered recipient that asked
	// for NOTIFY=SUCCESS gets a "relayed" report from this relay
	// (section 5.2.2).
	DSNPassed bool
}

// Deliverer is the queue's contract with the delivery stage.
//
// Deliver attempts msg for every address in msg.Rcpts and returns one Result
// per address. It is called concurrently for different messages and must
// not keep msg after returning. It must honour ctx: when ctx is cancelled it
// returns promptly, reporting unfinished recipients as deferred (Code 0). A
// recipient without a Result is deferred. Deliver never retries by itself:
// the queue owns the retry schedule.
//
// Example: a Deliverer that drops everything
//
//	func (discard) Deliver(ctx context.Context, m *queue.Message) []queue.Result {
//		var rs []queue.Result
//		for _, r := range m.Rcpts {
//			rs = append(rs, queue.Result{Rcpt: r, Code: 250, Text: "discarded"})
//		}
//		return rs
//	}
type Deliverer interface {
	Deliver(ctx context.Context, msg *Message) []Result
}

// Signer is the queue's contract with message signing (DKIM for submitted
// mail; Options.Signer, nil for none).
//
// Sign is called by the scheduler once per message, before its first
// delivery attempt, and never again once it returned without error; our
// own reports (bounces, delay notices) are messages like any other and are
// signed too (the signer decides, e.g. by sender domain). It reads the
// message through msg.Open, must not keep msg after returning and must
// honour ctx. It returns header fields to put on top of the message (e.g.
// one DKIM-Signature field), checked like Incoming.Prepend (CheckFields, at
// most MaxPrepend bytes), or nil to add nothing. It is called concurrently
// for different messages.
//
// Every attempt sends the same bytes: the output is on top of what the
// Deliverer reads in this attempt and every later one. It is stored
// without an fsync of its own: it goes into the heads entry (Envelope.Signed
// set) in the same group commit that stores the attempt's results. That is
// enough: a crash before that commit loses the attempt's outcome too, so
// after restart the message is still unsigned and unattempted and the next
// attempt is a fresh first one, signed anew (delivery is at least once
// anyway). If everything was delivered, nothing needs storing.
//
// On error (or malformed output) the message is not sent unsigned: the
// Deliverer is not called, the error is logged with the queue ID, and the
// attempt counts as a temporary failure of every pending recipient (last
// reply "message signing failed", 4.3.0; Attempts grows, so the normal
// backoff applies, delay warnings and the queue lifetime too). It is never
// a bounce by itself: a signer that cannot sign is a local, temporary
// problem. The next attempt calls Sign again.
//
// Example: a Signer that marks every message
//
//	func (mark) Sign(ctx context.Context, m *queue.Message) ([]byte, error) {
//		return []byte("X-Relayed-By: mx1.example.org\r\n"), nil
//	}
type Signer interface {
	Sign(ctx context.Context, msg *Message) ([]byte, error)
}

// Run schedules deliveries until ctx is cancelled, then stops starting new
// attempts and waits up to grace for attempts in flight, after which their
// context is cancelled; it returns when the last attempt's result has been
// stored. Call Close after Run returns.
func (q *Queue) Run(ctx context.Context, d Deliverer, grace time.Duration) error {
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	// Attempts run on up to Concurrency long-lived workers, started as
	// needed: a goroutine per attempt grew a fresh stack through the
	// delivery code every time (3 % of the CPU at 10 KiB x 20 sessions,
	// in runtime.copystack).
	var wg sync.WaitGroup
	work := make(chan *Envelope)
	workers := 0
	dispatch := func(env *Envelope) bool {
		select {
		case work <- env: // an idle worker
			return true
		default:
		}
		if workers < q.opts.Concurrency {
			workers++
			wg.Add(1)
			go func() {
				defer wg.Done()
				for env := range work {
					q.attempt(dctx, d, env)
				}
			}()
		}
		// A worker whose attempt just ended (its message no longer in
		// flight) may still be on its way back.
		select {
		case work <- env:
			return true
		case <-ctx.Done():
			return false
		}
	}
	// Fresh messages (handOff) start without the scan below, which
	// decodes each due record again.
	q.mu.Lock()
	q.running = true
	q.mu.Unlock()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var next time.Time
		free := q.opts.Concurrency - q.inflightCount()
		if free <= 0 {
			q.setBacklog(true) // woken by a message that found no free worker, or a retry
		} else {
			msgs, n, err := q.due(q.now(), free)
			if err != nil {
				q.log.Error("queue scan failed", "err", err)
				n = q.now().Add(time.Second)
			}
			next = n
			for _, env := range msgs {
				env, ok := q.claimDue(env)
				if !ok {
					continue
				}
				if !dispatch(env) {
					q.setInflight(env.ID, false) // shutting down: not attempted
				}
			}
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(q.now()), time.Millisecond)
		}
		timer.Reset(wait)
		if !q.await(ctx, dispatch, timer.C) {
			q.stopFresh()
			close(work)
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(grace):
				cancel()
				<-done
			}
			return nil
		}
	}
}

// await dispatches fresh messages until the scheduler is woken or its
// timer fires (true), or ctx is done (false).
func (q *Queue) await(ctx context.Context, dispatch func(*Envelope) bool, timer <-chan time.Time) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case env := <-q.fresh:
			if !dispatch(env) {
				q.setInflight(env.ID, false) // shutting down: not attempted
			}
		case <-q.wakeCh:
			return true
		case <-timer:
			return true
		}
	}
}

// stopFresh ends the hand-over of fresh messages when Run stops; those
// not started yet stay due, for the next Run.
func (q *Queue) stopFresh() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.running = false
	for {
		select {
		case env := <-q.fresh:
			q.endInflightLocked(env.ID)
		default:
			return
		}
	}
}

func (q *Queue) inflightCount() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.inflight)
}

func (q *Queue) isInflight(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.inflight[id]
}

// isInflightKey is isInflight for an ID in a schedule key, without
// making it a string.
func (q *Queue) isInflightKey(id []byte) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.inflight[string(id)]
}

// setBacklog notes whether due messages may be waiting for a worker.
func (q *Queue) setBacklog(on bool) {
	q.mu.Lock()
	q.backlog = on
	q.mu.Unlock()
}

// claimFresh marks a message about to be committed in flight, for Run to
// start it without looking for it (handOff): only while Run takes fresh
// messages, fewer than Concurrency are in flight and no due message
// waits (backlog: a new message does not overtake older due ones, such
// as retries, while the workers are all busy; the schedule serves them
// in next-attempt order). Claimed before the commit, the message is in
// flight the moment it exists, so an admin change in between is noted
// (touch) as for any attempt.
func (q *Queue) claimFresh(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.running || q.backlog || len(q.inflight) >= q.opts.Concurrency || q.inflight[id] {
		return false
	}
	q.inflight[id] = true
	return true
}

// handOff gives Run a committed message that claimFresh marked, as the
// stored record has it (a copy: the attempt changes its recipients, the
// caller keeps env). If Run stopped meanwhile the mark ends and the
// message waits for the next scan, as any due message.
func (q *Queue) handOff(env *Envelope) {
	e := *env
	e.Rcpts = append([]Rcpt(nil), env.Rcpts...)
	q.mu.Lock()
	sent := false
	if q.running {
		select {
		case q.fresh <- &e:
			sent = true
		default: // cannot happen (see Queue.fresh); the scan finds it
		}
	}
	if !sent {
		q.endInflightLocked(e.ID)
	}
	q.mu.Unlock()
	if !sent {
		q.wake()
	}
}

// claim marks id in flight unless it already is; false: someone else has
// it.
func (q *Queue) claim(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.inflight[id] {
		return false
	}
	q.inflight[id] = true
	return true
}

// claimDue claims a message that due listed and re-reads its record. due's
// read transaction may predate the end of an attempt of the same message
// (result saved, then the in-flight mark cleared): its envelope is then
// stale and a second attempt would repeat the first. The message is
// started only if the stored record still has the NextAttempt due saw and
// is not held; the fresh envelope is returned (due's own when the record
// is byte for byte the one it decoded).
func (q *Queue) claimDue(env *Envelope) (*Envelope, bool) {
	if !q.claim(env.ID) {
		return nil, false
	}
	var cur *Envelope
	err := q.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMsgs).Get([]byte(env.ID))
		switch {
		case v == nil:
			return ErrNotFound
		case env.raw != nil && bytes.Equal(v, env.raw):
			cur = env // the record due read: no change since
			return nil
		}
		var err error
		cur, err = decodeEnvelope(v)
		return err
	})
	env.raw = nil
	if err != nil || cur.Held || !cur.NextAttempt.Equal(env.NextAttempt) || cur.Attempts != env.Attempts {
		q.setInflight(env.ID, false)
		return nil, false
	}
	return cur, true
}

func (q *Queue) setInflight(id string, on bool) {
	q.mu.Lock()
	if on {
		q.inflight[id] = true
	} else {
		q.endInflightLocked(id)
	}
	q.mu.Unlock()
}

// endInflightLocked ends id's in-flight mark and with it any note of an
// admin change meanwhile (touch); q.mu is held.
func (q *Queue) endInflightLocked(id string) {
	delete(q.inflight, id)
	delete(q.touched, id)
}

// touch notes an admin change of id's record while it may be in flight.
func (q *Queue) touch(id string) {
	q.mu.Lock()
	if q.inflight[id] {
		q.touched[id] = true
	}
	q.mu.Unlock()
}

func (q *Queue) wasTouched(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.touched[id]
}

// message builds the view of env that the next delivery attempt gets.
func (q *Queue) message(env *Envelope) *Message {
	return &Message{
		ID: env.ID, From: env.From, Rcpts: env.pending(), Arrival: env.Arrival,
		Size: env.Size, Body: env.Body, UTF8: env.UTF8, CRLF: env.CRLF, NoDotLines: env.NoDotLines, Attempt: env.Attempts + 1, Origin: env.Origin,
		Ret: env.Ret, EnvID: env.EnvID, Params: env.pendingParams(),
		open: func() (io.ReadCloser, error) { return q.openMessage(env) },
	}
}

// pendingParams are the DSN parameters of the pending recipients that
// gave any.
func (env *Envelope) pendingParams() map[string]RcptParams {
	var m map[string]RcptParams
	for _, r := range env.Rcpts {
		if r.Status != StatusPending || len(r.Notify) == 0 && r.ORcpt == "" {
			continue
		}
		if m == nil {
			m = map[string]RcptParams{}
		}
		m[r.Addr] = RcptParams{Notify: r.Notify, ORcpt: r.ORcpt}
	}
	return m
}

// Message returns the queued message id as the next delivery attempt
// would see it (pending recipients only).
func (q *Queue) Message(id string) (*Message, error) {
	env, err := q.Get(id)
	if err != nil {
		return nil, err
	}
	return q.message(env), nil
}

// attempt runs one delivery attempt (signing the message first if it is
// its first) and stores its outcome.
func (q *Queue) attempt(ctx context.Context, d Deliverer, env *Envelope) {
	if q.opts.ContentFilter != nil && !env.Filtered && !env.Signed {
		held, err := q.filter(ctx, env)
		if err != nil {
			q.prepareFailed(env, "content filter failed", err)
			return
		}
		if held {
			return
		}
	}
	if q.opts.Signer != nil && !env.Signed {
		if err := q.sign(ctx, env); err != nil {
			q.signFailed(env, err)
			return
		}
	}
	msg := q.message(env)
	results := d.Deliver(ctx, msg)
	byRcpt := make(map[string]Result, len(results))
	for _, r := range results {
		byRcpt[r.Rcpt] = r
	}
	now := q.now()
	var failed, sent []*Rcpt // sent: delivered to a next hop without DSN
	for i := range env.Rcpts {
		rc := &env.Rcpts[i]
		if rc.Status != StatusPending {
			continue
		}
		r, ok := byRcpt[rc.Addr]
		if !ok {
			r = Result{Rcpt: rc.Addr, Text: "no delivery result"}
		}
		rc.Status, rc.LastReply, rc.DSN, rc.Relay, rc.LastTry = outcome(r.Code), r.reply(), r.dsn(), r.Relay, now
		q.log.Info("delivery", "queue_id", env.ID, "to", "<"+rc.Addr+">", "relay", r.Relay,
			"delay", now.Sub(env.Arrival).Round(time.Millisecond).String(), "attempt", msg.Attempt,
			"dsn", rc.DSN, "status", logStatus(rc.Status), "reply", rc.LastReply)
		if q.opts.Observer != nil {
			q.opts.Observer.Delivered(logStatus(rc.Status), r.Class, now.Sub(env.Arrival))
		}
		switch rc.Status {
		case StatusFailed:
			failed = append(failed, rc)
		case StatusDelivered:
			if !r.DSNPassed {
				sent = append(sent, rc)
			}
		}
	}
	env.Attempts++
	q.conclude(env, now, failed, sent)
}

// sign runs the Signer on env and keeps its output for this attempt: on
// top of what the attempt reads (env.signature), in env.Size, and marked
// Signed for save (see Signer).
func (q *Queue) sign(ctx context.Context, env *Envelope) error {
	fields, err := q.opts.Signer.Sign(ctx, q.message(env))
	switch {
	case err != nil:
		return err
	case len(fields) > MaxPrepend:
		return fmt.Errorf("signer output over %d bytes", MaxPrepend)
	}
	if err := CheckFields(fields); err != nil {
		return fmt.Errorf("signer output: %w", err)
	}
	// On top of what the Filter added; copied, the signer may reuse its buffer.
	env.signature = append(append([]byte(nil), fields...), env.signature...)
	env.Signed = true
	env.Size += int64(len(fields))
	return nil
}

// signFailed concludes an attempt whose signing failed: nothing was sent,
// every pending recipient stays pending with a local temporary failure.
func (q *Queue) signFailed(env *Envelope, err error) {
	q.prepareFailed(env, "message signing failed", err)
}

// prepareFailed concludes an attempt whose filter or signing failed
// (what): nothing was sent, every pending recipient stays pending with a
// local temporary failure.
func (q *Queue) prepareFailed(env *Envelope, what string, err error) {
	now := q.now()
	env.Attempts++
	q.log.Error(strings.Replace(what, "failed", "failed, message not sent", 1), "queue_id", env.ID, "attempt", env.Attempts, "err", err)
	for _, rc := range env.pendingRcpts() {
		rc.LastReply, rc.DSN, rc.LastTry = what+" (local error), not sent", "4.3.0", now
	}
	q.conclude(env, now, nil, nil)
}

// conclude finishes an attempt (or an admin action) on env: expires
// recipients past the queue lifetime, sends the reports due, and then
// removes env if nothing is pending or reschedules it with backoff.
// failed and sent are the recipients that reached that state just now
// (sent: only those whose success this relay reports, see
// Result.DSNPassed).
func (q *Queue) conclude(env *Envelope, now time.Time, failed, sent []*Rcpt) {
	pending := env.pendingRcpts()
	if len(pending) > 0 && now.Sub(env.Arrival) >= q.lifetime(env) {
		// Expiry is checked after a failed attempt: the rest is returned.
		for _, rc := range pending {
			rc.Status, rc.DSN = StatusFailed, "4.4.7"
			if rc.LastReply == "" {
				rc.LastReply = "message expired in the queue"
			}
			q.log.Info("expired", "queue_id", env.ID, "to", "<"+rc.Addr+">", "dsn", "4.4.7",
				"status", "bounced", "reply", rc.LastReply, "age", now.Sub(env.Arrival).Round(time.Second).String())
		}
		failed, pending = append(failed, pending...), nil
	}
	var delayed []*Rcpt
	if w := q.opts.DelayWarning; w > 0 && !env.Warned && len(pending) > 0 && now.Sub(env.Arrival) >= w {
		env.Warned = true
		delayed = pending
	}
	q.sendReport(env, dsn.Failed, wanting(failed, dsn.Failed))
	q.sendReport(env, dsn.Delayed, wanting(delayed, dsn.Delayed))
	q.sendReport(env, dsn.Relayed, wanting(sent, dsn.Relayed))

	old := env.NextAttempt
	var err error
	if len(pending) == 0 {
		if err = q.remove(env, old); err == nil {
			q.log.Info("removed", "queue_id", env.ID)
		}
	} else {
		env.NextAttempt = now.Add(q.backoff(env.Attempts))
		err = q.save(env, old)
	}
	if err != nil {
		// The old schedule entry stays due; keep the message marked in
		// flight for one backoff so a broken disk does not spin.
		q.log.Error("storing delivery result failed", "queue_id", env.ID, "err", err)
		time.AfterFunc(q.opts.MinBackoff, func() { q.setInflight(env.ID, false); q.wake() })
		return
	}
	q.setInflight(env.ID, false)
	// A freed worker matters to the scheduler only if due messages wait
	// for one; a new schedule entry may come before its timer.
	if len(pending) > 0 || q.hasBacklog() {
		q.wake()
	}
}

func (q *Queue) hasBacklog() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.backlog
}

func wanting(rcpts []*Rcpt, a dsn.Action) []*Rcpt {
	var out []*Rcpt
	for _, rc := range rcpts {
		if rc.wants(a) {
			out = append(out, rc)
		}
	}
	return out
}

// backoff is the delay before attempt n+1 after n failed attempts:
// MinBackoff * 2^(n-1), capped at MaxBackoff, times a random factor in
// [0.8, 1.2). Computed in float seconds: scaling an integer Duration first
// would truncate the factors.
func (q *Queue) backoff(n int) time.Duration {
	lo, hi := q.opts.MinBackoff.Seconds(), q.opts.MaxBackoff.Seconds()
	s := math.Min(lo*math.Pow(2, float64(max(n-1, 0))), hi)
	s *= 0.8 + 0.4*rand.Float64()
	return time.Duration(s * float64(time.Second))
}

func outcome(code int) Status {
	switch code / 100 {
	case 2:
		return StatusDelivered
	case 5:
		return StatusFailed
	}
	return StatusPending
}

func logStatus(s Status) string {
	switch s {
	case StatusDelivered:
		return "sent"
	case StatusFailed:
		return "bounced"
	}
	return "deferred"
}

// dsn returns the enhanced status code, derived from the reply class when
// the next hop gave none (RFC 3463: X.0.0).
func (r Result) dsn() string {
	if r.Enhanced != "" {
		return r.Enhanced
	}
	switch r.Code / 100 {
	case 2:
		return "2.0.0"
	case 5:
		return "5.0.0"
	}
	return "4.0.0"
}

func (r Result) reply() string {
	if r.Code == 0 {
		return r.Text
	}
	return strings.TrimSpace(strconv.Itoa(r.Code) + " " + r.dsn() + " " + r.Text)
}

func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
