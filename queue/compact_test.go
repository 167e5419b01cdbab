package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Operator's story: a backlog of 20,000 messages was delivered; queue.db
// kept its size. Compacting it while mxedge is stopped shrinks the file and
// keeps the messages still queued, schedule included.
func TestCompactShrinksAndKeepsMessages(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	var kept []string
	for i := range 3 {
		kept = append(kept, receive(t, q, fmt.Sprintf("Subject: keep %d\r\n\r\nbody\r\n", i), "a@x.test"))
	}
	// One with a prepended header block (bucket "heads").
	in, err := q.NewMessage(Envelope{Rcpts: []Rcpt{{Addr: "a@x.test"}}})
	if err != nil {
		t.Fatal(err)
	}
	const headed = "X-Check: kept\r\nSubject: keep 3\r\n\r\nbody\r\n"
	io.WriteString(in, headed[len("X-Check: kept\r\n"):])
	if err := in.Prepend([]byte("X-Check: kept\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := in.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	kept = append(kept, in.ID())
	const n, perTx = 20000, 2000
	filler := make([]byte, 1024)
	for start := 0; start < n; start += perTx {
		err := q.db.Update(func(tx *bolt.Tx) error {
			for i := start; i < start+perTx; i++ {
				if err := tx.Bucket(bucketMsgs).Put(fmt.Appendf(nil, "fill-%05d", i), filler); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	err = q.db.Update(func(tx *bolt.Tx) error {
		for i := range n {
			if err := tx.Bucket(bucketMsgs).Delete(fmt.Appendf(nil, "fill-%05d", i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(dir, "queue.db")
	fi, err := os.Stat(dbPath)
	if err != nil {
		t.Fatal(err)
	}

	before, after, err := compact(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if before != fi.Size() {
		t.Errorf("before = %d, file had %d bytes", before, fi.Size())
	}
	if after*4 > before {
		t.Errorf("compacted %d -> %d bytes: want at least 4x smaller", before, after)
	}
	if fi, err := os.Stat(dbPath); err != nil || fi.Size() != after || fi.Mode().Perm() != 0o600 {
		t.Errorf("queue.db after compaction: %v, %v; want %d bytes, mode 0600", fi, err, after)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, compactTempPrefix+"*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}

	q = openTest(t, dir, Options{})
	defer q.Close()
	for _, id := range kept {
		if _, err := q.Get(id); err != nil {
			t.Errorf("kept message %s: %v", id, err)
		}
	}
	if got := storedMessage(t, q, kept[3]); got != headed {
		t.Errorf("message with a header block after compaction: %q, want %q", got, headed)
	}
	due, _, err := q.due(time.Now().Add(time.Hour), 10)
	if err != nil || len(due) != len(kept) {
		t.Errorf("due after compaction: %d messages, %v; want %d (schedule lost?)", len(due), err, len(kept))
	}
}

// A running daemon holds the database: Compact refuses and changes nothing.
func TestCompactRefusesWhileOpen(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	defer q.Close()
	receive(t, q, "Subject: x\r\n\r\nx\r\n", "a@x.test")
	fi, _ := os.Stat(filepath.Join(dir, "queue.db"))

	_, _, err := Compact(dir)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("Compact with the queue open: %v, want ErrLocked", err)
	}
	fi2, _ := os.Stat(filepath.Join(dir, "queue.db"))
	if !os.SameFile(fi, fi2) {
		t.Error("queue.db was replaced")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, compactTempPrefix+"*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// A wrong directory is an error, not a new empty database.
func TestCompactMissingDatabase(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := Compact(dir); err == nil {
		t.Fatal("no error for a directory without queue.db")
	}
	if _, err := os.Stat(filepath.Join(dir, "queue.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("queue.db created: %v", err)
	}
}

// A daemon started during the compaction opened the old file and waits for
// its lock. When the new file is renamed into place, that daemon must not
// get the old (now nameless) file: Compact keeps the old lock until the
// daemon's wait (Open's lock timeout) is over, so it fails instead.
func TestCompactWaitingDaemonDoesNotGetOldFile(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	receive(t, q, "Subject: x\r\n\r\nx\r\n", "a@x.test")
	q.Close()
	dbPath := filepath.Join(dir, "queue.db")

	waiting, err := os.OpenFile(dbPath, os.O_RDWR, 0) // the daemon's open(2)
	if err != nil {
		t.Fatal(err)
	}
	defer waiting.Close()
	oldFi, _ := waiting.Stat()

	done := make(chan error, 1)
	go func() { _, _, err := Compact(dir); done <- err }()
	deadline := time.Now().Add(10 * time.Second)
	for { // wait for the rename
		if fi, err := os.Stat(dbPath); err == nil && !os.SameFile(fi, oldFi) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("queue.db was not replaced")
		}
		time.Sleep(time.Millisecond)
	}
	// The daemon's lock loop, as bbolt runs it with Open's timeout.
	for start := time.Now(); time.Since(start) < daemonLockTimeout; time.Sleep(50 * time.Millisecond) {
		err := syscall.Flock(int(waiting.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			t.Fatal("a daemon waiting on the old queue.db got its lock after the rename")
		}
		if err != syscall.EWOULDBLOCK {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
