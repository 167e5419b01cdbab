// Package queue is mxedge's durable mail queue: it stores every accepted
// message until each recipient is delivered or has failed permanently, and
// schedules delivery attempts.
//
// # Storage
//
// Envelopes and delivery state live in bbolt (queue.db in the queue
// directory). Message bodies live in one of two places, chosen per message
// while it arrives:
//
//   - Up to Options.InlineMax (64 KiB, most mail) the body is buffered in
//     memory and committed in the same bbolt transaction as its envelope
//     (bucket "bodies"). Concurrent sessions share that commit (DB.Batch,
//     group commit), so one pair of fsyncs makes a whole batch of messages
//     durable (Options.CommitObserver sees each commit's duration and
//     size, for metrics), and there is no file to create, fsync, name in a directory
//     and unlink per message: that per-file work was most of the receive
//     path's cost in the profile (see the closing note of the queue issue).
//   - A larger body is streamed to a spool file (spool/<queue ID>) as soon
//     as it outgrows the buffer, through a 64 KiB write buffer, and fsynced
//     before the commit. Large bodies stay out of bbolt because bbolt has a
//     single writer and copy-on-write pages: a 10 MiB body would be copied
//     through the one write transaction all sessions share, hold up their
//     commits, and grow the file and its freelist.
//
// Memory per session is therefore bounded (InlineMax plus the write buffer
// plus a prepended header block of at most MaxPrepend) whatever the message
// size.
//
// A stored message is its header block followed by its data. The block
// (bucket "heads", queue ID -> bytes; no entry when empty, as for records
// written before it existed) holds the fields that checks added on top of
// the received data with Incoming.Prepend, and, once the Signer ran, its
// output on top of them. It is kept out of the JSON envelope, which is
// rewritten after every attempt, so that the envelope stays small; it is
// written in the commit that creates the message (or, for the signature,
// in the one that stores the first attempt's results, see Signer) and
// deleted with the record. Everything that reads a stored message
// (Message.Open, Headers, returned messages in reports) reads block then
// data, and Envelope.Size counts both. Before Commit, Incoming.Open reads
// the message back without copying it (checks such as DKIM verification or
// a milter).
//
// The envelope records the message's Origin: listener name and kind,
// client IP and reverse name, HELO, authenticated user and TLS. Records
// from before it had the client IP and HELO as top-level keys
// ("client_ip", "helo"); they are read into Origin.
//
// # Durability (RFC 5321 section 6.1)
//
// A message is acknowledged (250) only after Incoming.Commit returned nil,
// which happens after: (spooled messages) spool file fsynced and spool
// directory fsynced, then the bbolt transaction with the envelope (and an
// inline body and any header block) committed, which bbolt fsyncs. The
// bbolt record is what makes a message exist. A spool file without a
// record is either an unacknowledged leftover or an accepted message whose
// record was lost; Open cannot tell them apart and deletes neither: it
// moves them to orphaned/ beside spool/ and logs their count and path. A
// message is removed in the reverse order: record, inline body and header
// block first, then any spool file.
//
// # When the index is lost or damaged
//
// Every spool file describes itself: after the data, Commit writes a
// trailer (the envelope as accepted, the header block, the data length and
// CRC-32C; JSON, then "MXSPOOL1", its length and its own CRC-32C) and
// fsyncs it before the record is committed, that is before the 250. So:
//
//   - queue.db missing, empty (0 bytes) or without records beside message
//     files: Open refuses (ErrIndexMissing, naming "mxedge queue recover"
//     and "serve -recover") instead of starting empty. Recover re-injects
//     every complete spool file (trailer and data checksums good) in
//     spool/ and orphaned/, due now, with every recipient pending.
//   - queue.db unreadable (bbolt refuses it, panics on it, or it is
//     shorter than its metadata says): Open fails with ErrIndexDamaged, one
//     line, before bbolt's own page walk can fault on a missing page. Open
//     checks the meta pages' length first and touches every page of every
//     bucket under recover(); the cost is one pass over the file at start
//     (TestLargeBacklog, 50 000 messages, 90 MB queue.db: open 76 ms, 210
//     ms before the pass on the same noisy machine: lost in the noise).
//     Check -repair / Recover move it to queue.db.damaged-<time>, build a
//     new one from what can be read of it (bucket by bucket; if bbolt
//     cannot open it at all, a raw scan of its leaf pages, whose records
//     are put on hold because a freed page may hold a message delivered
//     since), then re-inject the spool files.
//   - One undecodable record: list, stats and the scheduler skip it, move
//     it to the bucket "corrupt" (kept, not deleted) and log it with its
//     queue ID; Check names it.
//   - A record whose spool file is gone: Check names it; -repair moves
//     the record to "corrupt" so the rest keeps flowing.
//
// What is not recoverable: inline bodies (at most InlineMax, most mail)
// live only in bbolt, so a message whose index pages are lost is lost with
// them, and cannot even be named. A per-message journal file would close
// that gap at the price of the per-file work that inline storage exists
// to avoid: BenchmarkReceive, 1 KiB, 20 sessions, 2 cores: inline 10 460
// msgs/s, journal-1KiB (every message in its own fsynced file) 714 msgs/s,
// about 14x slower. We keep inline storage and offer an online, consistent
// backup instead (Backup, "mxedge queue backup FILE", over the control
// socket because the daemon holds bbolt's exclusive lock). Recovered
// spooled messages have their original recipients all pending: delivery
// state lives in the index, so a recover can deliver a recipient twice
// (at least once, as after a crash).
//
// Delivery is at least once: a crash after the next hop accepted a message
// but before the result was committed delivers it again after restart.
// Neither Prepend nor the Signer adds an fsync or a bbolt commit: the block
// rides in Commit's group commit, the signature in the attempt's.
//
// # Scheduling
//
// A second bucket indexes messages by next attempt time (8-byte big-endian
// Unix nanoseconds followed by the queue ID), so the scheduler finds due
// messages with a cursor from the start of the index and never scans the
// whole queue. New messages are due at once: while Run runs and fewer
// than Concurrency attempts are in flight, Commit marks a new message in
// flight before its commit and hands the envelope it just stored to Run
// (handOff), which starts it without that scan (the scan decodes each due
// record again: 5 % of the CPU at 10 KiB x 20 sessions); otherwise the
// scan finds it. While due messages wait for a worker (the last scan
// found more than it could start, or none was free) new messages take
// the scan's way too, behind them in next-attempt order, so that a
// stream of new mail does not starve retries. After a temporary failure a
// message is retried after MinBackoff, doubling per attempt up to
// MaxBackoff, with +-20% jitter so a backlog does not retry in lockstep.
package queue

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Status of one recipient.
type Status string

const (
	StatusPending   Status = "pending"   // not yet delivered; will be retried
	StatusDelivered Status = "delivered" // the next hop accepted it (2xx)
	StatusFailed    Status = "failed"    // permanent failure (5xx)
)

// Envelope is what the queue stores about one message besides its body.
type Envelope struct {
	ID      string    `json:"id"`
	From    string    `json:"from"` // reverse-path as sent on the wire; "" is the null sender
	Rcpts   []Rcpt    `json:"rcpts"`
	Arrival time.Time `json:"arrival"`
	// Size is the length of the stored message as delivered: the header
	// block (Signer output and prepended fields, bucket "heads") plus the
	// data.
	Size   int64 `json:"size"`
	Inline bool  `json:"inline,omitempty"` // data stored in bbolt, not in a spool file
	// Framed: the spool file holds SpoolData bytes of data followed by a
	// trailer that describes the message (recover.go); false for inline
	// messages and spool files written before trailers existed (the whole
	// file is the data).
	Framed    bool  `json:"framed,omitempty"`
	SpoolData int64 `json:"spool_data,omitempty"`
	// Signed: the Signer ran for this message (before its first delivery
	// attempt) and its output, if any, is on top of the stored header
	// block; it is not called again.
	Signed bool `json:"signed,omitempty"`
	// Filtered: the ContentFilter passed or held this message; it is not called
	// again (a released message is delivered as it is).
	Filtered bool `json:"filtered,omitempty"`

	// Origin: where the message came from, for logs, admin and checks.
	Origin Origin `json:"origin,omitzero"`
	// Facts from the SMTP session for the outbound MAIL command.
	Body string `json:"body,omitempty"` // MAIL BODY= parameter: "", "7BIT", "8BITMIME"
	UTF8 bool   `json:"utf8,omitempty"` // MAIL SMTPUTF8 was given
	// CRLF: the data's writer vouched that every line ends in CRLF, with
	// no bare CR or LF (Incoming.MarkCRLF: smtpd's body filter); delivery
	// then dot-stuffs without a line-by-line scan. A Rewrite clears it.
	CRLF bool `json:"crlf,omitempty"`
	// NoDotLines: with CRLF, no line of the data starts with "." either:
	// the data goes on the wire as stored (delivery may sendfile it).
	NoDotLines bool `json:"no_dot_lines,omitempty"`

	// DSN parameters from MAIL (RFC 3461 sections 4.3, 4.4).
	Ret   string `json:"ret,omitempty"`   // "FULL" or "HDRS"; "" = headers only
	EnvID string `json:"envid,omitempty"` // ENVID, decoded

	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"`
	Held        bool      `json:"held,omitempty"` // on hold: not scheduled until released
	// HoldReason says why the ContentFilter held the message ("" when an admin
	// did).
	HoldReason string `json:"hold_reason,omitempty"`
	Warned     bool   `json:"warned,omitempty"` // the delay warning was sent
	Notice     bool   `json:"notice,omitempty"` // a report we generated: never reported on

	// signature is the Signer's output during the attempt that called it,
	// not yet stored (see Signer): it is on top of what Message.Open and
	// the reports of that attempt read, and save stores it.
	signature []byte
	// raw is the stored record this envelope was decoded from, kept by
	// due for claimDue: an unchanged record needs no second decode.
	raw []byte
	// stored is stateOf of the record as this envelope was decoded or
	// last written (insert, save), if storedOK: remove moves the live
	// counts from it without decoding the record again. An admin change
	// while the message was in flight (touched) makes it stale.
	stored   int
	storedOK bool
}

// Origin is where a message came from: the listener that received it and
// what the SMTP session learned about the client. Empty for the reports the
// queue generates itself.
type Origin struct {
	Listener   string `json:"listener,omitempty"`    // [[listener]] name, e.g. "mx"
	Kind       string `json:"kind,omitempty"`        // "mx", "submission" or "submissions"
	ClientIP   string `json:"client_ip,omitempty"`   // e.g. "192.0.2.1"
	ClientName string `json:"client_name,omitempty"` // the client's reverse DNS name; "" when unknown
	Helo       string `json:"helo,omitempty"`        // the EHLO/HELO argument
	AuthUser   string `json:"auth_user,omitempty"`   // SASL user; "" on MX
	// TLS is the TLS version and cipher suite of the session, e.g.
	// "TLSv1.3 TLS_AES_128_GCM_SHA256"; "" for plaintext.
	TLS string `json:"tls,omitempty"`
}

// Rcpt is one recipient and its delivery state.
type Rcpt struct {
	Addr   string `json:"addr"` // forward-path as sent on the wire
	Status Status `json:"status"`
	// LastReply is the last reply (or error) for this recipient, e.g.
	// "550 5.1.1 no such user", kept for admin listing and bounces.
	LastReply string    `json:"last_reply,omitempty"`
	DSN       string    `json:"dsn,omitempty"` // enhanced status code of the last result
	Relay     string    `json:"relay,omitempty"`
	LastTry   time.Time `json:"last_try,omitempty"`
	// DSN parameters from RCPT (RFC 3461 sections 4.1, 4.2).
	Notify []string `json:"notify,omitempty"` // e.g. ["FAILURE","DELAY"], ["NEVER"]; nil = default
	ORcpt  string   `json:"orcpt,omitempty"`  // "rfc822;user@example.org"
}

// Options tune a queue; zero values take the defaults in brackets.
type Options struct {
	Hostname       string        // Reporting-MTA and From domain of reports ["localhost"]
	MaxLifetime    time.Duration // retry period of a message [3d]
	BounceLifetime time.Duration // retry period of a message from <> [1d]
	DelayWarning   time.Duration // send one delay notice after this long; 0 = off
	Postmaster     string        // gets failures of messages from <> ["" = log only]
	// InlineMax: messages up to this size are stored inside the bbolt
	// commit with their envelope instead of in a spool file [64 KiB].
	InlineMax int
	// CreateFile creates a spool file; tests inject failures (a full disk)
	// here [os.OpenFile with O_EXCL, mode 0600].
	CreateFile func(path string) (File, error)
	// Signer is called once per message before its first delivery
	// attempt (see Signer); nil: no signing.
	Signer Signer
	// Reserve: NewMessage and CheckSpace fail with ErrNoSpace while the
	// queue directory's file system has fewer free bytes (for unprivileged
	// users) than this; 0 = no check. Delivery is never affected.
	Reserve int64
	// FreeSpace returns the free bytes of the file system of dir; tests
	// inject a full disk here [statfs(2), f_bavail x f_bsize].
	FreeSpace func(dir string) (uint64, error)
	// Recover: before opening, rebuild what the index lost from the spool
	// files (Recover; serve -recover). Without it Open refuses an index
	// that is missing or empty beside message files (ErrIndexMissing).
	Recover bool
	// ContentFilter is called once per message before its first
	// delivery attempt, before the Signer (see ContentFilter); nil: none.
	ContentFilter ContentFilter

	MinBackoff  time.Duration // first retry delay [5m]
	MaxBackoff  time.Duration // retry delay cap [4000s]
	Concurrency int           // deliveries in flight [20]
	// BatchSize is bbolt's MaxBatchSize: a group commit starts as soon as
	// this many sessions wait for one [Concurrency].
	BatchSize int
	Logger    *slog.Logger     // [slog.Default()]
	Now       func() time.Time // clock, for tests [time.Now]
	// Observer, if set, is told of every delivery result (metrics); nil:
	// none.
	Observer Observer
	// CommitObserver, if set, is told of every group commit (metrics);
	// nil: none.
	CommitObserver CommitObserver
}

// Observer is told of each recipient's delivery attempt result by the
// scheduler, after the result is known and before it is stored. status
// is "sent", "deferred" or "bounced"; class is the Result's Class (how the
// next hop was chosen, "" when none was); delay is the time since the
// message arrived. It must return at once and must not call the queue.
type Observer interface {
	Delivered(status, class string, delay time.Duration)
}

// Queue is an open queue. It is safe for concurrent use.
type Queue struct {
	db       *bolt.DB
	spoolDir string
	opts     Options
	log      *slog.Logger
	ids      idGen
	dirSync  *groupSync
	// inlineBufs: *[]byte of capacity InlineMax, the memory of inline
	// messages being received (spool.go), reused once committed or spilled.
	inlineBufs sync.Pool
	// spoolWriters: *bufio.Writer (64 KiB) of spool files being written.
	spoolWriters sync.Pool

	wakeCh chan struct{}
	// fresh: messages handed from Commit straight to Run, already marked
	// in flight (scheduler.go, handOff). Capacity Concurrency: at most
	// that many messages are in flight, so a send never waits.
	fresh chan *Envelope

	mu      sync.Mutex
	running bool // Run is taking fresh messages (under mu)
	// backlog: the last look at the schedule found more due messages
	// than free workers, or could not look (none free). Fresh messages
	// then wait their turn in the schedule, behind older due ones (under mu).
	backlog  bool
	inflight map[string]bool
	// touched: in-flight messages whose record an admin changed meanwhile
	// (updateTx); remove then looks for a moved schedule entry.
	touched map[string]bool

	counts liveCounts // records per state (counts.go)
	space  spaceCache // CheckSpace's last plentiful statfs (spool.go)

	commits *commitWatch // nil without Options.CommitObserver (commits.go)

	scans atomic.Int64 // scheduler scans (due) so far, for tests
}

var (
	bucketMsgs   = []byte("msgs")   // queue ID -> JSON Envelope
	bucketSched  = []byte("sched")  // 8-byte next-attempt nanos + queue ID -> empty
	bucketBodies = []byte("bodies") // queue ID -> message data, for data of at most InlineMax bytes
	bucketHeads  = []byte("heads")  // queue ID -> header block on top of the data; absent = none
)

// Open opens (creating if needed) the queue in dir: dir/queue.db and
// dir/spool. The bbolt file is locked: a second process opening the same
// directory fails after a short wait instead of corrupting it. Open removes
// spool files of messages that were never acknowledged.
func Open(dir string, opts Options) (*Queue, error) {
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 5 * time.Minute
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 4000 * time.Second
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = opts.MinBackoff
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 20
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = opts.Concurrency
	}
	if opts.Hostname == "" {
		opts.Hostname = "localhost"
	}
	if opts.MaxLifetime <= 0 {
		opts.MaxLifetime = 72 * time.Hour
	}
	if opts.BounceLifetime <= 0 {
		opts.BounceLifetime = 24 * time.Hour
	}
	if opts.InlineMax == 0 {
		opts.InlineMax = 64 << 10
	}
	if opts.FreeSpace == nil {
		opts.FreeSpace = freeSpace
	}
	if opts.CreateFile == nil {
		opts.CreateFile = createFile
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	spool := filepath.Join(dir, "spool")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return nil, fmt.Errorf("queue: open: %w", err)
	}
	if missing, err := indexMissing(dir); err != nil {
		return nil, fmt.Errorf("queue: open %s: %w", dir, err)
	} else if missing && !opts.Recover {
		return nil, fmt.Errorf("queue: open %s: %w", dir, ErrIndexMissing)
	}
	if opts.Recover {
		rep, err := Recover(dir)
		if err != nil {
			return nil, err
		}
		for _, p := range rep.Problems {
			opts.Logger.Warn("queue recover: "+p.Issue, "queue_id", p.ID, "where", p.Where, "action", p.Action)
		}
		opts.Logger.Info("queue recover", "records", rep.Records, "recovered", len(rep.Recovered),
			"problems", len(rep.Problems), "rebuilt", rep.Rebuilt, "damaged_copy", rep.DamagedCopy)
	}
	db, err := openIndex(filepath.Join(dir, "queue.db"), &bolt.Options{
		Timeout:        daemonLockTimeout,
		NoFreelistSync: true, // freelist rebuilt at open: cheaper commits
		FreelistType:   bolt.FreelistMapType,
		// Reserve address space up front: growing the mapping waits for
		// every read transaction, which would stall commits.
		InitialMmapSize: 1 << 30,
	})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("queue: open %s: locked by another process (is mxedge already running?)", dir)
		}
		return nil, err
	}
	db.MaxBatchSize = opts.BatchSize
	db.MaxBatchDelay = 2 * time.Millisecond
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMsgs, bucketSched, bucketBodies, bucketHeads} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("queue: open %s: %w", dir, err)
	}
	q := &Queue{
		db:       db,
		spoolDir: spool,
		opts:     opts,
		log:      opts.Logger,
		dirSync:  newGroupSync(spool),
		wakeCh:   make(chan struct{}, 1),
		fresh:    make(chan *Envelope, opts.Concurrency),
		inflight: map[string]bool{},
		touched:  map[string]bool{},
	}
	if opts.CommitObserver != nil {
		q.commits = &commitWatch{obs: opts.CommitObserver}
	}
	if !opts.Recover {
		// An index without records beside message files is as good as
		// missing (a fresh file put in place of the old one).
		var empty bool
		_ = db.View(func(tx *bolt.Tx) error { k, _ := tx.Bucket(bucketMsgs).Cursor().First(); empty = k == nil; return nil })
		if names, _ := spoolNames(spool); empty && len(names) > 0 {
			db.Close()
			return nil, fmt.Errorf("queue: open %s: %w", dir, ErrIndexMissing)
		}
	}
	if err := q.initCounts(); err != nil {
		db.Close()
		return nil, fmt.Errorf("queue: open %s: count records: %w", dir, err)
	}
	n, err := q.moveOrphans()
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("queue: open %s: move spool files without a record aside: %w", dir, err)
	}
	if n > 0 {
		q.log.Warn("moved spool files without a queue record aside; `mxedge queue recover` re-injects complete ones",
			"count", n, "path", q.orphanDir())
	}
	return q, nil
}

// Close closes the database. Call it after Run has returned.
func (q *Queue) Close() error {
	if err := q.db.Close(); err != nil {
		return fmt.Errorf("queue: close: %w", err)
	}
	return nil
}

// wake tells the scheduler to look for due messages now.
func (q *Queue) wake() {
	select {
	case q.wakeCh <- struct{}{}:
	default:
	}
}

func (q *Queue) logAccepted(env *Envelope) {
	q.log.Info("accepted", "queue_id", env.ID, "from", "<"+env.From+">", "size", env.Size,
		"nrcpt", len(env.Rcpts), "listener", env.Origin.Listener, "client_ip", env.Origin.ClientIP,
		"helo", env.Origin.Helo, "tls", env.Origin.TLS)
}
