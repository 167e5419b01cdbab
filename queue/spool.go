package queue

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// ErrNoSpace is wrapped by receive errors caused by a full disk, so that the
// listener can answer 452 4.3.1 instead of the generic 451 4.3.0.
var ErrNoSpace = errors.New("queue: insufficient system storage")

// Incoming is a message being received. The listener writes the message
// (trace headers first, then the data as received, CRLF line endings) and
// then calls Commit or Abort exactly once.
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
	f    File
	w    *bufio.Writer
	n    int64
	err  error // sticky write error
}

// ID is the queue ID of the message being received.
func (in *Incoming) ID() string { return in.env.ID }

// Write appends p to the spooled message. Errors are sticky: after the first
// failure every Write and the Commit return it.
func (in *Incoming) Write(p []byte) (int, error) {
	if in.err != nil {
		return 0, in.err
	}
	n, err := in.w.Write(p)
	in.n += int64(n)
	if err != nil {
		in.err = in.wrap("write", err)
	}
	return n, in.err
}

func (in *Incoming) wrap(op string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("queue: %s %s: %w: %w", op, in.env.ID, ErrNoSpace, err)
	}
	return fmt.Errorf("queue: %s %s: %w", op, in.env.ID, err)
}

// Commit makes the message durable and visible, in this order (RFC 5321
// section 6.1: a 250 is a promise to deliver or report):
//  1. flush and fsync the spool file, then close it;
//  2. fsync the spool directory so the file's name is durable too;
//  3. commit the envelope and schedule entry to bbolt (group commit shared
//     with concurrent sessions, which fsyncs the database).
//
// Only after 3 is the message part of the queue; a crash before leaves an
// orphan spool file that Open removes.
func (in *Incoming) Commit(ctx context.Context) error {
	if in.f == nil {
		return fmt.Errorf("queue: commit %s: already finished", in.env.ID)
	}
	err := in.err
	if err == nil {
		if err = in.w.Flush(); err != nil {
			err = in.wrap("flush", err)
		}
	}
	if err == nil {
		if err = in.f.Sync(); err != nil {
			err = in.wrap("fsync", err)
		}
	}
	if cerr := in.f.Close(); err == nil && cerr != nil {
		err = in.wrap("close", cerr)
	}
	in.f = nil
	if err == nil {
		if err = in.q.syncSpoolDir(); err != nil {
			err = in.wrap("fsync spool dir", err)
		}
	}
	if err == nil {
		in.env.Size = in.n
		if err = in.q.insert(ctx, &in.env); err != nil {
			err = in.wrap("commit", err)
		}
	}
	if err != nil {
		_ = os.Remove(in.path)
		return err
	}
	in.q.logAccepted(&in.env)
	in.q.wake()
	return nil
}

// Abort discards the message. It is safe to call after Commit (then it does
// nothing), so that a listener can defer it.
func (in *Incoming) Abort() {
	if in.f == nil {
		return
	}
	_ = in.f.Close()
	in.f = nil
	_ = os.Remove(in.path)
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
	path := q.bodyPath(env.ID)
	f, err := q.opts.CreateFile(path)
	if err != nil {
		in := &Incoming{env: env}
		return nil, in.wrap("create spool file", err)
	}
	return &Incoming{q: q, env: env, path: path, f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
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

// readHeaders reads the header section of the file at path: everything up
// to and including the first empty line, at most max bytes.
func readHeaders(path string, max int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(io.LimitReader(f, int64(max)))
	var out []byte
	for {
		line, err := br.ReadBytes('\n')
		out = append(out, line...)
		if err != nil || len(line) <= 2 && (string(line) == "\r\n" || string(line) == "\n") {
			return out, nil
		}
	}
}
