package queue

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrNoSpace is wrapped by receive errors caused by a full disk, so that the
// listener can answer 452 4.3.1 instead of the generic 451 4.3.0.
var ErrNoSpace = errors.New("queue: insufficient system storage")

// Incoming is a message being received. The listener writes the message
// (trace headers first, then the data as received, CRLF line endings) and
// then calls Commit or Abort exactly once.
//
// A message that fits in Options.InlineMax is held in memory until Commit
// and then stored inside the same bbolt transaction as its envelope; a
// larger one is streamed to a spool file as soon as it outgrows that
// buffer. Either way memory per session is bounded by InlineMax plus a
// 64 KiB write buffer, whatever the message size.
//
// Contract: nothing of an Incoming is visible to the scheduler, to admin
// commands or after a restart until Commit has returned nil; after Commit
// returns nil the message survives a crash (kill -9, power loss) and will be
// delivered. If Commit returns an error, or Abort is called, or the process
// dies before Commit returns, the message leaves no trace (its spool file is
// removed now, or at the next Open).
type Incoming struct {
	q    *Queue
	env  Envelope
	path string
	buf  []byte // the message while it fits inline
	f    File   // the spool file, once the message outgrew buf
	w    *bufio.Writer
	n    int64
	err  error // sticky write error
	done bool
}

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
	if err != nil {
		in.err = in.wrap("write", err)
	}
	return n, in.err
}

// spill moves the message from memory to a new spool file.
func (in *Incoming) spill() error {
	f, err := in.q.opts.CreateFile(in.path)
	if err != nil {
		return in.wrap("create spool file", err)
	}
	in.f = f
	in.w = bufio.NewWriterSize(f, 64<<10)
	_, err = in.w.Write(in.buf)
	in.buf = nil
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
//  1. for a spooled message: flush and fsync the spool file, close it, and
//     fsync the spool directory so the file's name is durable too;
//  2. commit the envelope, the schedule entry and (for an inline message)
//     the body to bbolt, in a group commit shared with concurrent sessions,
//     which fsyncs the database.
//
// Only after 2 is the message part of the queue; a crash before leaves at
// most an orphan spool file that Open removes.
func (in *Incoming) Commit(ctx context.Context) error {
	if in.done {
		return fmt.Errorf("queue: commit %s: already finished", in.env.ID)
	}
	in.done = true
	err := in.err
	if err == nil && in.f != nil {
		if err = in.w.Flush(); err != nil {
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
		if err == nil {
			if err = in.q.syncSpoolDir(); err != nil {
				err = in.wrap("fsync spool dir", err)
			}
		}
	}
	if err == nil {
		in.env.Size = in.n
		in.env.Inline = in.f == nil
		if err = in.q.insert(ctx, &in.env, in.buf); err != nil {
			err = in.wrap("commit", err)
		}
	}
	if err != nil {
		in.discardFile()
		return err
	}
	in.q.logAccepted(&in.env)
	in.q.wake()
	return nil
}

// Abort discards the message. It is safe to call after Commit (then it does
// nothing), so that a listener can defer it.
func (in *Incoming) Abort() {
	if in.done {
		return
	}
	in.done = true
	in.discardFile()
}

func (in *Incoming) discardFile() {
	in.buf = nil
	if in.f != nil {
		_ = in.f.Close()
		_ = os.Remove(in.path)
	}
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

// removeOrphans deletes spool files that have no queue record: messages
// whose Commit did not complete before a crash (never acknowledged), and
// leftovers of removed messages. It runs once at Open, before the scheduler.
func (q *Queue) removeOrphans() (int, error) {
	entries, err := os.ReadDir(q.spoolDir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		name := e.Name()
		if validID(name) && q.exists(name) {
			continue
		}
		if err := os.Remove(filepath.Join(q.spoolDir, name)); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

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

// openBody opens the stored message of env: from bbolt for an inline
// message, else its spool file.
func (q *Queue) openBody(env *Envelope) (io.ReadCloser, error) {
	if !env.Inline {
		return os.Open(q.bodyPath(env.ID))
	}
	var body []byte
	err := q.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketBodies).Get([]byte(env.ID))
		if v == nil {
			return fmt.Errorf("queue: body of %s: %w", env.ID, ErrNotFound)
		}
		body = append([]byte(nil), v...) // v is only valid inside the transaction
		return nil
	})
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(body)), nil
}
