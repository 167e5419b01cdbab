package submission

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-milter"

	"github.com/mxedge/mxedge/internal/milterclient"
	"github.com/mxedge/mxedge/policy"
	"github.com/mxedge/mxedge/queue"
)

// Milter is a mail filter (rspamd, clamav-milter, any milter) asked about
// submitted mail after the queue: a queue.ContentFilter, run once before
// the first delivery attempt (and before DKIM signing). Authenticated mail
// is filtered after the queue (shared/PRINCIPLES.md): it cannot cause
// backscatter, and the user gets a clear report instead of a cryptic SMTP
// error in a desktop client.
//
// The session is replayed to the filter as Postfix does it, with the
// macros rspamd and clamav-milter read ("i" queue ID, "j" our name,
// {client_addr}, {client_name}, {auth_authen}, {tls_version}, {mail_addr},
// {rcpt_addr}), the header fields, then the body in chunks of at most 64
// KiB read from the queue (never the whole message in memory).
//
// Verdicts: accept/continue passes (added header fields, e.g. rspamd's
// X-Spamd-Result, go on top of the message); reject, a 5xx reply code,
// discard and quarantine hold the message for review and send the user a
// report with the filter's reply; tempfail or a 4xx reply defers it (the
// queue retries). A filter that cannot be asked (down, timeout, protocol
// error) gets DefaultAction: "tempfail" (default: retried, never let
// through unfiltered), "accept" or "reject" (held).
type Milter struct {
	Name           string
	Network        string // "tcp" or "unix"
	Address        string
	ConnectTimeout time.Duration // [30s]
	CommandTimeout time.Duration // per command [30s]
	ContentTimeout time.Duration // per content command: header, body chunk, end [300s]
	DefaultAction  string        // "tempfail", "accept", "reject"
	Hostname       string        // macro j
	Logger         *slog.Logger
}

// ParseMilterAddress splits "inet:host:port", "inet6:[addr]:port" or
// "unix:/path" (Postfix's notation) into network and address.
func ParseMilterAddress(s string) (network, address string, err error) {
	return milterclient.ParseAddress(s)
}

// Milters asks each filter in order: the first hold (or deferral)
// decides; added fields collect.
type Milters []*Milter

// Filter implements queue.ContentFilter.
func (ms Milters) Filter(ctx context.Context, m *queue.Message) (queue.Verdict, error) {
	switch policy.Kind(m.Origin.Kind) {
	case policy.KindSubmission, policy.KindSubmissions:
	default:
		return queue.Verdict{}, nil // MX mail is filtered before the queue; our reports not at all
	}
	var fields []byte
	for _, f := range ms {
		v, err := f.check(ctx, m)
		if err != nil {
			return queue.Verdict{}, err
		}
		if v.Hold {
			return v, nil
		}
		fields = append(fields, v.Fields...)
	}
	return queue.Verdict{Fields: fields}, nil
}

// errDefer is a filter's tempfail verdict.
var errDefer = errors.New("milter: temporary failure")

// check asks one filter, applying DefaultAction when it cannot answer.
func (f *Milter) check(ctx context.Context, m *queue.Message) (queue.Verdict, error) {
	v, err := f.ask(ctx, m)
	if err == nil || errors.Is(err, errDefer) {
		return v, err
	}
	log := f.Logger
	if log == nil {
		log = slog.Default()
	}
	log.Warn("milter failed", "queue_id", m.ID, "milter", f.Name, "default_action", f.DefaultAction, "err", err)
	switch f.DefaultAction {
	case "accept":
		return queue.Verdict{}, nil
	case "reject":
		return queue.Verdict{Hold: true, Reply: "550 5.7.1 Message not checked by the content filter"}, nil
	}
	return queue.Verdict{}, fmt.Errorf("milter %s: %w", f.Name, err)
}

func (f *Milter) ask(ctx context.Context, m *queue.Message) (queue.Verdict, error) {
	o := m.Origin
	tlsVersion, _, _ := strings.Cut(o.TLS, " ")
	s, act, err := milterclient.Open(ctx, milterclient.Config{Name: f.Name, Network: f.Network, Address: f.Address,
		ConnectTimeout: f.ConnectTimeout, CommandTimeout: f.CommandTimeout, ContentTimeout: f.ContentTimeout,
		Hostname: f.Hostname}, milter.OptAddHeader|milter.OptQuarantine, milterclient.Envelope{
		QueueID: m.ID, ClientIP: o.ClientIP, ClientName: o.ClientName, Helo: o.Helo, AuthUser: o.AuthUser,
		TLSVersion: tlsVersion, From: m.From, Rcpts: m.Rcpts})
	if err != nil {
		return queue.Verdict{}, err
	}
	if act != nil {
		return f.verdict(m, act, nil)
	}
	defer s.Close()
	r, err := m.Open()
	if err != nil {
		return queue.Verdict{}, err
	}
	defer r.Close()
	br := bufio.NewReaderSize(r, 64<<10)
	hdr, err := textproto.ReadHeader(br)
	if err != nil {
		return queue.Verdict{}, fmt.Errorf("reading the message header: %w", err)
	}
	act, err = s.Header(hdr)
	if err != nil {
		return queue.Verdict{}, err
	}
	if act.Code != milter.ActContinue {
		return f.verdict(m, act, nil)
	}
	buf := make([]byte, milterclient.MaxChunk)
	for {
		n, err := io.ReadFull(br, buf)
		if n > 0 {
			act, err := s.Body(buf[:n])
			if err != nil {
				return queue.Verdict{}, err
			}
			if act.Code == milter.ActSkip {
				break
			}
			if act.Code != milter.ActContinue {
				return f.verdict(m, act, nil)
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return queue.Verdict{}, err
		}
	}
	mods, act, err := s.End()
	if err != nil {
		return queue.Verdict{}, err
	}
	return f.verdict(m, act, mods)
}

// verdict turns the filter's answer into the queue's.
func (f *Milter) verdict(m *queue.Message, act *milter.Action, mods []milter.ModifyAction) (queue.Verdict, error) {
	var v queue.Verdict
	for _, mod := range mods {
		switch mod.Code {
		case milter.ActAddHeader, milter.ActInsertHeader:
			if milterclient.ValidField(mod.HeaderName, mod.HeaderValue) {
				v.Fields = append(v.Fields, milterclient.Field(mod.HeaderName, mod.HeaderValue)...)
			}
		case milter.ActQuarantine:
			return f.hold(m, "550 5.7.1 Message quarantined by the content filter: "+milterclient.Printable(mod.Reason)), nil
		}
	}
	switch act.Code {
	case milter.ActAccept, milter.ActContinue:
		return v, nil
	case milter.ActReject:
		return f.hold(m, "550 5.7.1 Message rejected by the content filter"), nil
	case milter.ActDiscard:
		return f.hold(m, "550 5.7.1 Message discarded by the content filter"), nil
	case milter.ActTempFail:
		return v, errDefer
	case milter.ActReplyCode:
		reply := strconv.Itoa(act.SMTPCode) + " " + milterclient.Printable(act.SMTPText)
		if act.SMTPCode/100 == 4 {
			return v, fmt.Errorf("%w: %s", errDefer, reply)
		}
		return f.hold(m, reply), nil
	}
	return v, fmt.Errorf("milter %s: unexpected action %q", f.Name, act.Code)
}

func (f *Milter) hold(m *queue.Message, reply string) queue.Verdict {
	if f.Logger != nil {
		f.Logger.Info("milter verdict", "queue_id", m.ID, "milter", f.Name, "action", "hold", "reply", reply)
	}
	return queue.Verdict{Hold: true, Reply: reply}
}

var _ queue.ContentFilter = Milters(nil)
