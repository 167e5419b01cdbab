package queue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrLocked is returned by Compact when a running mxedge holds the queue
// database.
var ErrLocked = errors.New("the queue database is in use by a running mxedge; stop mxedge first")

const (
	// daemonLockTimeout is how long Open waits for the bbolt file lock
	// (queue.go); keep the two equal.
	daemonLockTimeout = 2 * time.Second
	// compactLockTimeout is how long Compact waits for it: short, the
	// holder is a running daemon that will not let go.
	compactLockTimeout = 500 * time.Millisecond
	// compactTxMaxSize bounds one copy transaction: memory, not fsyncs
	// (the copy is written without fsync and synced once at the end).
	compactTxMaxSize  = 16 << 20
	compactTempPrefix = "queue.db.compact-"
)

// Compact rewrites dir/queue.db (dir as given to Open) without its free
// pages, for use while no mxedge runs on dir; it returns the file size
// before and after. bbolt never gives freed pages back to the file system,
// so a database that once held a large backlog stays large until compacted.
//
// Steps, in order, each failure leaving queue.db as it was:
//  1. open queue.db with its exclusive lock (ErrLocked if a daemon holds it
//     for longer than a short wait) and remove leftovers of a compaction
//     that crashed;
//  2. copy every bucket into a temporary file in dir (bolt.Compact),
//     fsync it and close it;
//  3. rename the copy over queue.db, fsync dir (the rename is durable);
//  4. keep the lock on the old file for longer than Open waits for it, so
//     that a daemon that opened the old file while we were copying fails
//     at its lock ("already running") instead of queueing into the
//     unlinked old file.
//
// A crash at any point leaves either the old or the new complete file
// under the name queue.db; spool files are not touched.
func Compact(dir string) (before, after int64, err error) {
	return compact(dir, daemonLockTimeout+500*time.Millisecond)
}

func compact(dir string, holdOld time.Duration) (before, after int64, err error) {
	path := filepath.Join(dir, "queue.db")
	fi, err := os.Stat(path) // bolt.Open would create a missing file
	if err != nil {
		return 0, 0, fmt.Errorf("queue: compact: %w", err)
	}
	before = fi.Size()

	opts := &bolt.Options{
		Timeout:        compactLockTimeout,
		NoFreelistSync: true, // as Open: a read-write open of src then writes nothing
		FreelistType:   bolt.FreelistMapType,
	}
	src, err := bolt.Open(path, 0o600, opts)
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return before, 0, fmt.Errorf("queue: compact %s: %w", path, ErrLocked)
		}
		return before, 0, fmt.Errorf("queue: compact: open %s: %w", path, err)
	}
	renamed := false
	defer func() {
		if renamed && holdOld > 0 {
			time.Sleep(holdOld) // step 4
		}
		if cerr := src.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("queue: compact: close %s: %w", path, cerr)
		}
	}()

	// We hold the lock, so no other compaction runs: earlier temporary
	// files are leftovers of a crash.
	if old, _ := filepath.Glob(filepath.Join(dir, compactTempPrefix+"*")); len(old) > 0 {
		for _, p := range old {
			_ = os.Remove(p)
		}
	}

	tmp, err := os.CreateTemp(dir, compactTempPrefix+"*")
	if err != nil {
		return before, 0, fmt.Errorf("queue: compact: %w", err)
	}
	tmpPath := tmp.Name()
	tmp.Close()
	defer func() {
		if !renamed {
			_ = os.Remove(tmpPath)
		}
	}()
	if err := copyCompact(tmpPath, src); err != nil {
		return before, 0, fmt.Errorf("queue: compact %s: %w", path, err)
	}
	fi, err = os.Stat(tmpPath)
	if err != nil {
		return before, 0, fmt.Errorf("queue: compact: %w", err)
	}
	after = fi.Size()

	if err := os.Rename(tmpPath, path); err != nil {
		return before, 0, fmt.Errorf("queue: compact: %w", err)
	}
	renamed = true
	if err := syncDir(dir); err != nil {
		return before, after, fmt.Errorf("queue: compact: fsync %s: %w", dir, err)
	}
	return before, after, nil
}

// copyCompact copies src into the new database file at dst and fsyncs it.
func copyCompact(dst string, src *bolt.DB) error {
	db, err := bolt.Open(dst, 0o600, &bolt.Options{
		NoSync:         true, // one fsync at the end instead of one per copy transaction
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return err
	}
	if err := bolt.Compact(db, src, compactTxMaxSize); err != nil {
		db.Close()
		return err
	}
	if err := db.Close(); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
