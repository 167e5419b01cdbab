package queue

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Index loss and corruption. See the package doc, section "When the index
// is lost or damaged", for what is and is not recoverable.

// ErrIndexDamaged is returned by Open (and wrapped with the cause) when
// queue.db cannot be opened or read: bbolt refused it, panicked on it, or
// it is shorter than its own metadata says.
var ErrIndexDamaged = errors.New("queue index damaged: run `mxedge queue check`")

// ErrIndexMissing is returned by Open when queue.db is missing, empty or
// holds no record while the spool directory holds message files: starting
// would treat accepted mail as leftovers. Open with Options.Recover (serve
// -recover) or run "mxedge queue recover" first.
var ErrIndexMissing = errors.New("queue index missing or empty beside a non-empty spool directory: run `mxedge queue recover` (or start with `mxedge serve -recover`)")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Spool file trailer, after the data:
//
//	JSON spoolTrailer | "MXSPOOL1" | uint32 BE len(JSON) | uint32 BE CRC-32C(JSON)
//
// written and fsynced with the data before the record is committed (that
// is, before the 250).
const (
	trailerMagic  = "MXSPOOL1"
	trailerFooter = len(trailerMagic) + 8
	maxTrailer    = 4 << 20
)

type spoolTrailer struct {
	Env     *Envelope `json:"env"`
	Head    []byte    `json:"head,omitempty"` // header block on top of the data
	DataLen int64     `json:"data_len"`
	DataCRC uint32    `json:"data_crc"` // CRC-32C (Castagnoli)
}

func encodeTrailer(env *Envelope, head []byte, crc uint32) []byte {
	js, _ := json.Marshal(spoolTrailer{Env: env, Head: head, DataLen: env.SpoolData, DataCRC: crc})
	out := append(js, trailerMagic...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(js)))
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(js, castagnoli))
}

// readTrailer reads and checks the trailer of the spool file at path, and
// with verifyData the CRC of its data too.
func readTrailer(path string, verifyData bool) (*spoolTrailer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return parseTrailer(f, st.Size(), verifyData)
}

// parseTrailer is readTrailer over the size bytes of f.
func parseTrailer(f io.ReaderAt, size int64, verifyData bool) (*spoolTrailer, error) {
	if size < int64(trailerFooter) {
		return nil, errors.New("no trailer (incomplete or written before trailers existed)")
	}
	foot := make([]byte, trailerFooter)
	if _, err := f.ReadAt(foot, size-int64(trailerFooter)); err != nil {
		return nil, err
	}
	if string(foot[:len(trailerMagic)]) != trailerMagic {
		return nil, errors.New("no trailer (incomplete or written before trailers existed)")
	}
	n := int64(binary.BigEndian.Uint32(foot[len(trailerMagic):]))
	if n > maxTrailer || n > size-int64(trailerFooter) {
		return nil, errors.New("trailer length out of range")
	}
	js := make([]byte, n)
	if _, err := f.ReadAt(js, size-int64(trailerFooter)-n); err != nil {
		return nil, err
	}
	if crc32.Checksum(js, castagnoli) != binary.BigEndian.Uint32(foot[len(trailerMagic)+4:]) {
		return nil, errors.New("trailer checksum mismatch")
	}
	tr, err := decodeTrailer(js)
	if err != nil {
		return nil, err
	}
	if tr.DataLen != size-int64(trailerFooter)-n {
		return nil, fmt.Errorf("trailer says %d data bytes, file has %d", tr.DataLen, size-int64(trailerFooter)-n)
	}
	if verifyData {
		h := crc32.New(castagnoli)
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, tr.DataLen)); err != nil {
			return nil, err
		}
		if h.Sum32() != tr.DataCRC {
			return nil, errors.New("data checksum mismatch")
		}
	}
	return tr, nil
}

// decodeTrailer decodes and sanity-checks a trailer's JSON.
func decodeTrailer(js []byte) (*spoolTrailer, error) {
	var tr spoolTrailer
	if err := json.Unmarshal(js, &tr); err != nil {
		return nil, fmt.Errorf("decode trailer: %w", err)
	}
	if tr.Env == nil || !validID(tr.Env.ID) || len(tr.Env.Rcpts) == 0 || tr.DataLen < 0 {
		return nil, errors.New("trailer without a valid envelope")
	}
	return &tr, nil
}

// checkRecord decodes a stored record and checks what every reader relies
// on.
func checkRecord(k, v []byte) (*Envelope, error) {
	env, err := decodeEnvelope(v)
	if err != nil {
		return nil, err
	}
	if env.ID != string(k) || !validID(env.ID) {
		return nil, fmt.Errorf("queue: record %q: envelope ID %q does not match", k, env.ID)
	}
	if len(env.Rcpts) == 0 {
		return nil, fmt.Errorf("queue: record %q: no recipients", k)
	}
	return env, nil
}

// safely runs fn, turning a panic and a memory fault (a bbolt page beyond
// the end of a truncated file) into an error.
func safely(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return fn()
}

// openIndex opens queue.db and checks it: bbolt's page consistency check
// and the file length against its metadata. A failure other than the lock
// is ErrIndexDamaged.
func openIndex(path string, opts *bolt.Options) (*bolt.DB, error) {
	var db *bolt.DB
	err := safely(func() error {
		// bbolt walks the pages at open in a goroutine of its own, where
		// a page beyond the end of the file is a fatal fault: check the
		// length first.
		if err := checkMeta(path); err != nil {
			return err
		}
		var err error
		if db, err = bolt.Open(path, 0o600, opts); err != nil {
			return err
		}
		// Touch every page of every bucket here, where a panic is
		// recovered (tx.Check would run in a goroutine of its own).
		return db.View(func(tx *bolt.Tx) error {
			return tx.ForEach(func(_ []byte, b *bolt.Bucket) error {
				return b.ForEach(func(_, _ []byte) error { return nil })
			})
		})
	})
	if err != nil {
		if db != nil {
			_ = safely(db.Close)
		}
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, err
		}
		return nil, fmt.Errorf("%w (%s: %v)", ErrIndexDamaged, path, err)
	}
	return db, nil
}

// checkMeta reads bbolt's two meta pages (page size 4096) and checks that
// the file holds every page the newer valid one says it has. A file whose
// meta pages are both invalid is left to bbolt to refuse.
func checkMeta(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // a new queue
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	var best struct{ txid, pgid, psize uint64 }
	found := false
	for _, off := range []int64{0, 4096} {
		b := make([]byte, 16+64)
		if _, err := f.ReadAt(b, off); err != nil {
			continue
		}
		m := b[16:]
		if binary.LittleEndian.Uint32(m) != 0xED0CDAED {
			continue
		}
		h := fnv.New64a()
		h.Write(m[:56])
		if h.Sum64() != binary.LittleEndian.Uint64(m[56:]) {
			continue
		}
		txid, pgid, psize := binary.LittleEndian.Uint64(m[48:]), binary.LittleEndian.Uint64(m[40:]), uint64(binary.LittleEndian.Uint32(m[8:]))
		if !found || txid > best.txid {
			best.txid, best.pgid, best.psize, found = txid, pgid, psize, true
		}
	}
	if !found {
		return nil
	}
	if need := best.pgid * best.psize; need > uint64(st.Size()) {
		return fmt.Errorf("file is %d bytes, its metadata says %d (truncated)", st.Size(), need)
	}
	return nil
}

// spoolNames lists the message files (valid queue IDs) in dir.
func spoolNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.Type().IsRegular() && validID(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// indexMissing reports whether queue.db is absent or empty (bbolt would
// silently create a new one) while spool/ or orphaned/ holds files.
func indexMissing(dir string) (bool, error) {
	st, err := os.Stat(filepath.Join(dir, "queue.db"))
	if err == nil && st.Size() > 0 {
		return false, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	n, err := spoolNames(filepath.Join(dir, "spool"))
	return len(n) > 0, err
}

// moveOrphans moves spool files without a record to dir/orphaned (see the
// package doc): Open cannot tell an unacknowledged leftover from a message
// whose record was lost, so it deletes neither. Other entries in spool/
// (no queue ID) move too.
func (q *Queue) moveOrphans() (int, error) {
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
		if err := moveInto(filepath.Join(q.spoolDir, name), q.orphanDir()); err != nil {
			return n, err
		}
		n++
	}
	if n > 0 {
		if err := syncDir(q.spoolDir); err != nil {
			return n, err
		}
	}
	return n, nil
}

func (q *Queue) orphanDir() string { return filepath.Join(filepath.Dir(q.spoolDir), "orphaned") }

// moveInto renames path into dir (created 0700), keeping its name or, if
// taken, adding a suffix; then fsyncs dir.
func moveInto(path, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	dst := filepath.Join(dir, filepath.Base(path))
	for i := 1; ; i++ {
		if _, err := os.Lstat(dst); errors.Is(err, os.ErrNotExist) {
			break
		}
		dst = filepath.Join(dir, fmt.Sprintf("%s.%d", filepath.Base(path), i))
	}
	if err := os.Rename(path, dst); err != nil {
		return err
	}
	return syncDir(dir)
}

// Problem is one finding of Check or Recover, naming the message.
type Problem struct {
	ID     string `json:"id"`              // queue ID, or the file name
	Where  string `json:"where"`           // "record", "spool", "orphaned", "index"
	Issue  string `json:"issue"`           // what is wrong
	Action string `json:"action,omitzero"` // what -repair / recover did
}

func (p Problem) String() string {
	s := fmt.Sprintf("%s %s: %s", p.Where, p.ID, p.Issue)
	if p.Action != "" {
		s += " -> " + p.Action
	}
	return s
}

// Report is the result of Check and Recover.
type Report struct {
	Records   int       `json:"records"`   // readable records in the index
	Spooled   int       `json:"spooled"`   // spool files with a record
	Recovered []string  `json:"recovered"` // queue IDs re-injected from spool files
	Problems  []Problem `json:"problems"`
	// Rebuilt: queue.db was unreadable; it was moved to DamagedCopy and
	// a new index built from what could be read of it and the spool files.
	Rebuilt     bool   `json:"rebuilt,omitempty"`
	DamagedCopy string `json:"damaged_copy,omitempty"`
}

// OK reports whether nothing needs attention.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

func (r *Report) add(id, where, issue, action string) {
	r.Problems = append(r.Problems, Problem{ID: id, Where: where, Issue: issue, Action: action})
}

var bucketCorrupt = []byte("corrupt") // queue ID -> the undecodable record as it was

// Check verifies the queue in dir (as given to Open) while no mxedge runs
// on it (ErrLocked otherwise): the index pages, every record, every inline
// body and spool file, and finds spool files without a record. With
// repair it moves undecodable records and records whose data is gone to
// the bucket "corrupt" (kept, named in the report), moves spool files
// without a record to orphaned/ ("mxedge queue recover" re-injects them),
// and rebuilds an index that cannot be read (see Recover). Without repair
// it changes nothing.
func Check(dir string, repair bool) (*Report, error) {
	path := filepath.Join(dir, "queue.db")
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("queue: check %s: %w", dir, err)
	}
	db, err := openIndex(path, &bolt.Options{Timeout: compactLockTimeout, ReadOnly: !repair})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("queue: check %s: %w", dir, ErrLocked)
	}
	if err != nil {
		rep := &Report{}
		rep.add("queue.db", "index", err.Error(), "")
		if !repair {
			rep.Problems[0].Action = "run `mxedge queue check -repair` to rebuild it"
			return rep, nil
		}
		return rebuild(dir, rep)
	}
	defer db.Close()
	rep := &Report{}
	spool := filepath.Join(dir, "spool")
	var bad []Problem
	err = safely(func() error {
		return db.View(func(tx *bolt.Tx) error {
			msgs := tx.Bucket(bucketMsgs)
			if msgs == nil {
				return nil
			}
			bodies := tx.Bucket(bucketBodies)
			return msgs.ForEach(func(k, v []byte) error {
				id := string(k)
				env, err := checkRecord(k, v)
				if err != nil {
					bad = append(bad, Problem{ID: id, Where: "record", Issue: err.Error()})
					return nil
				}
				rep.Records++
				if env.Inline {
					if bodies == nil || bodies.Get(k) == nil {
						bad = append(bad, Problem{ID: id, Where: "record", Issue: "inline body missing"})
					}
					return nil
				}
				st, err := os.Stat(filepath.Join(spool, id))
				switch {
				case err != nil:
					bad = append(bad, Problem{ID: id, Where: "spool", Issue: "spool file missing: " + err.Error()})
				case env.Framed:
					if _, err := readTrailer(filepath.Join(spool, id), true); err != nil {
						// The record is good; delivery still works from it.
						rep.add(id, "spool", err.Error(), "")
					}
					rep.Spooled++
				default:
					_ = st // a spool file from before trailers: nothing to verify
					rep.Spooled++
				}
				return nil
			})
		})
	})
	if err != nil {
		rep.add("queue.db", "index", err.Error(), "")
		if !repair {
			return rep, nil
		}
		db.Close()
		return rebuild(dir, rep)
	}
	_ = safely(func() error {
		return db.View(func(tx *bolt.Tx) error {
			if cb := tx.Bucket(bucketCorrupt); cb != nil {
				return cb.ForEach(func(k, _ []byte) error {
					rep.add(string(k), "record", "undecodable record kept in the corrupt bucket", "")
					return nil
				})
			}
			return nil
		})
	})
	if repair && len(bad) > 0 {
		err := db.Update(func(tx *bolt.Tx) error {
			for i := range bad {
				if err := moveCorrupt(tx, bad[i].ID); err != nil {
					return err
				}
				bad[i].Action = "record moved to the corrupt bucket"
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("queue: repair %s: %w", dir, err)
		}
	}
	rep.Problems = append(rep.Problems, bad...)
	names, err := spoolNames(spool)
	if err != nil {
		return nil, fmt.Errorf("queue: check %s: %w", dir, err)
	}
	for _, id := range names {
		var has bool
		_ = db.View(func(tx *bolt.Tx) error {
			has = tx.Bucket(bucketMsgs) != nil && tx.Bucket(bucketMsgs).Get([]byte(id)) != nil
			return nil
		})
		if has {
			continue
		}
		action := ""
		if repair {
			if err := moveInto(filepath.Join(spool, id), filepath.Join(dir, "orphaned")); err != nil {
				return nil, fmt.Errorf("queue: repair %s: %w", dir, err)
			}
			action = "moved to orphaned/; `mxedge queue recover` re-injects it"
		}
		rep.add(id, "spool", "spool file without a record", action)
	}
	orph, _ := spoolNames(filepath.Join(dir, "orphaned"))
	for _, id := range orph {
		rep.add(id, "orphaned", "kept in orphaned/", "`mxedge queue recover` re-injects it if it is complete")
	}
	return rep, nil
}

// moveCorrupt moves id's record (raw) to the corrupt bucket and removes
// it, its schedule entries and its header block from the queue; an inline
// body stays in "bodies" (nothing is deleted).
func moveCorrupt(tx *bolt.Tx, id string) error {
	cb, err := tx.CreateBucketIfNotExists(bucketCorrupt)
	if err != nil {
		return err
	}
	msgs := tx.Bucket(bucketMsgs)
	if v := msgs.Get([]byte(id)); v != nil {
		if err := cb.Put([]byte(id), append([]byte(nil), v...)); err != nil {
			return err
		}
	}
	if err := msgs.Delete([]byte(id)); err != nil {
		return err
	}
	var keys [][]byte
	c := tx.Bucket(bucketSched).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) > 8 && string(k[8:]) == id {
			keys = append(keys, append([]byte(nil), k...))
		}
	}
	for _, k := range keys {
		if err := tx.Bucket(bucketSched).Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Recover rebuilds what the index lost, while no mxedge runs on dir: an
// unreadable queue.db is moved aside (queue.db.damaged-<time>) and a new
// one built from every record, inline body and header block that can
// still be read from it; then every complete spool file (valid trailer
// and data checksum) in spool/ and orphaned/ without a record is
// re-injected from its trailer, due now, all recipients pending. Files
// that are not complete stay in orphaned/ and are named in the report.
func Recover(dir string) (*Report, error) {
	path := filepath.Join(dir, "queue.db")
	rep := &Report{}
	db, err := openIndex(path, &bolt.Options{Timeout: compactLockTimeout})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("queue: recover %s: %w", dir, ErrLocked)
	}
	if err != nil {
		rep.add("queue.db", "index", err.Error(), "")
		return rebuild(dir, rep)
	}
	defer db.Close()
	if err := reinject(db, dir, rep, time.Now()); err != nil {
		return nil, fmt.Errorf("queue: recover %s: %w", dir, err)
	}
	return rep, nil
}

// rebuild moves a damaged queue.db aside, salvages what it can into a new
// one and re-injects the spool files.
func rebuild(dir string, rep *Report) (*Report, error) {
	path := filepath.Join(dir, "queue.db")
	rep.Rebuilt = true
	if _, err := os.Stat(path); err == nil {
		rep.DamagedCopy = path + ".damaged-" + time.Now().UTC().Format("20060102T150405")
		if err := os.Rename(path, rep.DamagedCopy); err != nil {
			return nil, fmt.Errorf("queue: rebuild %s: %w", dir, err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: compactLockTimeout})
	if err != nil {
		return nil, fmt.Errorf("queue: rebuild %s: %w", dir, err)
	}
	defer db.Close()
	if err := createBuckets(db); err != nil {
		return nil, fmt.Errorf("queue: rebuild %s: %w", dir, err)
	}
	if rep.DamagedCopy != "" {
		salvage(rep.DamagedCopy, db, rep)
	}
	if err := reinject(db, dir, rep, time.Now()); err != nil {
		return nil, fmt.Errorf("queue: rebuild %s: %w", dir, err)
	}
	return rep, nil
}

func createBuckets(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMsgs, bucketSched, bucketBodies, bucketHeads} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
}

// salvage copies what can be read of the damaged index at src into db:
// bucket by bucket, key by key, stopping a bucket at the first fault.
// Records get a fresh schedule entry (due now unless held).
func salvage(src string, db *bolt.DB, rep *Report) {
	type kv struct{ k, v []byte }
	read := map[string][]kv{}
	for _, b := range []string{"msgs", "bodies", "heads", "corrupt"} {
		var got []kv
		err := safely(func() error {
			old, err := bolt.Open(src, 0o400, &bolt.Options{ReadOnly: true, Timeout: compactLockTimeout})
			if err != nil {
				return err
			}
			defer func() { _ = safely(old.Close) }()
			return old.View(func(tx *bolt.Tx) error {
				bk := tx.Bucket([]byte(b))
				if bk == nil {
					return nil
				}
				c := bk.Cursor()
				for k, v := c.First(); k != nil; k, v = c.Next() {
					got = append(got, kv{append([]byte(nil), k...), append([]byte(nil), v...)})
				}
				return nil
			})
		})
		if err != nil {
			rep.add("queue.db", "index", fmt.Sprintf("salvaging bucket %s stopped after %d entries: %v", b, len(got), err), "")
		}
		read[b] = got
	}
	raw := false
	if len(read["msgs"]) == 0 {
		// bbolt cannot walk the file (meta or branch pages gone): read
		// its leaf pages directly.
		msgs, bodies, heads := scanLeaves(src)
		read["msgs"], read["bodies"], read["heads"] = nil, nil, nil
		for k, v := range msgs {
			read["msgs"] = append(read["msgs"], kv{[]byte(k), v})
		}
		for k, v := range bodies {
			read["bodies"] = append(read["bodies"], kv{[]byte(k), v})
		}
		for k, v := range heads {
			read["heads"] = append(read["heads"], kv{[]byte(k), v})
		}
		raw = len(msgs) > 0
	}
	now := time.Now()
	_ = db.Update(func(tx *bolt.Tx) error {
		for _, e := range read["bodies"] {
			_ = tx.Bucket(bucketBodies).Put(e.k, e.v)
		}
		for _, e := range read["heads"] {
			_ = tx.Bucket(bucketHeads).Put(e.k, e.v)
		}
		cb, _ := tx.CreateBucketIfNotExists(bucketCorrupt)
		for _, e := range read["corrupt"] {
			_ = cb.Put(e.k, e.v)
		}
		for _, e := range read["msgs"] {
			env, err := checkRecord(e.k, e.v)
			if err != nil {
				_ = cb.Put(e.k, e.v)
				rep.add(string(e.k), "record", err.Error(), "record moved to the corrupt bucket")
				continue
			}
			if env.Inline && tx.Bucket(bucketBodies).Get(e.k) == nil {
				_ = cb.Put(e.k, e.v)
				rep.add(env.ID, "record", "inline body lost with the index", "record moved to the corrupt bucket")
				continue
			}
			if raw {
				// A leaf page may be a freed old copy: the message may
				// have been delivered since. Hold it for the operator.
				env.Held, env.HoldReason = true, "salvaged from a damaged index: check, then `mxedge queue release`"
				e.v, _ = encodeEnvelope(env)
				rep.add(env.ID, "record", "salvaged from a raw page scan of the damaged index", "held for review")
			}
			_ = tx.Bucket(bucketMsgs).Put(e.k, e.v)
			rep.Records++
			if !env.Held {
				if env.NextAttempt.After(now) {
					now = env.NextAttempt
				}
				_ = tx.Bucket(bucketSched).Put(schedKey(env.NextAttempt, env.ID), nil)
			}
			rep.Recovered = append(rep.Recovered, env.ID)
		}
		return nil
	})
}

// reinject inserts a record for every complete spool file in spool/ and
// orphaned/ that has none, moving files from orphaned/ back to spool/.
func reinject(db *bolt.DB, dir string, rep *Report, now time.Time) error {
	if err := createBuckets(db); err != nil {
		return err
	}
	spool, orph := filepath.Join(dir, "spool"), filepath.Join(dir, "orphaned")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return err
	}
	for _, d := range []string{spool, orph} {
		names, err := spoolNames(d)
		if err != nil {
			return err
		}
		sort.Strings(names)
		for _, name := range names {
			p := filepath.Join(d, name)
			var has bool
			_ = db.View(func(tx *bolt.Tx) error { has = tx.Bucket(bucketMsgs).Get([]byte(name)) != nil; return nil })
			if has {
				if d == spool {
					rep.Spooled++
				}
				continue
			}
			tr, err := readTrailer(p, true)
			if err == nil && tr.Env.ID != name {
				err = fmt.Errorf("trailer names %s", tr.Env.ID)
			}
			if err != nil {
				where := "spool"
				if d == spool {
					if err := moveInto(p, orph); err != nil {
						return err
					}
				} else {
					where = "orphaned"
				}
				rep.add(name, where, "not re-injected: "+err.Error(), "kept in orphaned/")
				continue
			}
			if d == orph {
				if _, err := os.Lstat(filepath.Join(spool, name)); err == nil {
					rep.add(name, "orphaned", "a different file of that name is in spool/", "kept in orphaned/")
					continue
				}
				if err := os.Rename(p, filepath.Join(spool, name)); err != nil {
					return err
				}
				if err := syncDir(spool); err != nil {
					return err
				}
			}
			env := tr.Env
			env.Framed, env.SpoolData, env.Inline = true, tr.DataLen, false
			env.NextAttempt = now
			for i := range env.Rcpts {
				env.Rcpts[i].Status = StatusPending
			}
			v, err := encodeEnvelope(env)
			if err != nil {
				return err
			}
			err = db.Update(func(tx *bolt.Tx) error {
				if err := tx.Bucket(bucketMsgs).Put([]byte(env.ID), v); err != nil {
					return err
				}
				if len(tr.Head) > 0 {
					if err := tx.Bucket(bucketHeads).Put([]byte(env.ID), tr.Head); err != nil {
						return err
					}
				}
				if env.Held {
					return nil
				}
				return tx.Bucket(bucketSched).Put(schedKey(now, env.ID), nil)
			})
			if err != nil {
				return err
			}
			rep.Recovered = append(rep.Recovered, env.ID)
		}
	}
	return nil
}

// skipCorrupt moves records that readers found undecodable to the corrupt
// bucket and logs each with its queue ID, so that delivery, list and stats
// go on without them (the data is kept; "mxedge queue check" names them).
func (q *Queue) skipCorrupt(ids []string, cause string) {
	if len(ids) == 0 {
		return
	}
	err := q.db.Update(func(tx *bolt.Tx) error {
		for _, id := range ids {
			if err := moveCorrupt(tx, id); err != nil {
				return err
			}
		}
		return nil
	})
	for _, id := range ids {
		q.log.Error("undecodable queue record moved to the corrupt bucket; see `mxedge queue check`",
			"queue_id", id, "found_by", cause, slog.Any("move_error", err))
	}
}

// Backup writes a consistent copy of the index to w while the queue runs
// (one bbolt read transaction, Tx.WriteTo) and returns its size. Spool
// files are not part of it: copy spool/ after the backup (files are
// written once and never changed, so a later copy has every body the
// backup's records need).
func (q *Queue) Backup(w io.Writer) (int64, error) {
	var n int64
	err := q.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("queue: backup: %w", err)
	}
	return n, nil
}

// scanLeaves reads bbolt leaf pages straight from the file at path (page
// size 4096, as bbolt uses on Linux), without meta or branch pages, and
// returns what looks like records (queue ID -> decodable envelope; of
// several copies, the one with the most attempts), inline bodies (queue
// ID -> data with an empty line) and header blocks (queue ID -> fields
// only). Best effort, for an index bbolt cannot open.
func scanLeaves(path string) (msgs, bodies, heads map[string][]byte) {
	msgs, bodies, heads = map[string][]byte{}, map[string][]byte{}, map[string][]byte{}
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	const pageSize, hdr, elem = 4096, 16, 16
	attempts := map[string]int{}
	for off := 0; off+pageSize <= len(data); off += pageSize {
		p := data[off:]
		if binary.LittleEndian.Uint16(p[8:]) != 0x02 { // leafPageFlag
			continue
		}
		count := int(binary.LittleEndian.Uint16(p[10:]))
		for i := 0; i < count; i++ {
			e := hdr + i*elem
			if e+elem > len(p) {
				break
			}
			flags := binary.LittleEndian.Uint32(p[e:])
			pos := int(binary.LittleEndian.Uint32(p[e+4:]))
			ks := int(binary.LittleEndian.Uint32(p[e+8:]))
			vs := int(binary.LittleEndian.Uint32(p[e+12:]))
			start := e + pos
			if flags != 0 || pos <= 0 || start+ks+vs > len(p) || start+ks+vs < start {
				continue
			}
			k, v := string(p[start:start+ks]), p[start+ks:start+ks+vs]
			if !validID(k) {
				continue
			}
			if env, err := checkRecord([]byte(k), v); err == nil {
				if a, seen := attempts[k]; !seen || env.Attempts > a {
					attempts[k] = env.Attempts
					msgs[k] = bytes.Clone(v)
				}
				continue
			}
			if bytes.Contains(v, []byte("\r\n\r\n")) {
				bodies[k] = bytes.Clone(v)
			} else if CheckFields(v) == nil && len(v) > 0 {
				heads[k] = bytes.Clone(v)
			}
		}
	}
	return
}
