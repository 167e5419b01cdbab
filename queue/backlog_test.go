package queue

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestLargeBacklog measures a queue holding a large deferred backlog:
// startup time, memory, scheduling, listing, and the enqueue rate of new
// mail while the backlog sits there. It is a measurement, not a unit test:
// it runs only with MXEDGE_BACKLOG=<messages>, e.g.
//
//	MXEDGE_BACKLOG=1000000 go test -run LargeBacklog -v -timeout 30m ./queue
func TestLargeBacklog(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("MXEDGE_BACKLOG"))
	if n <= 0 {
		t.Skip("set MXEDGE_BACKLOG=<messages> to run this measurement")
	}
	dir := t.TempDir()
	t0 := time.Now()
	fillBacklog(t, dir, n)
	fi, _ := os.Stat(filepath.Join(dir, "queue.db"))
	t.Logf("built backlog of %d deferred messages in %v; queue.db %d MiB", n, time.Since(t0).Round(time.Second), fi.Size()>>20)

	runtime.GC()
	t0 = time.Now()
	q := openTest(t, dir, Options{Concurrency: 20})
	t.Logf("startup (open, orphan scan): %v, RSS %s", time.Since(t0).Round(time.Millisecond), rssMiB())
	defer q.Close()

	t0 = time.Now()
	due, next, err := q.due(time.Now(), 20)
	if err != nil || len(due) != 0 || next.IsZero() {
		t.Fatalf("due: %d, next %v, %v", len(due), next, err)
	}
	t.Logf("scheduler scan with nothing due: %v", time.Since(t0))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- q.Run(ctx, discard{}, time.Second) }()
	rate := enqueueRate(t, q, 2000, 20)
	t.Logf("enqueue rate with the backlog (20 writers, 1 KiB, fsync): %.0f msgs/s, RSS %s", rate, rssMiB())

	t0 = time.Now()
	count := 0
	listDone := make(chan struct{})
	go func() {
		q.List(Filter{}, func(*Envelope) error { count++; return nil })
		close(listDone)
	}()
	during := enqueueRate(t, q, 1000, 20)
	<-listDone
	t.Logf("list of %d messages: %v; enqueue rate meanwhile %.0f msgs/s", count, time.Since(t0).Round(time.Millisecond), during)
	cancel()
	<-done

	empty := openTest(t, t.TempDir(), Options{})
	defer empty.Close()
	t.Logf("enqueue rate on an empty queue, same test: %.0f msgs/s", enqueueRate(t, empty, 2000, 20))
}

type discard struct{}

func (discard) Deliver(_ context.Context, m *Message) []Result {
	var rs []Result
	for _, r := range m.Rcpts {
		rs = append(rs, Result{Rcpt: r, Code: 250})
	}
	return rs
}

// fillBacklog writes n deferred 1 KiB messages straight into the database,
// bodies inline as the receive path stores them (no fsync: it is test
// setup, not the code under test).
func fillBacklog(t *testing.T, dir string, n int) {
	q := openTest(t, dir, Options{})
	body := []byte(strings.Repeat("x", 1000) + "\r\n")
	next := time.Now().Add(time.Hour)
	const batch = 20000
	for i := 0; i < n; i += batch {
		var envs []*Envelope
		for j := i; j < min(n, i+batch); j++ {
			env := &Envelope{ID: q.ids.next(time.Now()), From: "sender@src.test", Arrival: time.Now(),
				Rcpts: []Rcpt{{Addr: fmt.Sprintf("user%d@dest%d.test", j, j%1000), Status: StatusPending,
					LastReply: "451 4.3.0 try again later"}},
				Size: int64(len(body)), Inline: true, Attempts: 1, NextAttempt: next.Add(time.Duration(j) * time.Millisecond)}
			envs = append(envs, env)
		}
		err := q.db.Update(func(tx *bolt.Tx) error {
			for _, b := range [][]byte{bucketMsgs, bucketSched, bucketBodies} {
				tx.Bucket(b).FillPercent = appendFill // as insert does
			}
			for _, env := range envs {
				v, _ := encodeEnvelope(env)
				if err := tx.Bucket(bucketMsgs).Put([]byte(env.ID), v); err != nil {
					return err
				}
				if err := tx.Bucket(bucketSched).Put(schedKey(env.NextAttempt, env.ID), nil); err != nil {
					return err
				}
				if err := tx.Bucket(bucketBodies).Put([]byte(env.ID), body); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	q.Close()
}

// enqueueRate receives total messages of 1 KiB over writers goroutines
// through the real path (spool fsync, directory fsync, group commit).
func enqueueRate(t *testing.T, q *Queue, total, writers int) float64 {
	t.Helper()
	body := strings.Repeat("y", 1000) + "\r\n"
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < total/writers; i++ {
				in, err := q.NewMessage(Envelope{From: "s@src.test", Rcpts: []Rcpt{{Addr: "r@x.test"}}})
				if err != nil {
					t.Error(err)
					return
				}
				io.WriteString(in, body)
				if err := in.Commit(context.Background()); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(total) / time.Since(t0).Seconds()
}

// rssMiB reports resident memory: anonymous (heap, stacks) and file-backed
// (bbolt's mmap of queue.db, page cache the kernel can drop), after a GC.
func rssMiB() string {
	runtime.GC()
	b, _ := os.ReadFile("/proc/self/status")
	var anon, file int
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "RssAnon:":
			anon = kb / 1024
		case "RssFile:":
			file = kb / 1024
		}
	}
	return fmt.Sprintf("anon %d MiB + file-backed %d MiB", anon, file)
}
