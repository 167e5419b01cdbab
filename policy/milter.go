package policy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-milter"

	"github.com/mxedge/mxedge/internal/milterclient"
	"github.com/mxedge/mxedge/internal/tlsname"
)

// Milter is a mail filter (rspamd, clamav-milter, any milter) asked
// before the queue, on MX listeners: a DataCheck and Streamer. At the
// start of DATA it connects (Config's timeouts: connect, per command, per
// content command: header, each body chunk, end) and replays the session
// with the macros rspamd and clamav-milter read ("i" queue ID, "j",
// {client_addr}, {client_name}, {helo}, {tls_version}, {auth_authen},
// {mail_addr}, {rcpt_addr}); while
// the data arrives it sends the header fields as received (without the
// listener's Received field) and then the body in chunks of at most 65535
// bytes (memory per session: the header section, at most MaxMilterHeader,
// and one chunk). The verdict is taken after the end of data, before the
// reply to the end of data (RFC 5321 sections 4.1.1.4 and 4.2.5: the
// message is the relay's only after that reply), so nothing refused is
// ever queued:
//
//   - accept, continue: the message is queued, with the filter's changes;
//   - reject: 550 5.7.1; a reply code (SMFIR_REPLYCODE): the filter's code,
//     enhanced code and text (a 4xx stays a 4xx);
//   - tempfail: 451 4.7.1;
//   - discard: 250 to the client, nothing queued, one log line
//     (Result.Discard);
//   - quarantine: queued on hold with the filter's reason (Result.Hold;
//     "mxedge queue list -state hold");
//   - add header: on top of the message, below the Received field (as the
//     fields of the other DATA checks); insert header at index 0 or 1
//     likewise, at a later index before that field of the header as
//     received; change header (an empty value deletes it), replace body,
//     change sender, add and delete recipients: applied to the message
//     before it is queued (Editor). A recipient is added unless the
//     message has that mailbox already and deleted with every address
//     that is that mailbox, by the listener's rule for a repeated RCPT
//     (Editor.AddRcpt); an address the listener would refuse at RCPT is
//     left out, logged. A message whose recipients were all deleted is
//     discarded. (A replaced body is held in memory while it is written
//     to the spool: go-milter's client collects the modifications before
//     it returns the verdict.) Where the message is no Editor, any of
//     these changes, of the header, body, sender or recipients, gets
//     DefaultAction, as a filter that cannot answer: the message is
//     neither queued without the change nor discarded.
//
// A filter that cannot answer (down, a timeout, a protocol error, the
// connection lost mid-body) gets DefaultAction: "tempfail" (the default:
// 451 4.7.1, the sender retries, the mail is neither lost nor let through
// unfiltered), "accept" (queued unfiltered, logged) or "reject" (550
// 5.7.1).
type Milter struct {
	milterclient.Config
	DefaultAction string // "tempfail" (default), "accept", "reject"
	Logger        *slog.Logger
}

// MaxMilterHeader bounds the header section a Milter holds before it
// sends it; a longer one is a filter failure (DefaultAction).
const MaxMilterHeader = 1 << 20

// milterActions are the modifications Milter honours.
const milterActions = milter.OptAddHeader | milter.OptChangeHeader | milter.OptChangeBody |
	milter.OptAddRcpt | milter.OptRemoveRcpt | milter.OptQuarantine | milter.OptChangeFrom

// Name is the stage label of its refusals.
func (m *Milter) Name() string { return "milter" }

type milterKey struct{ m *Milter }

// Stream connects to the filter and returns the writer that feeds it.
func (m *Milter) Stream(ctx context.Context, c *Conn, t *Txn) io.WriteCloser {
	st := &milterStream{m: m}
	t.SetValue(milterKey{m}, st)
	tlsVersion := ""
	if c.TLS != nil {
		tlsVersion = tlsname.Version(c.TLS.Version)
	}
	st.s, st.act, st.err = milterclient.Open(ctx, m.Config, milterActions, milterclient.Envelope{
		QueueID: t.QueueID, ClientIP: c.IP.String(), ClientName: c.Reverse.Name, Helo: c.Helo,
		AuthUser: c.AuthUser, TLSVersion: tlsVersion, From: t.From, Rcpts: t.Rcpts})
	return st
}

// milterStream sends the data to the filter as it arrives. It never fails
// a write: a failure is kept for CheckData, which applies DefaultAction.
type milterStream struct {
	m      *Milter
	s      *milterclient.Session
	hdr    []byte // the header section until its end
	inBody bool
	chunk  []byte
	act    *milter.Action // a verdict before the end of data
	err    error
}

func (st *milterStream) stopped() bool { return st.err != nil || st.act != nil || st.s == nil }

func (st *milterStream) Write(p []byte) (int, error) {
	n := len(p)
	if st.stopped() {
		return n, nil
	}
	if !st.inBody {
		st.hdr = append(st.hdr, p...)
		end := headerEnd(st.hdr)
		if end < 0 {
			if len(st.hdr) > MaxMilterHeader {
				st.err = fmt.Errorf("header section over %d bytes", MaxMilterHeader)
			}
			return n, nil
		}
		p = st.hdr[end:]
		st.hdr = st.hdr[:end]
		if !st.sendHeader() {
			return n, nil
		}
	}
	st.body(p)
	return n, nil
}

// headerEnd returns the offset of the body (after the empty line), or -1.
func headerEnd(b []byte) int {
	if bytes.HasPrefix(b, []byte("\r\n")) {
		return 2
	}
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		return i + 4
	}
	return -1
}

func (st *milterStream) sendHeader() bool {
	st.inBody = true
	hdr, err := textproto.ReadHeader(bufio.NewReader(io.MultiReader(bytes.NewReader(st.hdr), strings.NewReader("\r\n"))))
	st.hdr = nil
	if err != nil {
		st.err = fmt.Errorf("reading the message header: %w", err)
		return false
	}
	act, err := st.s.Header(hdr)
	return st.verdict(act, err)
}

func (st *milterStream) verdict(act *milter.Action, err error) bool {
	switch {
	case err != nil:
		st.err = err
	case act.Code == milter.ActSkip:
		st.chunk = nil
		st.act = act
	case act.Code != milter.ActContinue:
		st.act = act
	}
	return !st.stopped()
}

func (st *milterStream) body(p []byte) {
	for len(p) > 0 && !st.stopped() {
		if st.chunk == nil {
			st.chunk = make([]byte, 0, milterclient.MaxChunk)
		}
		k := min(milterclient.MaxChunk-len(st.chunk), len(p))
		st.chunk = append(st.chunk, p[:k]...)
		p = p[k:]
		if len(st.chunk) == milterclient.MaxChunk {
			st.flush()
		}
	}
}

func (st *milterStream) flush() {
	if len(st.chunk) > 0 && !st.stopped() {
		act, err := st.s.Body(st.chunk)
		st.chunk = st.chunk[:0]
		st.verdict(act, err)
	}
}

// Close sends what is left of the data (a message without a body: its
// header).
func (st *milterStream) Close() error {
	if st.stopped() {
		return nil
	}
	if !st.inBody && !st.sendHeader() {
		return nil
	}
	st.flush()
	return nil
}

// CheckData takes the filter's verdict and applies its changes.
func (m *Milter) CheckData(ctx context.Context, c *Conn, t *Txn, msg Message) Result {
	st, _ := t.Value(milterKey{m}).(*milterStream)
	if st == nil {
		return m.failed(t, errors.New("the message was not streamed to the filter"))
	}
	if st.s != nil {
		defer st.s.Close()
	}
	if st.err != nil {
		return m.failed(t, st.err)
	}
	act, mods := st.act, []milter.ModifyAction(nil)
	if act == nil || act.Code == milter.ActSkip {
		var err error
		if mods, act, err = st.s.End(); err != nil {
			return m.failed(t, err)
		}
	}
	r := m.decide(t, msg, act, mods)
	m.log().Info("milter verdict", "queue_id", t.QueueID, "milter", m.Config.Name, "action", string(act.Code),
		"reason", r.Reason, "client_ip", c.IP.String())
	return r
}

// decide turns the filter's verdict into the check's result.
func (m *Milter) decide(t *Txn, msg Message, act *milter.Action, mods []milter.ModifyAction) Result {
	name := m.Config.Name
	switch act.Code {
	case milter.ActReject:
		return Result{Reply: &Reply{550, [3]int{5, 7, 1}, "Message content rejected"}, Reason: name + ": reject"}
	case milter.ActTempFail:
		return Result{Reply: &Reply{451, [3]int{4, 7, 1}, "Service unavailable - try again later"}, Reason: name + ": tempfail"}
	case milter.ActDiscard:
		return Result{Discard: true, Reason: name + ": discard"}
	case milter.ActReplyCode:
		rep := milterReply(act.SMTPCode, act.SMTPText)
		return Result{Reply: rep, Reason: name + ": " + rep.String()}
	case milter.ActAccept, milter.ActContinue:
	default:
		return m.failed(t, fmt.Errorf("unexpected action %q", act.Code))
	}
	r := Result{Reason: name + ": accept"}
	ed, _ := msg.(Editor)
	var e edits
	for _, mod := range mods {
		switch mod.Code {
		case milter.ActAddHeader:
			if milterclient.ValidField(mod.HeaderName, mod.HeaderValue) {
				r.Headers = append(r.Headers, milterclient.Field(mod.HeaderName, mod.HeaderValue))
			}
		case milter.ActInsertHeader:
			if !milterclient.ValidField(mod.HeaderName, mod.HeaderValue) {
				continue
			}
			if mod.HeaderIndex <= 1 {
				r.Headers = append(r.Headers, milterclient.Field(mod.HeaderName, mod.HeaderValue))
				continue
			}
			e.inserts = append(e.inserts, mod)
		case milter.ActChangeHeader:
			if mod.HeaderValue == "" || milterclient.ValidField(mod.HeaderName, mod.HeaderValue) {
				e.changes = append(e.changes, mod)
			}
		case milter.ActReplBody:
			e.body, e.replace = append(e.body, mod.Body...), true
		case milter.ActQuarantine:
			r.Hold, r.Reason = true, name+": quarantine: "+milterclient.Printable(mod.Reason)
		case milter.ActChangeFrom:
			e.envelope = true
			if ed != nil {
				ed.SetFrom(trimAngle(mod.From))
			}
		case milter.ActAddRcpt, milter.ActDelRcpt:
			e.envelope = true
			if ed != nil {
				m.editRcpt(t, ed, mod)
			}
		}
	}
	if ed == nil && (e.inserts != nil || e.changes != nil || e.replace || e.envelope) {
		return m.failed(t, errors.New("the listener cannot change the message"))
	}
	if len(t.Rcpts) == 0 {
		return Result{Discard: true, Reason: name + ": every recipient deleted"}
	}
	if e.inserts != nil || e.changes != nil || e.replace {
		if err := ed.Rewrite(e.apply); err != nil {
			return Result{Err: fmt.Errorf("milter %s: applying its changes: %w", name, err)}
		}
	}
	return r
}

// editRcpt applies an SMFIR_ADDRCPT or SMFIR_DELRCPT through the
// listener (Editor: its rule for "the same mailbox") and keeps t.Rcpts as
// the message's recipients. An address the listener refuses is never
// stored: the change is left out, with a log line.
func (m *Milter) editRcpt(t *Txn, ed Editor, mod milter.ModifyAction) {
	edit, action := ed.AddRcpt, "add"
	if mod.Code == milter.ActDelRcpt {
		edit, action = ed.DelRcpt, "delete"
	}
	addr := trimAngle(mod.Rcpt)
	rs, err := edit(addr)
	if err != nil {
		m.log().Warn("milter recipient change ignored", "queue_id", t.QueueID, "milter", m.Config.Name,
			"action", action, "rcpt", "<"+milterclient.Printable(addr)+">", "err", err)
		return
	}
	t.Rcpts = rs
}

// failed applies DefaultAction to a filter that could not answer.
func (m *Milter) failed(t *Txn, err error) Result {
	err = fmt.Errorf("milter %s: %w", m.Config.Name, err)
	m.log().Warn("milter failed", "queue_id", t.QueueID, "milter", m.Config.Name, "default_action", m.DefaultAction, "err", err)
	switch m.DefaultAction {
	case "accept":
		return Result{Reason: m.Config.Name + ": failed, accepted unfiltered (default_action)"}
	case "reject":
		return Result{Reply: &Reply{550, [3]int{5, 7, 1}, "Message content rejected"}, Reason: m.Config.Name + ": failed, rejected (default_action)"}
	}
	return Result{Reply: &Reply{451, [3]int{4, 7, 1}, "Service unavailable - try again later"}, Err: err}
}

func (m *Milter) log() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.Default()
}

// milterReply is a filter's SMFIR_REPLYCODE reply: code, then the text,
// which may start with an enhanced status code (RFC 3463).
func milterReply(code int, text string) *Reply {
	text = milterclient.Printable(text) // no CR or LF left: one reply line
	rep := &Reply{Code: code, Enhanced: [3]int{code / 100, 7, 1}, Text: text}
	if f := strings.SplitN(text, " ", 2); len(f) == 2 {
		if p := strings.Split(f[0], "."); len(p) == 3 {
			var e [3]int
			ok := true
			for i, s := range p {
				n, err := strconv.Atoi(s)
				ok = ok && err == nil && n >= 0 && n < 1000
				e[i] = n
			}
			if ok && e[0] == code/100 {
				rep.Enhanced, rep.Text = e, f[1]
			}
		}
	}
	if code < 400 || code > 599 {
		rep.Code, rep.Enhanced = 451, [3]int{4, 7, 1} // not a refusal: the filter's bug
	}
	if rep.Text == "" {
		rep.Text = "Message content rejected"
	}
	return rep
}

func trimAngle(s string) string {
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "<"), ">")
}

// edits are a filter's changes that rewrite the data.
type edits struct {
	inserts, changes []milter.ModifyAction
	body             []byte
	replace          bool
	envelope         bool // the sender or the recipients changed
}

// apply writes data with the changes: header fields changed (by name and
// per-name index, 1-based; an empty value deletes), inserted (before the
// index-th field, 1-based), the body replaced (line ends made CRLF).
func (e *edits) apply(data io.Reader, w io.Writer) error {
	br := bufio.NewReaderSize(data, 64<<10)
	var fields [][]byte // raw, with their CRLF
	sep := false
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1] = append(fields[len(fields)-1], line...)
		} else if string(line) == "\r\n" {
			sep = true
			break
		} else if len(line) > 0 {
			fields = append(fields, line)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	for _, c := range e.changes {
		n := 0
		for i, f := range fields {
			k, _, _ := bytes.Cut(f, []byte(":"))
			if !strings.EqualFold(strings.TrimSpace(string(k)), c.HeaderName) {
				continue
			}
			if n++; uint32(n) != max(c.HeaderIndex, 1) {
				continue
			}
			if c.HeaderValue == "" {
				fields = append(fields[:i], fields[i+1:]...)
			} else {
				fields[i] = []byte(milterclient.Field(c.HeaderName, c.HeaderValue))
			}
			break
		}
	}
	for _, in := range e.inserts {
		at := min(int(in.HeaderIndex)-1, len(fields))
		f := []byte(milterclient.Field(in.HeaderName, in.HeaderValue))
		fields = append(fields[:at], append([][]byte{f}, fields[at:]...)...)
	}
	for _, f := range fields {
		if _, err := w.Write(f); err != nil {
			return err
		}
	}
	if sep || e.replace {
		if _, err := io.WriteString(w, "\r\n"); err != nil {
			return err
		}
	}
	if !e.replace {
		_, err := io.Copy(w, br)
		return err
	}
	b := bytes.ReplaceAll(e.body, []byte("\r\n"), []byte("\n"))
	b = bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
	_, err := w.Write(b)
	return err
}
