package submission

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-milter"

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
	ContentTimeout time.Duration // the whole message, connect to verdict [300s]
	DefaultAction  string        // "tempfail", "accept", "reject"
	Hostname       string        // macro j
	Logger         *slog.Logger
}

// ParseMilterAddress splits "inet:host:port", "inet6:[addr]:port" or
// "unix:/path" (Postfix's notation) into network and address.
func ParseMilterAddress(s string) (network, address string, err error) {
	kind, rest, ok := strings.Cut(s, ":")
	switch {
	case ok && kind == "unix" && strings.HasPrefix(rest, "/"):
		return "unix", rest, nil
	case ok && (kind == "inet" || kind == "inet6"):
		if _, _, err := net.SplitHostPort(rest); err != nil {
			return "", "", fmt.Errorf("%q: %v", s, err)
		}
		return "tcp", rest, nil
	}
	return "", "", fmt.Errorf(`%q: want "inet:host:port", "inet6:[addr]:port" or "unix:/path"`, s)
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

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func (f *Milter) ask(ctx context.Context, m *queue.Message) (queue.Verdict, error) {
	ctx, cancel := context.WithTimeout(ctx, orDefault(f.ContentTimeout, 300*time.Second))
	defer cancel()
	cmd := orDefault(f.CommandTimeout, 30*time.Second)
	client := milter.NewClientWithOptions(f.Network, f.Address, milter.ClientOptions{
		Dialer:       &net.Dialer{Timeout: orDefault(f.ConnectTimeout, 30*time.Second)},
		ReadTimeout:  cmd,
		WriteTimeout: cmd,
		ActionMask:   milter.OptAddHeader | milter.OptQuarantine,
	})
	s, err := client.Session()
	if err != nil {
		return queue.Verdict{}, err
	}
	stop := context.AfterFunc(ctx, func() { s.Close() }) // the content timeout
	defer func() { stop(); s.Close() }()

	o := m.Origin
	ip, _ := netip.ParseAddr(o.ClientIP)
	name := o.ClientName
	if name == "" {
		name = "[" + o.ClientIP + "]"
	}
	tlsVersion, _, _ := strings.Cut(o.TLS, " ")
	if err := s.Macros(milter.CodeConn, "j", f.Hostname, "{client_addr}", o.ClientIP, "{client_name}", name,
		"{daemon_name}", "mxedge", "{auth_authen}", o.AuthUser, "{tls_version}", tlsVersion); err != nil {
		return queue.Verdict{}, err
	}
	family := milter.FamilyInet
	if ip.Is6() && !ip.Is4In6() {
		family = milter.FamilyInet6
	}
	steps := []func() (*milter.Action, error){
		func() (*milter.Action, error) { return s.Conn(name, family, 0, ip.Unmap().String()) },
		func() (*milter.Action, error) {
			if err := s.Macros(milter.CodeHelo, "{tls_version}", tlsVersion); err != nil {
				return nil, err
			}
			return s.Helo(o.Helo)
		},
		func() (*milter.Action, error) {
			if err := s.Macros(milter.CodeMail, "i", m.ID, "{mail_addr}", m.From, "{auth_authen}", o.AuthUser); err != nil {
				return nil, err
			}
			return s.Mail("<"+m.From+">", nil)
		},
	}
	for _, rc := range m.Rcpts {
		steps = append(steps, func() (*milter.Action, error) {
			if err := s.Macros(milter.CodeRcpt, "{rcpt_addr}", rc); err != nil {
				return nil, err
			}
			return s.Rcpt("<"+rc+">", nil)
		})
	}
	for _, step := range steps {
		act, err := step()
		if err != nil {
			return queue.Verdict{}, err
		}
		if act.Code != milter.ActContinue {
			return f.verdict(m, act, nil)
		}
	}
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
	if err := s.Macros(milter.CodeHeader, "i", m.ID); err != nil {
		return queue.Verdict{}, err
	}
	act, err := s.Header(hdr)
	if err != nil {
		return queue.Verdict{}, err
	}
	if act.Code != milter.ActContinue {
		return f.verdict(m, act, nil)
	}
	mods, act, err := s.BodyReadFrom(br)
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
			if validField(mod.HeaderName, mod.HeaderValue) {
				v.Fields = append(v.Fields, mod.HeaderName+": "+foldValue(mod.HeaderValue)+"\r\n"...)
			}
		case milter.ActQuarantine:
			return f.hold(m, "550 5.7.1 Message quarantined by the content filter: "+printable(mod.Reason)), nil
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
		reply := strconv.Itoa(act.SMTPCode) + " " + printable(act.SMTPText)
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

// validField reports whether a filter's header field can be added as is.
func validField(name, value string) bool {
	if name == "" || strings.ContainsAny(name, " \t:\r\n") {
		return false
	}
	for _, c := range []byte(name + value) {
		if c >= 0x7f || c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

// foldValue writes a filter's value (continuation lines separated by LF
// or CRLF, as milters send them) with CRLF line ends.
func foldValue(v string) string {
	v = strings.ReplaceAll(v, "\r\n", "\n")
	lines := strings.Split(v, "\n")
	for i := 1; i < len(lines); i++ {
		if !strings.HasPrefix(lines[i], " ") && !strings.HasPrefix(lines[i], "\t") {
			lines[i] = "\t" + lines[i]
		}
	}
	return strings.Join(lines, "\r\n")
}

func printable(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c >= 0x7f {
			b[i] = ' '
		}
	}
	return strings.TrimSpace(string(b))
}

var _ queue.ContentFilter = Milters(nil)
