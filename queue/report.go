package queue

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/mxedge/mxedge/dsn"
)

// Delivery status notifications (RFC 3464), queued through the same durable
// path as received mail, from the null sender, so that they are never
// bounced themselves (RFC 5321 section 4.5.5).
//
// When: after each attempt, the recipients that failed in it (5xx, or
// expired after the queue lifetime with status 4.4.7) are reported in one
// DSN; a message that fails in one attempt therefore gets exactly one DSN.
// NOTIFY decides per recipient (default FAILURE,DELAY; NEVER suppresses).
// A message from <> is never bounced: its failure is logged and, if
// Options.Postmaster is set, reported to the postmaster. Reports we generate
// ourselves (Envelope.Notice) get no report of any kind, so no loop.

// bounceSizeLimit is the largest original returned whole in a report when
// the sender gave no RET (Postfix bounce_size_limit).
const bounceSizeLimit = 50000

// wants reports whether rc asked for a report of action a.
func (rc *Rcpt) wants(a dsn.Action) bool { return dsn.NotifyWants(rc.Notify, a) }

// sendReport queues one DSN about env for rcpts.
func (q *Queue) sendReport(env *Envelope, action dsn.Action, rcpts []*Rcpt) {
	if len(rcpts) == 0 || env.Notice {
		return
	}
	to := env.From
	if to == "" {
		addrs := make([]string, len(rcpts))
		for i, rc := range rcpts {
			addrs[i] = rc.Addr
		}
		q.log.Warn("undeliverable message from <> not returned", "queue_id", env.ID,
			"action", string(action), "to", strings.Join(addrs, ","))
		if q.opts.Postmaster == "" || action != dsn.Failed {
			return
		}
		to = q.opts.Postmaster
	}
	id, err := q.queueReport(env, action, rcpts, to)
	if err != nil {
		// The message itself stays intact; the report is lost. Logged
		// loudly: an operator must know that a sender was not told.
		q.log.Error("queueing delivery status notification failed", "queue_id", env.ID,
			"action", string(action), "to", "<"+to+">", "err", err)
		return
	}
	q.log.Info("report", "queue_id", env.ID, "action", string(action), "to", "<"+to+">",
		"nrcpt", len(rcpts), "report_id", id)
}

func (q *Queue) queueReport(env *Envelope, action dsn.Action, rcpts []*Rcpt, to string) (string, error) {
	orig, err := q.openMessage(env)
	if err != nil {
		return "", err
	}
	defer orig.Close()
	now := q.now()
	maxFull := int64(bounceSizeLimit)
	if env.Ret == "FULL" {
		maxFull = 1 << 20
	}
	r := &dsn.Report{
		ReportingMTA: q.opts.Hostname,
		From:         "MAILER-DAEMON@" + q.opts.Hostname,
		To:           to,
		EnvelopeID:   env.EnvID,
		QueueID:      env.ID,
		ArrivalDate:  env.Arrival,
		Date:         now,
		Original:     orig,
		// RFC 3461 section 4.3: RET=HDRS returns the header section,
		// RET=FULL the message (up to 1 MiB); without RET, like Postfix
		// (bounce_size_limit), the message when it is small.
		ReturnFull: env.Ret != "HDRS",
		MaxFull:    maxFull,
		SMTPUTF8:   env.UTF8,
	}
	for _, rc := range rcpts {
		dr := dsn.Recipient{
			FinalRecipient:    rc.Addr,
			OriginalRecipient: rc.ORcpt,
			Action:            action,
			Status:            rc.DSN,
			RemoteMTA:         relayHost(rc.Relay),
			DiagnosticCode:    rc.LastReply,
			LastAttempt:       rc.LastTry,
		}
		if dr.Status == "" {
			dr.Status = map[dsn.Action]string{dsn.Failed: "5.0.0", dsn.Delayed: "4.0.0"}[action]
		}
		if action == dsn.Delayed {
			dr.WillRetryUntil = env.Arrival.Add(q.lifetime(env))
		}
		r.Recipients = append(r.Recipients, dr)
	}
	in, err := q.NewMessage(Envelope{Rcpts: []Rcpt{{Addr: to, Notify: []string{"NEVER"}}}, Notice: true, UTF8: env.UTF8})
	if err != nil {
		return "", err
	}
	defer in.Abort()
	if err := dsn.Write(in, r); err != nil {
		return "", fmt.Errorf("queue: build report for %s: %w", env.ID, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := in.Commit(ctx); err != nil {
		return "", err
	}
	return in.ID(), nil
}

// relayHost extracts the host name from a Result.Relay value such as
// "mx.example.org:25 [192.0.2.1:25]" for Remote-MTA.
func relayHost(relay string) string {
	hop, _, _ := strings.Cut(relay, " ")
	if host, _, err := net.SplitHostPort(hop); err == nil {
		return strings.Trim(host, "[]")
	}
	return hop
}

// lifetime is how long env is retried.
func (q *Queue) lifetime(env *Envelope) time.Duration {
	if env.From == "" {
		return q.opts.BounceLifetime
	}
	return q.opts.MaxLifetime
}
