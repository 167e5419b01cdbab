package queue

import (
	"context"
	"fmt"
	"strings"

	"github.com/mxedge/mxedge/dsn"
)

// ContentFilter is the queue's contract with content filtering after the
// queue (Options.ContentFilter, nil for none): a milter that looks at authenticated,
// submitted mail, which cannot cause backscatter and whose sender can be
// told (shared/PRINCIPLES.md).
//
// Filter is called once per message before its first delivery attempt,
// before the Signer (so a signature covers the fields the filter adds), and
// never again once it returned without error; it decides itself which
// messages it looks at (by msg.Origin) and returns the zero Verdict for the
// others. It reads the message through msg.Open, must honour ctx, and is
// called concurrently for different messages.
//
//   - A Verdict without Hold passes the message; its Fields (complete
//     header fields, checked like Incoming.Prepend) go on top, stored with
//     the attempt's results like the Signer's output.
//   - Hold: the message is held (off the schedule, "queue list -state
//     hold", reason in Envelope.HoldReason) and the sender gets a failure
//     report for every pending recipient with Reply as the diagnostic, so
//     the user learns at once why; an admin can still release it ("mxedge
//     queue release": delivered then, not filtered again) or delete it.
//   - An error (the filter down, a timeout): nothing is sent; the attempt
//     counts as a temporary failure of every pending recipient ("content
//     filter failed", 4.3.0), retried with the normal backoff, like a
//     failed signing: a broken filter never lets mail through unfiltered
//     and never loses it.
//
// Example: a ContentFilter that holds every message with "X-Spam: yes"
//
//	func (spam) Filter(ctx context.Context, m *queue.Message) (queue.Verdict, error) {
//		h, err := headerOf(m) // reads m.Open()
//		if err != nil {
//			return queue.Verdict{}, err
//		}
//		if h.Get("X-Spam") == "yes" {
//			return queue.Verdict{Hold: true, Reply: "550 5.7.1 Message looks like spam"}, nil
//		}
//		return queue.Verdict{}, nil
//	}
type ContentFilter interface {
	Filter(ctx context.Context, msg *Message) (Verdict, error)
}

// Verdict is a Filter's decision.
type Verdict struct {
	Fields []byte // header fields to add on top; nil for none
	Hold   bool   // hold the message and report to the sender
	// Reply is the filter's reply for a held message ("550 5.7.1 Spam"):
	// the hold reason and the report's diagnostic.
	Reply string
}

// filter runs the ContentFilter on env before its first attempt. held: the
// message was held (and the attempt is over).
func (q *Queue) filter(ctx context.Context, env *Envelope) (held bool, err error) {
	v, err := q.opts.ContentFilter.Filter(ctx, q.message(env))
	if err != nil {
		return false, err
	}
	if v.Hold {
		q.holdFiltered(env, v.Reply)
		return true, nil
	}
	if len(v.Fields) > 0 {
		if len(v.Fields) > MaxPrepend {
			return false, fmt.Errorf("filter output over %d bytes", MaxPrepend)
		}
		if err := CheckFields(v.Fields); err != nil {
			return false, fmt.Errorf("filter output: %w", err)
		}
		env.signature = append(append([]byte(nil), v.Fields...), env.signature...)
		env.Size += int64(len(v.Fields))
	}
	env.Filtered = true
	return false, nil
}

// holdFiltered holds env on a filter's verdict and reports to its sender.
func (q *Queue) holdFiltered(env *Envelope, reply string) {
	now := q.now()
	if reply == "" {
		reply = "550 5.7.1 Message refused by the content filter"
	}
	status := "5.7.1"
	if f := strings.Fields(reply); len(f) > 1 && strings.Count(f[1], ".") == 2 && (f[1][0] == '5' || f[1][0] == '4') {
		status = "5" + f[1][1:] // the report is a failure report
	}
	env.Filtered, env.Held, env.HoldReason = true, true, reply
	pending := env.pendingRcpts()
	for _, rc := range pending {
		rc.LastReply, rc.DSN, rc.LastTry = reply+" (held for review)", status, now
	}
	// The report first: a crash before the hold is stored repeats the
	// filter and the report rather than losing the report.
	q.sendReport(env, dsn.Failed, wanting(pending, dsn.Failed))
	if err := q.save(env, env.NextAttempt); err != nil {
		q.log.Error("storing hold failed", "queue_id", env.ID, "err", err)
	} else {
		q.log.Warn("held by content filter", "queue_id", env.ID, "from", "<"+env.From+">", "reply", reply)
	}
	q.setInflight(env.ID, false)
}
