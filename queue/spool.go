package queue

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrNoSpace is wrapped by receive errors caused by a full disk, so that the
// listener can answer 452 4.3.1 instead of the generic 451 4.3.0.
var ErrNoSpace = errors.New("queue: insufficient system storage")

// Incoming is a message being received. The listener writes the message
// (trace headers first, then the data as received, CRLF line endings) and
// then calls Commit or Abort exactly once. Before that, checks may read the
// message back (Open) and add header fields on top of it (Prepend). An
// Incoming is used by one goroutine at a time.
//
// A message that fits in Options.InlineMax is held in memory until Commit
// and then stored inside the same bbolt transaction as its envelope; a
// larger one is streamed to a spool file as soon as it outgrows that
// buffer. Either way memory per session is bounded by InlineMax plus a
// 64 KiB write buffer plus the prepended block (at most MaxPrepend),
// whatever the message size.
//
// Contract: nothing of an Incoming is visible to the scheduler, to admin
// commands or after a restart until Commit has returned nil; after Commit
// returns nil the message survives a crash (kill -9, power loss) and will be
// delivered. If Commit returns an error, or Abort is called, or the process
// dies before Commit returns, the message leaves no trace (its spool file is
// removed now, or at the next Open). Open and Prepend change nothing of
// that: a prepended block becomes durable with the rest in Commit's one
// group commit, and reading the message back costs no fsync.
type Incoming struct {
	q       *Queue
	env     Envelope
	path    string
	head    []byte // prepended header block, on top of the data
	buf     []byte // the message while it fits inline
	f       File   // the spool file, once the message outgrew buf
	w       *bufio.Writer
	n       int64  // data bytes written
	crc     uint32 // CRC-32C of the data written to the spool file
	err     error  // sticky write error
	done    bool
	readers map[*incomingReader]bool // open readers of the spool file
}

// MaxPrepend bounds the header block that Prepend adds to one message, all
// calls together (and, separately, the output of a Signer).
const MaxPrepend = 64 << 10

// ID is the queue ID of the message being received.
func (in *Incoming) ID() string { return in.env.ID }

// Write appends p to the message. Errors are sticky: after the first
// failure every Write and the Commit return it.
func (in *Incoming) Write(p []byte) (int, error) {
	if in.err != nil {
		return 0, in.err
	}
	if in.done {
		return 0, fmt.Errorf("queue: write %s: already finished", in.env.ID)
	}
	if in.f == nil && len(in.buf)+len(p) <= in.q.opts.InlineMax {
		if in.buf == nil {
			in.buf = in.q.inlineBuf()
		}
		in.buf = append(in.buf, p...)
		in.n += int64(len(p))
		return len(p), nil
	}
	if in.f == nil {
		if err := in.spill(); err != nil {
			in.err = err
			return 0, err
		}
	}
	n, err := in.w.Write(p)
	in.n += int64(n)
	in.crc = crc32.Update(in.crc, castagnoli, p[:n])
	if err != nil {
		in.err = in.wrap("write", err)
	}
	return n, in.err
}

// Size is the size of the message as it stands: the prepended block plus
// the data written so far.
func (in *Incoming) Size() int64 { return int64(len(in.head)) + in.n }

// Hold makes Commit store the message on hold with reason (a message kept
// for review: "queue list -state hold", delivered only after "queue
// release"). Call it before Commit.
func (in *Incoming) Hold(reason string) { in.env.Held, in.env.HoldReason = true, reason }

// MarkCRLF records that the data written so far, and the header block
// prepended, have CRLF line endings only, no bare CR or LF (Envelope.CRLF),
// and whether no line of the data starts with "." (Envelope.NoDotLines).
// Call it once the data is complete; a later Rewrite clears both.
func (in *Incoming) MarkCRLF(noDotLines bool) { in.env.CRLF, in.env.NoDotLines = true, noDotLines }

// Prepend adds header fields on top of the message data, below the fields
// of earlier Prepend calls: the first call's fields are the topmost header
// (the listener's Received, then the checks' Authentication-Results ...).
// fields is one or more complete header field lines, each ending in CRLF,
// folded lines continuing with SP or HTAB (CheckFields). The block is part
// of the stored message: Commit stores it with the envelope, and delivery,
// admin show and returned messages see it. Prepend fails, changing
// nothing, for malformed fields, when the block would exceed MaxPrepend,
// and after Commit or Abort; it may be called before, between or after
// writes.
func (in *Incoming) Prepend(fields []byte) error {
	if in.done {
		return fmt.Errorf("queue: prepend %s: already finished", in.env.ID)
	}
	if err := CheckFields(fields); err != nil {
		return fmt.Errorf("queue: prepend %s: %w", in.env.ID, err)
	}
	if len(in.head)+len(fields) > MaxPrepend {
		return fmt.Errorf("queue: prepend %s: header block over %d bytes", in.env.ID, MaxPrepend)
	}
	in.head = append(in.head, fields...)
	return nil
}

// Open returns a reader over the message as it stands when Open is called:
// the prepended block, then the data written so far. It copies nothing: an
// inline message is read from its buffer, a spooled one from its spool file
// (the write buffer is flushed, the file opened read-only and read up to
// the bytes written; a flush error is the sticky write error).
//
// Open may be called several times, before, between and after writes, but
// not concurrently with Write, Prepend, Commit or Abort; a reader sees
// nothing written after its Open. Close the reader before Commit or Abort:
// they close a reader left open, whose reads then fail, as do reads
// between Commit or Abort and Close. Open fails after Commit or Abort and
// after a write error.
func (in *Incoming) Open() (io.ReadCloser, error) {
	if in.done {
		return nil, fmt.Errorf("queue: open %s: already finished", in.env.ID)
	}
	if in.err != nil {
		return nil, in.err
	}
	head := bytes.NewReader(in.head[:len(in.head):len(in.head)])
	if in.f == nil {
		return &incomingReader{in: in, r: io.MultiReader(head, bytes.NewReader(in.buf[:len(in.buf):len(in.buf)]))}, nil
	}
	if err := in.w.Flush(); err != nil {
		in.err = in.wrap("flush", err)
		return nil, in.err
	}
	f, err := os.Open(in.path)
	if err != nil {
		return nil, in.wrap("open spool file", err)
	}
	r := &incomingReader{in: in, r: io.MultiReader(head, io.NewSectionReader(f, 0, in.n)), f: f}
	if in.readers == nil {
		in.readers = map[*incomingReader]bool{}
	}
	in.readers[r] = true
	return r, nil
}

// incomingReader is a reader returned by Incoming.Open.
type incomingReader struct {
	in *Incoming
	r  io.Reader
	f  *os.File // the spool file; nil for an inline message
}

func (r *incomingReader) Read(p []byte) (int, error) {
	if r.in.done {
		return 0, fmt.Errorf("queue: read %s: already finished", r.in.env.ID)
	}
	return r.r.Read(p)
}

func (r *incomingReader) Close() error {
	if r.f == nil {
		return nil
	}
	delete(r.in.readers, r)
	err := r.f.Close()
	r.f = nil
	return err
}

// closeReaders closes readers of the spool file left open (Commit, Abort).
func (in *Incoming) closeReaders() {
	for r := range in.readers {
		_ = r.Close()
	}
}

// inlineBuf returns an empty buffer of capacity InlineMax from the pool:
// a message received inline costs no allocation as its buffer grows.
func (q *Queue) inlineBuf() []byte {
	if b, ok := q.inlineBufs.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, q.opts.InlineMax)
}

// releaseBuf gives the inline buffer back to the pool. Nothing may
// refer to it afterwards: it is called when the data was written to the
// spool file, committed (bbolt copies values into its pages), or
// discarded, and readers fail after Commit and Abort.
func (in *Incoming) releaseBuf() {
	if cap(in.buf) == in.q.opts.InlineMax {
		b := in.buf[:0]
		in.q.inlineBufs.Put(&b)
	}
	in.buf = nil
}

// releaseWriter gives the spool file's writer back to the pool, once
// the file is closed.
func (in *Incoming) releaseWriter() {
	if in.w != nil {
		in.w.Reset(nil)
		in.q.spoolWriters.Put(in.w)
		in.w = nil
	}
}

// spill moves the message from memory to a new spool file.
func (in *Incoming) spill() error {
	f, err := in.q.opts.CreateFile(in.path)
	if err != nil {
		return in.wrap("create spool file", err)
	}
	in.f = f
	if w, ok := in.q.spoolWriters.Get().(*bufio.Writer); ok {
		w.Reset(f)
		in.w = w
	} else {
		in.w = bufio.NewWriterSize(f, 64<<10)
	}
	_, err = in.w.Write(in.buf)
	in.crc = crc32.Update(in.crc, castagnoli, in.buf)
	in.releaseBuf()
	if err != nil {
		return in.wrap("write", err)
	}
	return nil
}

func (in *Incoming) wrap(op string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("queue: %s %s: %w: %w", op, in.env.ID, ErrNoSpace, err)
	}
	return fmt.Errorf("queue: %s %s: %w", op, in.env.ID, err)
}

// Commit makes the message durable and visible, in this order (RFC 5321
// section 6.1: a 250 is a promise to deliver or report):
//  1. for a spooled message: append the trailer (envelope, header block,
//     CRC-32C of the data: the file describes itself, see recover.go),
//     flush and fsync the spool file, close it, and fsync the spool
//     directory so the file's name is durable too;
//  2. commit the envelope, the schedule entry and (for an inline message)
//     the body to bbolt, in a group commit shared with concurrent sessions,
//     which fsyncs the database.
//
// Only after 2 is the message part of the queue; a crash before leaves at
// most a spool file without a record, which Open moves to orphaned/ (it
// cannot tell it from a message whose record was lost).
func (in *Incoming) Commit(ctx context.Context) error {
	if in.done {
		return fmt.Errorf("queue: commit %s: already finished", in.env.ID)
	}
	in.done = true
	in.closeReaders()
	err := in.err
	in.env.Size = in.Size()
	in.env.Inline = in.f == nil
	if err == nil && in.f != nil {
		// The trailer makes the file self-describing (recover.go).
		in.env.Framed, in.env.SpoolData = true, in.n
		if _, err = in.w.Write(encodeTrailer(&in.env, in.head, in.crc)); err != nil {
			err = in.wrap("write", err)
		}
		if err == nil {
			err = in.w.Flush()
		}
		if err != nil {
			err = in.wrap("flush", err)
		}
		if err == nil {
			if err = in.f.Sync(); err != nil {
				err = in.wrap("fsync", err)
			}
		}
		if cerr := in.f.Close(); err == nil && cerr != nil {
			err = in.wrap("close", cerr)
		}
		in.releaseWriter()
		if err == nil {
			if err = in.q.syncSpoolDir(); err != nil {
				err = in.wrap("fsync spool dir", err)
			}
		}
	}
	claimed := false
	if err == nil {
		if claimed, err = in.q.insert(ctx, &in.env, in.head, in.buf); err != nil {
			err = in.wrap("commit", err)
		}
	}
	if err != nil {
		in.discardFile()
		return err
	}
	// bbolt copied an inline body into its pages when it committed, and
	// readers fail after Commit (incomingReader.Read): the buffer is free.
	in.releaseBuf()
	in.q.logAccepted(&in.env)
	if claimed {
		in.q.handOff(&in.env) // after the "accepted" line: it comes first in the log
	} else {
		in.q.wake()
	}
	return nil
}

// Abort discards the message. It is safe to call after Commit (then it does
// nothing), so that a listener can defer it.
func (in *Incoming) Abort() {
	if in.done {
		return
	}
	in.done = true
	in.closeReaders()
	in.discardFile()
}

func (in *Incoming) discardFile() {
	in.releaseBuf()
	in.head = nil
	if in.f != nil {
		_ = in.f.Close()
		_ = os.Remove(in.path)
	}
	in.releaseWriter()
}

// File is a spool file being written.
type File interface {
	io.Writer
	Sync() error
	Close() error
}

func createFile(path string) (File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

// NewMessage starts receiving a message with the given envelope (ID,
// Arrival and Size are set by the queue). The caller must end it with
// Commit or Abort.
func (q *Queue) NewMessage(env Envelope) (*Incoming, error) {
	if len(env.Rcpts) == 0 {
		return nil, errors.New("queue: new message: no recipients")
	}
	if err := q.CheckSpace(); err != nil {
		return nil, err
	}
	env.Arrival = q.now()
	env.ID = q.ids.next(env.Arrival)
	env.Size = 0
	env.Attempts = 0
	for i := range env.Rcpts {
		env.Rcpts[i].Status = StatusPending
	}
	return &Incoming{q: q, env: env, path: q.bodyPath(env.ID)}, nil
}

func (q *Queue) bodyPath(id string) string { return filepath.Join(q.spoolDir, id) }

// syncSpoolDir fsyncs the spool directory, sharing the fsync with
// concurrent sessions (see groupSync).
func (q *Queue) syncSpoolDir() error { return q.dirSync.Sync() }

func (q *Queue) now() time.Time { return q.opts.Now() }

// readHeaders reads the header section from r: everything up to and
// including the first empty line, at most max bytes.
func readHeaders(r io.Reader, max int) []byte {
	br := bufio.NewReader(io.LimitReader(r, int64(max)))
	var out []byte
	for {
		line, err := br.ReadBytes('\n')
		out = append(out, line...)
		if err != nil || string(line) == "\r\n" || string(line) == "\n" {
			return out
		}
	}
}

// openMessage opens the stored message of env as delivered: the header
// block (an unsaved signature of the attempt in flight, then the "heads"
// entry), then the data, from bbolt for an inline message, else from its
// spool file. A message whose record is gone is ErrNotFound.
func (q *Queue) openMessage(env *Envelope) (io.ReadCloser, error) {
	var head, body []byte
	err := q.db.View(func(tx *bolt.Tx) error {
		id := []byte(env.ID)
		if tx.Bucket(bucketMsgs).Get(id) == nil {
			return fmt.Errorf("queue: message %s: %w", env.ID, ErrNotFound)
		}
		// Values are only valid inside the transaction: copy them.
		h := tx.Bucket(bucketHeads).Get(id)
		head = make([]byte, 0, len(env.signature)+len(h))
		head = append(append(head, env.signature...), h...)
		if !env.Inline {
			return nil
		}
		v := tx.Bucket(bucketBodies).Get(id)
		if v == nil {
			return fmt.Errorf("queue: body of %s: %w", env.ID, ErrNotFound)
		}
		if len(v) <= q.opts.InlineMax {
			body = append(q.inlineBuf(), v...) // pooled: inlineReader.Close gives it back
		} else {
			body = append([]byte(nil), v...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if env.Inline {
		return &inlineReader{r: io.MultiReader(bytes.NewReader(head), bytes.NewReader(body)), buf: body, q: q}, nil
	}
	f, err := os.Open(q.bodyPath(env.ID))
	if err != nil {
		return nil, fmt.Errorf("queue: message %s: %w", env.ID, err)
	}
	var data io.Reader = f
	if env.Framed { // the trailer after the data is not part of the message
		data = io.NewSectionReader(f, 0, env.SpoolData)
	}
	sr := &spoolReader{Reader: io.MultiReader(bytes.NewReader(head), data), f: f, head: head, n: -1}
	if env.Framed {
		sr.n = env.SpoolData
	}
	return sr, nil
}

// spoolReader reads a spooled message: the header block, then the data
// in the spool file.
type spoolReader struct {
	io.Reader
	f    *os.File
	head []byte
	n    int64 // data bytes at the start of f; -1: unknown (a file without trailer)
}

func (r *spoolReader) Close() error { return r.f.Close() }

// Spooled returns the parts of a message read from a spool file, for a
// caller that sends them itself (delivery's sendfile path): the header
// block and the file, whose first n bytes from its current offset (0,
// unless Read was called) are the data. ok is false when n is unknown.
// The caller must not Read the message as well.
func (r *spoolReader) Spooled() (head []byte, f *os.File, n int64, ok bool) {
	return r.head, r.f, r.n, r.n >= 0
}

// inlineReader reads a message stored in bbolt from its copy in a pooled
// buffer, given back on the first Close; reading after Close fails.
type inlineReader struct {
	r   io.Reader
	buf []byte
	q   *Queue
}

func (r *inlineReader) Read(p []byte) (int, error) {
	if r.q == nil {
		return 0, os.ErrClosed
	}
	return r.r.Read(p)
}

func (r *inlineReader) Close() error {
	if r.q == nil {
		return nil
	}
	if cap(r.buf) == r.q.opts.InlineMax {
		b := r.buf[:0]
		r.q.inlineBufs.Put(&b)
	}
	r.q, r.r, r.buf = nil, nil, nil
	return nil
}

// CheckSpace returns an error wrapping ErrNoSpace while the free space of
// the queue's file system is below Options.Reserve (a listener calls it at
// MAIL, NewMessage at DATA). A statfs failure is not a full disk: it is
// reported as the error it is (a temporary local error to the client).
func (q *Queue) CheckSpace() error {
	if q.opts.Reserve <= 0 {
		return nil
	}
	now := q.now()
	if q.space.plenty(now) {
		return nil
	}
	free, err := q.opts.FreeSpace(q.spoolDir)
	if err != nil {
		return fmt.Errorf("queue: free space of %s: %w", q.spoolDir, err)
	}
	q.space.note(now, free >= uint64(q.opts.Reserve)+spaceMargin)
	if free < uint64(q.opts.Reserve) {
		return fmt.Errorf("queue: %d bytes free in %s, reserve is %d: %w", free, q.spoolDir, q.opts.Reserve, ErrNoSpace)
	}
	return nil
}

// spaceMargin and spaceFresh: a statfs that found the reserve plus 1 GiB
// free answers CheckSpace for the next 100 ms (two statfs per message were
// 2 % of the CPU at 10 KiB x 20 sessions); closer to the reserve every
// call asks again. Filling 1 GiB in 100 ms takes 10 GB/s.
const (
	spaceMargin = 1 << 30
	spaceFresh  = 100 * time.Millisecond
)

// spaceCache remembers until when the file system had plenty of room.
type spaceCache struct {
	mu    sync.Mutex
	until time.Time
}

func (c *spaceCache) plenty(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return now.Before(c.until)
}

func (c *spaceCache) note(now time.Time, plenty bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if plenty {
		c.until = now.Add(spaceFresh)
	} else {
		c.until = time.Time{}
	}
}

func freeSpace(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// Rewrite replaces the message data (not the block of Prepend, which stays
// on top) with what write writes, given a reader over the current data: a
// content filter's header changes or new body (milter SMFIR_CHGHEADER,
// SMFIR_REPLBODY). The new data goes to memory or a new spool file as a
// received message does (bounded memory), and replaces the old only when
// write returned nil; on an error nothing changes. Readers left open by
// Open are closed. Call it before Commit, not concurrently with the other
// methods.
func (in *Incoming) Rewrite(write func(data io.Reader, w io.Writer) error) error {
	if in.done {
		return fmt.Errorf("queue: rewrite %s: already finished", in.env.ID)
	}
	if in.err != nil {
		return in.err
	}
	var data io.Reader = bytes.NewReader(in.buf)
	var old *os.File
	if in.f != nil {
		if err := in.w.Flush(); err != nil {
			in.err = in.wrap("flush", err)
			return in.err
		}
		f, err := os.Open(in.path)
		if err != nil {
			return in.wrap("rewrite", err)
		}
		old = f
		defer old.Close()
		data = io.NewSectionReader(f, 0, in.n)
	}
	nw := &Incoming{q: in.q, env: in.env, path: in.path + ".new"}
	err := write(data, nw)
	if err == nil {
		err = nw.err
	}
	if err == nil && nw.f != nil {
		if err = nw.w.Flush(); err != nil {
			err = nw.wrap("flush", err)
		}
	}
	if err == nil && nw.f != nil {
		if err = os.Rename(nw.path, in.path); err != nil {
			err = in.wrap("rewrite", err)
		}
	}
	if err != nil {
		nw.discardFile()
		return err
	}
	in.closeReaders()
	if in.f != nil {
		_ = in.f.Close()
		if nw.f == nil {
			_ = os.Remove(in.path)
		}
	}
	in.buf, in.f, in.w, in.n, in.crc = nw.buf, nw.f, nw.w, nw.n, nw.crc
	in.env.CRLF, in.env.NoDotLines = false, false // the new data is a filter's, not vouched for
	return nil
}

// Envelope returns a copy of the message's envelope as Commit will store
// it.
func (in *Incoming) Envelope() Envelope {
	e := in.env
	e.Rcpts = append([]Rcpt(nil), e.Rcpts...)
	return e
}

// SetFrom changes the envelope sender (a content filter's SMFIR_CHGFROM);
// from is in wire form, "" the null sender.
func (in *Incoming) SetFrom(from string) { in.env.From = from }

// AddRcpt adds a recipient (SMFIR_ADDRCPT), wire form, unless the
// message has one that is the same mailbox: two addresses are one mailbox
// when key gives the same string for both (the listener's rule for a
// repeated RCPT; smtpd's compares local parts without case unless the
// domain is case-sensitive).
func (in *Incoming) AddRcpt(addr string, key func(addr string) string) {
	k := key(addr)
	for _, rc := range in.env.Rcpts {
		if key(rc.Addr) == k {
			return
		}
	}
	in.env.Rcpts = append(in.env.Rcpts, Rcpt{Addr: addr, Status: StatusPending})
}

// DelRcpt removes the recipients (SMFIR_DELRCPT) that are the mailbox
// addr, by key as in AddRcpt.
func (in *Incoming) DelRcpt(addr string, key func(addr string) string) {
	k := key(addr)
	var rs []Rcpt
	for _, rc := range in.env.Rcpts {
		if key(rc.Addr) != k {
			rs = append(rs, rc)
		}
	}
	in.env.Rcpts = rs
}
