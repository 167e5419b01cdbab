// Package policy is the contract between mxedge's SMTP listeners and the
// checks that decide, inside the SMTP session, what is refused: relay
// control, recipient verification, and every later check (connection
// limits, pregreet, iprev, DNSBL, HELO, SPF, sender access, greylisting,
// DKIM, DMARC, milters). A listener runs one ordered Chain per listener,
// built from its configuration; the session code calls the chain, never a
// specific check, so adding a check touches the check and the chain's
// construction (cmd/mxedge/chain.go), nothing else.
//
// The shape follows maddy's module.Check (one method per SMTP stage, one
// typed result) and Postfix's restriction lists (smtpd_client_restrictions
// ... smtpd_data_restrictions: an ordered list per stage, the first decisive
// answer wins, a check that cannot decide defers).
//
// # Stages
//
// A check implements one or more of the stage interfaces:
//
//   - ConnectCheck: after the TCP connection is accepted, before the
//     banner (allowlist, client limits, client access, iprev, DNSBL). It
//     must not block: a check that needs a lookup starts it and returns
//     Result.Later, which the listener calls when it needs the decision
//     (the first RCPT), so that lookups overlap the pregreet wait and the
//     client's first commands and add no latency.
//   - HeloCheck: at HELO/EHLO (HELO syntax, HELO claiming to be us).
//   - MailCheck: at MAIL FROM (SPF, sender access, sender domain).
//   - RcptCheck: at each RCPT TO (relay control, recipient verification,
//     greylisting).
//   - DataCheck: after the message data has been received and stored, before
//     Commit and the reply (DKIM, DMARC, milter); it reads the stored
//     message through Message.Open and may add header fields. Optional
//     additions: Streamer (the data while it arrives, e.g. DKIM) and
//     HeaderDropper (incoming header fields kept out of the stored
//     message, e.g. forged Authentication-Results; headerdrop.go).
//
// # The contract of a check
//
//   - Who may block: any check may wait (DNS, a probe, a milter), but only
//     within its own bound (a per-query deadline, verify.inline_wait, the
//     milter's timeouts) and never beyond ctx, which the listener ends when
//     the command's time is up or the client went away. A check that sees
//     ctx end returns at once with Err set. The exception is CheckConnect,
//     which runs before the banner and must return at once; its ctx lives
//     as long as the connection (lookups started there bound themselves),
//     and its Later gets a ctx of its own, bounded like any stage.
//   - What it returns: the zero Result ("no opinion", Postfix DUNNO) lets
//     the next check decide; a Reply refuses (4xx: try again later, 5xx:
//     refused); OK accepts and skips the rest of the stage's chain (Postfix
//     OK, e.g. an allowlisted client at connect). Delay asks the listener
//     to wait before it answers (tarpitting a dictionary attack);
//     Disconnect makes it close the connection after the reply, and
//     EndSession (at RCPT) after the transaction. A check
//     in log-only mode (action "log") returns Logged, the reply it would
//     have sent: the listener logs it and goes on as with no opinion.
//   - On its own internal error (a DNS timeout, a milter down, a full
//     disk): Err set, and a 4xx Reply or none. The chain enforces it: a
//     Result with Err is always answered with a 4xx (451 4.3.0 unless the
//     check chose a 4xx), never a 5xx and never accepted.
//   - Checks are called concurrently for different sessions and must be
//     safe for that; per-transaction state goes into Txn (Txn.SetValue).
//
// The listener logs every refusal once, with the name of the check that
// decided (its stage label: "relay", "verify", ...); the chain counts
// refusals per check (Chain.Refusals) for the metrics.
//
// # The checks of this package
//
// Relay (relay control) and Verify (recipient verification) at RCPT;
// Allowlist (trusted clients), Limits (per-client sessions, connection,
// message and recipient rates), ClientAccess and SenderAccess (static
// access files), Iprev (reverse DNS of the client), DNSBL (weighted DNS
// block and allow lists), Helo (HELO syntax, HELO claiming to be us, HELO
// that does not resolve) and SenderDomain (sender domain without MX or
// address); Milter (a mail filter before the queue, milter.go) at DATA.
// Greylisting is package greylist. On an MX listener cmd/mxedge/chain.go adds them in the order
// of shared/PRINCIPLES.md: trusted clients first, then the cheap checks,
// then DNSBL, then relay control and recipient verification.
package policy

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"

	"github.com/mxedge/mxedge/internal/tlsname"
)

// Kind is a listener kind, the profile a listener's defaults and chain
// are built from.
type Kind string

const (
	// KindMX is the port 25 service: mail for the relay domains from
	// anyone, no AUTH, every refusal in the session.
	KindMX Kind = "mx"
	// KindSubmission is port 587: STARTTLS, then SASL AUTH required
	// (RFC 6409).
	KindSubmission Kind = "submission"
	// KindSubmissions is port 465: implicit TLS, then SASL AUTH required
	// (RFC 8314).
	KindSubmissions Kind = "submissions"
)

// Conn is what every check knows about the SMTP session: filled in by the
// listener, read by checks. Fields are set before the stage that needs
// them runs (Helo from HELO on, TLS after STARTTLS, AuthUser after AUTH).
type Conn struct {
	Listener string // the listener's name, as in logs
	Kind     Kind
	// Hostname is this relay's name (banner, HELO-is-us checks).
	Hostname string

	Local  netip.AddrPort // the address the client connected to
	Remote netip.AddrPort // the client's address and port
	// IP is Remote's address, IPv4 in its 4-byte form.
	IP netip.Addr
	// Reverse is the client's reverse DNS (RFC 8601 iprev) with its
	// forward confirmation. The listener starts the lookup when it accepts
	// the connection and sets Reverse when it needs it: before it calls
	// the Later of a connect check, and from the first RCPT on. Zero
	// before, and on a listener without a resolver.
	Reverse Reverse
	// Trusted: a connect check accepted the client before the banner (OK,
	// e.g. the allowlist). The listener then skips its pregreet test, and
	// checks that exempt trusted clients (limits, HELO and sender checks)
	// read it.
	Trusted bool

	// DNSWL: an allow list entry of the DNSBL check (negative weight)
	// matched the client. Set with the DNSBL decision, before the first
	// RCPT's checks; greylisting skips such clients.
	DNSWL bool

	// Helo is the HELO/EHLO argument; "" before the client said it.
	Helo string
	// TLS is the state of the TLS connection (after STARTTLS, or from the
	// start on an implicit-TLS listener); nil for plaintext.
	TLS *tls.ConnectionState
	// AuthUser is the SASL login; "" when not authenticated (always on
	// MX listeners).
	AuthUser string

	mu     sync.Mutex
	closed bool
	onEnd  []func()
}

// AtClose registers f to run once when the connection ends (a check that
// counts the client's sessions gives its count back). If the connection
// has ended already, f runs at once.
func (c *Conn) AtClose(f func()) {
	c.mu.Lock()
	if !c.closed {
		c.onEnd = append(c.onEnd, f)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	f()
}

// Close runs the functions registered with AtClose, once; the listener
// calls it when the connection ends.
func (c *Conn) Close() {
	c.mu.Lock()
	fs := c.onEnd
	c.onEnd, c.closed = nil, true
	c.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

// Reverse is the client's reverse DNS name and its status.
type Reverse struct {
	// Name is the PTR name, lowercase, without trailing dot; "" if none.
	Name   string
	Status ReverseStatus
}

// ReverseStatus of a client's reverse DNS (RFC 8601 section 2.7.3 iprev,
// with the two kinds of fail told apart).
type ReverseStatus string

const (
	ReverseUnknown   ReverseStatus = ""          // not looked up (yet)
	ReversePass      ReverseStatus = "pass"      // a PTR name resolves back to the IP (FCrDNS)
	ReverseMismatch  ReverseStatus = "mismatch"  // PTR names exist, none resolves back
	ReverseNone      ReverseStatus = "none"      // no PTR record (NXDOMAIN or no data)
	ReverseTempError ReverseStatus = "temperror" // the lookup failed temporarily
)

// TLSName is the log and Received form of a TLS state: "TLSv1.3
// TLS_AES_128_GCM_SHA256", or "" for nil.
func TLSName(cs *tls.ConnectionState) string {
	if cs == nil {
		return ""
	}
	return tlsname.Version(cs.Version) + " " + tls.CipherSuiteName(cs.CipherSuite)
}

// Txn is one mail transaction, MAIL to the end of DATA (RFC 5321 section
// 3.3). The listener fills it in; checks read it and may keep their own
// per-transaction state in it (SetValue), e.g. an SPF result computed at
// MAIL for DMARC at DATA.
type Txn struct {
	// From is the reverse-path in wire form; "" is the null sender.
	From string
	Mail MailParams
	// Rcpts are the recipients accepted so far, in wire form, each once.
	Rcpts []string
	// QueueID is the message's queue ID, from the start of DATA.
	QueueID string

	values map[any]any
}

// MailParams are the MAIL FROM parameters the listener supports.
type MailParams struct {
	Size  int64  // SIZE= (RFC 1870); 0 if not given
	Body  string // BODY= (RFC 6152): "", "7BIT", "8BITMIME"
	UTF8  bool   // SMTPUTF8 (RFC 6531)
	Ret   string // DSN RET= (RFC 3461): "FULL", "HDRS" or ""
	EnvID string // DSN ENVID=, decoded
}

// Value returns what SetValue stored under key in this transaction, or
// nil.
func (t *Txn) Value(key any) any { return t.values[key] }

// SetValue keeps v under key until the transaction ends. Use an
// unexported key type of the check's own package, as with
// context.WithValue.
func (t *Txn) SetValue(key, v any) {
	if t.values == nil {
		t.values = map[any]any{}
	}
	t.values[key] = v
}

// Rcpt is one recipient as RCPT checks see it: syntax already checked,
// the domain in normal form.
type Rcpt struct {
	Raw    string // as the client sent it (quotes undone by the parser), for replies
	Addr   string // wire form, as stored in the queue
	Local  string // local part, unquoted, case kept
	Domain string // lowercase, A-labels; or an address literal "[...]"
}

// Message is the message a DataCheck sees: stored in the queue but not
// yet committed, so nothing of it is visible or durable yet.
type Message interface {
	// Open returns a reader over the message as it will be stored: the
	// header fields the listener and earlier checks added (our Received
	// first), then the data as received. It may be called several times;
	// close the reader before returning.
	Open() (io.ReadCloser, error)
	// Size is the message's size in bytes, as Open reads it.
	Size() int64
}

// Editor is an optional addition to a Message: a DataCheck that changes
// the message (a milter's header changes, replaced body, changed sender or
// recipients) finds it with a type assertion. The changes apply to the
// message as it will be queued; if a later check refuses, nothing is
// queued anyway.
type Editor interface {
	Message
	// Rewrite replaces the message data as received (not the header
	// fields the listener and checks add on top) with what write writes,
	// given a reader over the current data; on an error nothing changes.
	Rewrite(write func(data io.Reader, w io.Writer) error) error
	// SetFrom changes the envelope sender (wire form, "" the null sender).
	SetFrom(from string)
	// AddRcpt adds a recipient, addr as a filter wrote it (without angle
	// brackets), unless the message has that mailbox already; DelRcpt
	// removes the recipients that are the mailbox addr. "The same
	// mailbox" is the listener's rule for a repeated RCPT (smtpd: equal
	// normalised domains, local parts equal without case unless the
	// domain is configured case-sensitive). Both return the message's
	// recipients after the change (wire form). An address the listener
	// would refuse at RCPT (bad syntax; non-ASCII without SMTPUTF8) is an
	// error, and nothing changes.
	AddRcpt(addr string) ([]string, error)
	DelRcpt(addr string) ([]string, error)
}

// Reply is an SMTP reply a check decides: code, enhanced status code
// (RFC 3463) and text, one line, printable ASCII.
type Reply struct {
	Code     int
	Enhanced [3]int
	Text     string
}

// String is the reply as it goes on the wire, without CRLF.
func (r *Reply) String() string {
	if r.Enhanced == [3]int{} {
		return fmt.Sprintf("%d %s", r.Code, r.Text)
	}
	return fmt.Sprintf("%d %d.%d.%d %s", r.Code, r.Enhanced[0], r.Enhanced[1], r.Enhanced[2], r.Text)
}

// Result is a check's answer; see the package documentation for the
// contract. The zero Result is "no opinion".
type Result struct {
	// Reply refuses: a 4xx (try again later) or a 5xx (refused). nil: not
	// refused. Must be nil when OK is set.
	Reply *Reply
	// OK accepts at this stage: the remaining checks of the stage's chain
	// are skipped (Postfix OK).
	OK bool
	// Delay: the listener waits this long before it answers (capped at
	// MaxDelay).
	Delay time.Duration
	// Disconnect: the listener closes the connection after the reply.
	// After the banner the reply is sent as a 421 (RFC 5321 section 3.8:
	// the code of a server closing the channel), the check's text kept.
	Disconnect bool
	// EndSession, only with a 4xx Reply at RCPT: the session is over,
	// but not the transaction. The listener answers the rest of the
	// transaction's RCPTs with the same Reply without running the checks,
	// lets the transaction finish (DATA) for the recipients it accepted,
	// and refuses the next MAIL with 421 and closes. A defense must never
	// make a recipient already answered 250 undeliverable.
	EndSession bool
	// Headers are header fields a DataCheck adds to the top of the
	// message, below the listener's Received header and those of the
	// checks before it: complete fields, each line ending in CRLF,
	// continuation lines starting with a space or tab. Ignored at the
	// other stages.
	Headers []string
	// Hold: a DataCheck that does not refuse has the message queued on
	// hold (kept for review, delivered only when an admin releases it);
	// Reason is the hold reason. The client gets its 250 as usual.
	// Ignored at the other stages.
	Hold bool
	// Discard: a DataCheck drops the message (a milter's SMFIR_DISCARD):
	// the client gets its 250 as if it had been queued, nothing is queued,
	// the listener logs it. It decides like a refusal (the checks after it
	// are skipped). Ignored at the other stages and with Reply.
	Discard bool
	// Reason says in the log why the check decided (never sent to the
	// client): "cache", "dnsbl zen.example.org=127.0.0.2".
	Reason string
	// Err is an internal error that kept the check from deciding; it is
	// logged, never sent, and the reply is forced to a 4xx.
	Err error

	// Logged is the reply a check in log-only mode would have sent: the
	// listener logs it (action=log) and the command goes on as if the
	// check had no opinion. Only without Reply and OK.
	Logged *Reply
	// Later, only from a ConnectCheck: the decision needs a lookup that
	// CheckConnect started. The listener calls Later (once, with a ctx
	// bounded like any stage) when it needs the decision, and its Result
	// stands for the check's; Later itself must not return a Later. All
	// other fields must be zero when Later is set.
	Later func(ctx context.Context) Result
}

// MaxDelay caps Result.Delay: a check must not hold a session for longer
// than a client's patience for one reply.
const MaxDelay = 30 * time.Second

// Check is what every check is: a name for logs and counters (the stage
// label of its refusals: "relay", "verify", "dnsbl"), and one or more of
// the stage interfaces below.
type Check interface {
	Name() string
}

// ConnectCheck runs once per connection, after accept and before the
// banner; it must return at once (see Result.Later for a check that needs
// a lookup). A refusal with Disconnect decided before the banner is sent
// instead of it and the connection closed (a Later's Disconnect closes the
// connection after its reply, at the first RCPT). A refusal without is
// held and answered to every RCPT TO (before the recipient checks) and
// DATA instead (Postfix smtpd_delay_reject, postscreen's "enforce": reject
// after greeting): the session goes on, nothing is accepted, and the log
// shows the client's HELO, sender and recipient. OK before the banner
// makes the client Trusted.
type ConnectCheck interface {
	Check
	CheckConnect(ctx context.Context, c *Conn) Result
}

// HeloCheck runs at HELO/EHLO; c.Helo is set. A refusal is the reply to
// that HELO/EHLO; the client may try another one.
type HeloCheck interface {
	Check
	CheckHelo(ctx context.Context, c *Conn) Result
}

// MailCheck runs at MAIL FROM, after the sender's syntax was checked;
// t.From and t.Mail are set, t.Rcpts is empty.
type MailCheck interface {
	Check
	CheckMail(ctx context.Context, c *Conn, t *Txn) Result
}

// RcptCheck runs at each RCPT TO, after the recipient's syntax was
// checked and unless it duplicates an accepted recipient; t.Rcpts holds
// the recipients accepted before.
type RcptCheck interface {
	Check
	CheckRcpt(ctx context.Context, c *Conn, t *Txn, r Rcpt) Result
}

// DataCheck runs after the message data has been received, checked by the
// listener (size, line endings, hop count) and stored, before it is
// committed; t.QueueID is set. A refusal discards the message (nothing is
// queued); headers of a Result that does not refuse are added to the
// message.
type DataCheck interface {
	Check
	CheckData(ctx context.Context, c *Conn, t *Txn, m Message) Result
}

// Streamer is an optional addition to a DataCheck that wants the message
// data while it arrives instead of reading it back, e.g. to hash a body
// for DKIM. Stream is called at the start of DATA; the writer it returns
// (nil for none) gets the data as it is stored (after the listener's
// bare CR/LF policy) and is closed before CheckData runs, or when the
// transfer fails. Keep its state in t.
type Streamer interface {
	DataCheck
	Stream(ctx context.Context, c *Conn, t *Txn) io.WriteCloser
}
