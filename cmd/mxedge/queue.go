package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/mxedge/mxedge/control"
	"github.com/mxedge/mxedge/queue"
)

const queueUsage = `usage:
  mxedge queue list [-sender A] [-recipient A] [-domain D] [-state S] [-json]
                                        list queued messages, oldest first (like mailq);
                                        -state active|hold|deferred|incoming, -sender '<>'
  mxedge queue show ID [-json]          one message: envelope, origin, state, headers
  mxedge queue show -body ID            the message as it will be delivered (like postcat)
  mxedge queue flush [IDS | -domain D | -sender A | -recipient A]
                                        attempt delivery now (no argument: every message)
  mxedge queue hold IDS                 stop delivery attempts until released
  mxedge queue release IDS              undo hold; attempt delivery now
  mxedge queue requeue IDS              attempt delivery now as a fresh message: the retry
                                        backoff starts over (postsuper -r; not for held ones)
  mxedge queue delete IDS               remove without telling the sender
  mxedge queue bounce IDS               return to the sender now (delivery status notification)
IDS, as in postsuper: one or more queue IDs, ALL (every queued message), or - (the
IDs on standard input, one per line or separated by blanks; "mxedge queue list -json
| jq -r .id | mxedge queue delete -"). Each ID gets its own result line; the exit
status is 1 when any of them failed.
  mxedge queue stats [-json]            counts by state, size, oldest message
  mxedge queue compact                  shrink queue.db; offline: stop mxedge first
  mxedge queue check [-repair]          verify every record and spool file (offline); -repair moves
                                        bad records to the "corrupt" bucket, orphans to orphaned/ and
                                        rebuilds an unreadable index; exit 1 if anything needs attention
  mxedge queue recover                  rebuild the index from the spool files and re-inject orphans
                                        (offline; serve -recover does the same at start)
  mxedge queue backup FILE              consistent copy of queue.db from the running daemon
Every command takes -config FILE (default: $MXEDGE_CONFIG, /etc/mxedge/mxedge.toml,
the built-in demo) to find the data directory, and the running daemon's control
socket in it; -json prints JSON
(list: one object per line). Exit status: 0 ok, 1 error, 2 usage.
`

func cmdQueue(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, queueUsage)
		return 2
	}
	name, args := args[0], args[1:]
	switch name {
	case "list":
		return queueList(args, stdout, stderr)
	case "show":
		return queueShow(args, stdout, stderr)
	case "flush":
		return queueFlush(args, stdout, stderr)
	case "hold", "release", "requeue", "delete", "bounce":
		return queueAction(name, args, stdout, stderr)
	case "stats":
		return queueStats(args, stdout, stderr)
	case "compact":
		return queueCompact(args, stdout, stderr)
	case "check", "recover":
		return queueCheck(name, args, stdout, stderr, true)
	case "backup":
		return queueBackup(args, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, queueUsage)
		return 0
	}
	fmt.Fprintf(stderr, "mxedge: unknown command \"queue %s\"\n%s", name, queueUsage)
	return 2
}

func queueList(args []string, stdout, stderr io.Writer) int {
	c := newAdminCmd("queue", "list", "[-sender A] [-recipient A] [-domain D] [-state S] [-json]", stdout, stderr)
	var f queue.Filter
	c.fs.StringVar(&f.Sender, "sender", "", "only messages from this envelope sender (<> for bounces)")
	c.fs.StringVar(&f.Recipient, "recipient", "", "only messages with this recipient")
	c.fs.StringVar(&f.Domain, "domain", "", "only messages with a recipient in this domain")
	c.fs.StringVar(&f.State, "state", "", "only messages in this state: active, hold, deferred, incoming")
	if _, ok := c.parse(args, 0, 0); !ok {
		return 2
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	w := bufio.NewWriter(stdout)
	enc := json.NewEncoder(w)
	p := &listPrinter{w: w, now: time.Now()}
	err = cl.List(context.Background(), f, func(m *control.Message) error {
		if *c.json {
			return enc.Encode(m)
		}
		p.message(m)
		return nil
	})
	if err == nil && !*c.json {
		p.footer(f != queue.Filter{})
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return c.fail(err)
	}
	return 0
}

// listPrinter writes the human form of "queue list", one message at a time
// (a listing of a million messages is never held in memory):
//
//	QUEUE ID          STATE           SIZE  ARRIVAL              SENDER
//	0G3Q8Z9V1B2C3D4E  deferred        1234  2026-03-04 10:00:00  sender@src.test
//	    alice@relay.test  pending    (4.4.1 connect to 192.0.2.1:25: connection refused)
//	    bob@relay.test    delivered
//	    next attempt 2026-03-04 10:05:00 (in 4m10s), 3 attempts so far
//
//	-- 1 message, 2 KiB
type listPrinter struct {
	w     io.Writer
	now   time.Time
	n     int
	bytes int64
}

const listRow = "%-16s  %-8s  %10v  %-19s  %s\n"

func (p *listPrinter) message(m *control.Message) {
	if p.n == 0 {
		fmt.Fprintf(p.w, listRow, "QUEUE ID", "STATE", "SIZE", "ARRIVAL", "SENDER")
	}
	p.n++
	p.bytes += m.Size
	fmt.Fprintf(p.w, listRow, m.ID, m.State, m.Size, localTime(m.Arrival), sender(m.From))
	writeRcpts(p.w, "    ", m.Rcpts)
	fmt.Fprintf(p.w, "    %s\n\n", nextAttempt(m, p.now))
}

func (p *listPrinter) footer(filtered bool) {
	switch {
	case p.n == 0 && filtered:
		fmt.Fprintln(p.w, "No matching messages.")
	case p.n == 0:
		fmt.Fprintln(p.w, "Mail queue is empty.")
	default:
		fmt.Fprintf(p.w, "-- %s, %d KiB\n", plural(p.n, "message"), (p.bytes+1023)/1024)
	}
}

// writeRcpts writes one line per recipient: address, status and, unless
// delivered, the last reply (or error) with its enhanced status code.
func writeRcpts(w io.Writer, indent string, rcpts []queue.Rcpt) {
	width := 0
	for _, rc := range rcpts {
		width = max(width, len(printable(rc.Addr)))
	}
	for _, rc := range rcpts {
		line := fmt.Sprintf("%s%-*s  %-9s", indent, width, printable(rc.Addr), rc.Status)
		if rc.Status != queue.StatusDelivered && rc.LastReply != "" {
			reason := rc.LastReply
			if rc.DSN != "" && !strings.Contains(reason, rc.DSN) { // not a reply: a network error
				reason = rc.DSN + " " + reason
			}
			line += "  (" + printable(reason) + ")"
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
}

func nextAttempt(m *control.Message, now time.Time) string {
	switch m.State {
	case queue.StateHold:
		return "on hold (mxedge queue release " + m.ID + ")"
	case queue.StateActive:
		return "delivery attempt in progress"
	}
	s := "next attempt now"
	if m.NextAttempt.After(now) {
		s = fmt.Sprintf("next attempt %s (in %s)", localTime(m.NextAttempt), m.NextAttempt.Sub(now).Round(time.Second))
	}
	if m.Attempts > 0 {
		s += fmt.Sprintf(", %s so far", plural(m.Attempts, "attempt"))
	}
	return s
}

func queueShow(args []string, stdout, stderr io.Writer) int {
	c := newAdminCmd("queue", "show", "ID [-json] [-body]", stdout, stderr)
	c.fs.Bool("body", false, "print the message as it will be delivered (headers and body), like postcat")
	for _, a := range args {
		if a == "-body" || a == "--body" {
			return queueShowBody(c, args)
		}
	}
	m, code, done := fetch(c, args, 1, func(ctx context.Context, cl *control.Client, pos []string) (*control.Message, error) {
		return cl.Show(ctx, pos[0])
	})
	if done {
		return code
	}
	w := bufio.NewWriter(stdout)
	writeShow(w, m, time.Now())
	if err := w.Flush(); err != nil {
		return c.fail(err)
	}
	return 0
}

// queueShowBody is "queue show -body ID": the message's bytes.
func queueShowBody(c *adminCmd, args []string) int {
	pos, ok := c.parse(args, 1, 1)
	if !ok {
		return 2
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	w := bufio.NewWriter(c.stdout)
	if err := cl.Body(context.Background(), pos[0], w); err != nil {
		return c.fail(err)
	}
	if err := w.Flush(); err != nil {
		return c.fail(err)
	}
	return 0
}

// writeShow writes the human form of "queue show".
func writeShow(w io.Writer, m *control.Message, now time.Time) {
	field := func(name, format string, a ...any) {
		fmt.Fprintf(w, "%-12s %s\n", name+":", fmt.Sprintf(format, a...))
	}
	field("Queue ID", "%s", m.ID)
	state := m.State
	if m.Held && m.State != queue.StateHold {
		state += ", on hold"
	}
	field("State", "%s", state)
	if m.Held && m.HoldReason != "" {
		field("Hold reason", "%s", m.HoldReason)
	}
	field("Arrival", "%s (%s ago)", localTime(m.Arrival), now.Sub(m.Arrival).Round(time.Second))
	field("Size", "%d bytes", m.Size)
	field("Sender", "%s", sender(m.From))
	writeOrigin(field, m.Origin)
	var opts []string
	if m.Body != "" {
		opts = append(opts, "BODY="+m.Body)
	}
	if m.UTF8 {
		opts = append(opts, "SMTPUTF8")
	}
	if m.Ret != "" {
		opts = append(opts, "RET="+m.Ret)
	}
	if m.EnvID != "" {
		opts = append(opts, "ENVID="+m.EnvID)
	}
	if len(opts) > 0 {
		field("Parameters", "%s", printable(strings.Join(opts, " ")))
	}
	var notes []string
	if m.Warned {
		notes = append(notes, "delay warning sent")
	}
	if m.Notice {
		notes = append(notes, "delivery status notification (never reported on)")
	}
	if m.Signed {
		notes = append(notes, "signed before the first attempt (signer output, if any, on top of the headers)")
	}
	if len(notes) > 0 {
		field("Notes", "%s", strings.Join(notes, "; "))
	}
	field("Delivery", "%s", nextAttempt(m, now))
	fmt.Fprintln(w, "Recipients:")
	for _, rc := range m.Rcpts {
		writeRcpts(w, "    ", []queue.Rcpt{rc})
		var d []string
		if rc.Relay != "" {
			d = append(d, "relay "+rc.Relay)
		}
		if !rc.LastTry.IsZero() {
			d = append(d, "last try "+localTime(rc.LastTry))
		}
		if rc.DSN != "" {
			d = append(d, "dsn "+rc.DSN)
		}
		if len(rc.Notify) > 0 {
			d = append(d, "NOTIFY="+strings.Join(rc.Notify, ","))
		}
		if rc.ORcpt != "" {
			d = append(d, "ORCPT="+rc.ORcpt)
		}
		if len(d) > 0 {
			fmt.Fprintf(w, "        %s\n", printable(strings.Join(d, ", ")))
		}
	}
	fmt.Fprintf(w, "\n%s", printableText(m.Headers))
}

// writeOrigin writes where a message came from (nothing for the reports
// the relay generated itself):
//
//	Listener:    mx (mx)
//	Client:      mail.example.org [192.0.2.1]
//	HELO:        mail.example.org
//	Auth user:   alice
//	TLS:         TLSv1.3 TLS_AES_128_GCM_SHA256
func writeOrigin(field func(name, format string, a ...any), o queue.Origin) {
	if o == (queue.Origin{}) {
		return
	}
	if o.Listener != "" || o.Kind != "" {
		field("Listener", "%s (%s)", printable(o.Listener), printable(o.Kind))
	}
	if o.ClientIP != "" || o.ClientName != "" {
		name := o.ClientName
		if name == "" {
			name = "unknown"
		}
		field("Client", "%s [%s]", printable(name), printable(o.ClientIP))
	}
	if o.Helo != "" {
		field("HELO", "%s", printable(o.Helo))
	}
	if o.AuthUser != "" {
		field("Auth user", "%s", printable(o.AuthUser))
	}
	switch {
	case o.TLS != "":
		field("TLS", "%s", printable(o.TLS))
	case o.Listener != "": // records queued before origins were stored do not know
		field("TLS", "none (plaintext)")
	}
}

func queueFlush(args []string, stdout, stderr io.Writer) int {
	c := newAdminCmd("queue", "flush", "[IDS | -domain D | -sender A | -recipient A]", stdout, stderr)
	var f queue.Filter
	c.fs.StringVar(&f.Sender, "sender", "", "flush the messages from this envelope sender")
	c.fs.StringVar(&f.Recipient, "recipient", "", "flush the messages with this recipient")
	c.fs.StringVar(&f.Domain, "domain", "", "flush the messages with a recipient in this domain")
	pos, ok := c.parse(args, 0, 1<<20)
	if !ok {
		return 2
	}
	if len(pos) > 0 && f != (queue.Filter{}) {
		fmt.Fprintln(stderr, "mxedge queue flush: give an ID or filters, not both")
		c.fs.Usage()
		return 2
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	if len(pos) > 0 && !slices.Equal(pos, []string{"ALL"}) {
		ids, err := queueIDs(context.Background(), cl, pos, os.Stdin)
		if err != nil {
			return c.fail(err)
		}
		return c.each(ids, "flushed", func(id string) error { return cl.Flush(context.Background(), id) })
	}
	n, err := cl.FlushMatching(context.Background(), f)
	if err != nil {
		return c.fail(err)
	}
	if *c.json {
		return c.printJSON(control.FlushResult{Flushed: n})
	}
	fmt.Fprintf(stdout, "flushed %s\n", plural(n, "message"))
	return 0
}

func queueAction(name string, args []string, stdout, stderr io.Writer) int {
	c := newAdminCmd("queue", name, "IDS (queue IDs, ALL, or - for stdin)", stdout, stderr)
	pos, ok := c.parse(args, 1, 1<<20)
	if !ok {
		return 2
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	ids, err := queueIDs(context.Background(), cl, pos, os.Stdin)
	if err != nil {
		return c.fail(err)
	}
	var do func(context.Context, string) error
	var result string
	switch name {
	case "hold":
		do, result = cl.Hold, "held"
	case "release":
		do, result = cl.Release, "released"
	case "requeue":
		do, result = cl.Requeue, "requeued"
	case "delete":
		do, result = cl.Delete, "deleted"
	case "bounce":
		do, result = cl.Bounce, "bounced"
	}
	return c.each(ids, result, func(id string) error { return do(context.Background(), id) })
}

// each runs do for every ID, one result line per ID (the error on
// stderr): exit status 0 when all succeeded, else 1.
func (c *adminCmd) each(ids []string, result string, do func(id string) error) int {
	code := 0
	for _, id := range ids {
		if err := do(id); err != nil {
			fmt.Fprintf(c.stderr, "%s: %s: %v\n", c.title, id, err)
			code = 1
			continue
		}
		if *c.json {
			if c.printJSON(control.ActionResult{ID: id, Result: result}) != 0 {
				code = 1
			}
			continue
		}
		fmt.Fprintf(c.stdout, "%s: %s\n", id, result)
	}
	return code
}

// queueIDs expands the ID arguments of a queue action as postsuper does:
// "ALL" is every message queued now, "-" the IDs read from stdin
// (separated by blanks or newlines); other arguments are IDs.
func queueIDs(ctx context.Context, cl *control.Client, args []string, stdin io.Reader) ([]string, error) {
	var ids []string
	for _, a := range args {
		switch a {
		case "ALL":
			err := cl.List(ctx, queue.Filter{}, func(m *control.Message) error {
				ids = append(ids, m.ID)
				return nil
			})
			if err != nil {
				return nil, err
			}
		case "-":
			sc := bufio.NewScanner(stdin)
			sc.Split(bufio.ScanWords)
			for sc.Scan() {
				ids = append(ids, sc.Text())
			}
			if err := sc.Err(); err != nil {
				return nil, fmt.Errorf("reading IDs from stdin: %w", err)
			}
		default:
			ids = append(ids, a)
		}
	}
	return ids, nil
}

func queueStats(args []string, stdout, stderr io.Writer) int {
	c := newAdminCmd("queue", "stats", "[-json]", stdout, stderr)
	st, code, done := fetch(c, args, 0, func(ctx context.Context, cl *control.Client, _ []string) (queue.Stats, error) {
		return cl.Stats(ctx)
	})
	if done {
		return code
	}
	fmt.Fprintf(stdout, "messages:    %d (%s)\n", st.Messages, humanBytes(st.Bytes))
	fmt.Fprintf(stdout, "recipients:  %d pending\n", st.Pending)
	var by []string
	for _, s := range []string{queue.StateActive, queue.StateDeferred, queue.StateIncoming, queue.StateHold} {
		by = append(by, fmt.Sprintf("%s %d", s, st.ByState[s]))
	}
	fmt.Fprintf(stdout, "by state:    %s\n", strings.Join(by, ", "))
	if !st.Oldest.IsZero() {
		fmt.Fprintf(stdout, "oldest:      %s (%s ago)\n", localTime(st.Oldest), time.Since(st.Oldest).Round(time.Second))
	}
	return 0
}

// queueCompact works on the files directly: the daemon must not run.
func queueCompact(args []string, stdout, stderr io.Writer) int {
	c := newAdminCmd("queue", "compact", "[-config FILE]", stdout, stderr)
	if _, ok := c.parse(args, 0, 0); !ok {
		return 2
	}
	dir, err := c.offlineQueueDir(true)
	if err != nil {
		return c.fail(err)
	}
	before, after, err := queue.Compact(dir)
	if errors.Is(err, queue.ErrLocked) {
		return c.fail(fmt.Errorf("%s is in use by a running mxedge: stop mxedge first", filepath.Join(dir, "queue.db")))
	}
	if err != nil {
		return c.fail(err)
	}
	path := filepath.Join(dir, "queue.db")
	if *c.json {
		return c.printJSON(struct {
			Path   string `json:"path"`
			Before int64  `json:"before"`
			After  int64  `json:"after"`
		}{path, before, after})
	}
	fmt.Fprintf(stdout, "compacted %s: %s -> %s (%d -> %d bytes)\n", path, humanBytes(before), humanBytes(after), before, after)
	return 0
}

func localTime(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") }

func sender(from string) string {
	if from == "" {
		return "<>"
	}
	return printable(from)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func humanBytes(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}

// printable replaces control characters with '?': addresses, replies of
// remote servers and headers come from outside and must not drive the
// admin's terminal (escape sequences).
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}

// printableText is printable for a header section: line breaks and tabs
// stay (CRLF becomes LF).
func printableText(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.Map(func(r rune) rune {
		if r != '\n' && r != '\t' && unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}

// queueCheck runs "queue check [-repair]" and "queue recover", offline;
// asOwner: as the data directory's owner when run as root
// (asDataDirOwner).
func queueCheck(name string, args []string, stdout, stderr io.Writer, asOwner bool) int {
	usage := "[-config FILE] [-json]"
	if name == "check" {
		usage = "[-repair] " + usage
	}
	c := newAdminCmd("queue", name, usage, stdout, stderr)
	repair := false
	if name == "check" {
		c.fs.BoolVar(&repair, "repair", false, "move bad records aside, orphans to orphaned/, rebuild an unreadable index")
	}
	if _, ok := c.parse(args, 0, 0); !ok {
		return 2
	}
	dir, err := c.offlineQueueDir(asOwner)
	if err != nil {
		return c.fail(err)
	}
	var rep *queue.Report
	if name == "check" {
		rep, err = queue.Check(dir, repair)
	} else {
		rep, err = queue.Recover(dir)
	}
	if errors.Is(err, queue.ErrLocked) {
		return c.fail(fmt.Errorf("%s is in use by a running mxedge: stop mxedge first", filepath.Join(dir, "queue.db")))
	}
	if err != nil {
		return c.fail(err)
	}
	if *c.json {
		if rc := c.printJSON(rep); rc != 0 {
			return rc
		}
	} else {
		for _, p := range rep.Problems {
			fmt.Fprintln(stdout, printable(p.String()))
		}
		if rep.Rebuilt {
			fmt.Fprintf(stdout, "index rebuilt; the damaged file is kept as %s\n", rep.DamagedCopy)
		}
		fmt.Fprintf(stdout, "%s: %d records, %d spool files, %d re-injected, %d problems\n",
			dir, rep.Records, rep.Spooled, len(rep.Recovered), len(rep.Problems))
	}
	if name == "check" && !repair && !rep.OK() {
		return 1
	}
	return 0
}

// queueBackup copies queue.db from the running daemon over its control
// socket (the daemon holds bbolt's exclusive lock, so a read-only open
// from here would wait for it to stop): to FILE.tmp, fsynced, renamed.
func queueBackup(args []string, stdout, stderr io.Writer) int {
	c := newAdminCmd("queue", "backup", "FILE [-config FILE]", stdout, stderr)
	pos, ok := c.parse(args, 1, 1)
	if !ok {
		return 2
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	dst := pos[0]
	tmp := dst + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return c.fail(err)
	}
	n, err := cl.Backup(context.Background(), f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return c.fail(err)
	}
	fmt.Fprintf(stdout, "wrote %s (%s); copy the spool/ directory after it for spooled bodies\n", dst, humanBytes(n))
	return 0
}
