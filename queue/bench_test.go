package queue

import (
	"context"
	"io"
	"runtime"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkReceive measures the receive path as a listener drives it:
// NewMessage, Write, Commit (fsyncs and group commit included), with many
// sessions at once so that group commits form. One op is one message.
//
//	go test -run '^$' -bench Receive ./queue
func BenchmarkReceive(b *testing.B) {
	const check = "Authentication-Results: mx.test; spf=pass smtp.mailfrom=s@src.test\r\n"
	for _, bc := range []struct {
		name string
		size int
		// recheck: a check re-reads the message (Open) and prepends a
		// field before Commit.
		recheck bool
		// inlineMax: Options.InlineMax; -1 spools every message (a
		// per-message file: what a journal for inline bodies would cost).
		inlineMax int
	}{
		{"inline-1KiB", 1 << 10, false, 0},
		{"journal-1KiB", 1 << 10, false, -1},
		{"inline-32KiB", 32 << 10, false, 0},
		{"spool-256KiB", 256 << 10, false, 0},
		{"inline-1KiB-recheck", 1 << 10, true, 0},
		{"spool-256KiB-recheck", 256 << 10, true, 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			q := openTest(b, b.TempDir(), Options{InlineMax: bc.inlineMax})
			defer q.Close()
			body := []byte(strings.Repeat("0123456789abcdefghijklmnopqrstu\r\n", bc.size/33+1)[:bc.size])
			b.SetBytes(int64(bc.size))
			b.SetParallelism(10) // 20 sessions on 2 cores: group commits form
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					in, err := q.NewMessage(Envelope{From: "s@src.test", Rcpts: []Rcpt{{Addr: "r@x.test"}}})
					if err != nil {
						b.Error(err)
						return
					}
					if _, err := in.Write(body); err != nil {
						b.Error(err)
						return
					}
					if bc.recheck {
						r, err := in.Open()
						if err == nil {
							_, err = io.Copy(io.Discard, r)
							r.Close()
						}
						if err == nil {
							err = in.Prepend([]byte(check))
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
					if err := in.Commit(context.Background()); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkCommitBatch reports the group commits of the receive path at
// 20 and 200 concurrent sessions (the bench/compare.sh cases; queue
// concurrency 20 as there, so a batch holds at most 20 messages): bbolt
// write transactions per message (from the database's transaction ID) and
// messages per commit. fsyncs per message: run it under
// "strace -f -c -e trace=fsync,fdatasync" (bbolt: two per commit; a
// spooled body adds its file's fsync and a shared directory fsync).
//
//	go test -run '^$' -bench CommitBatch ./queue
func BenchmarkCommitBatch(b *testing.B) {
	for _, bc := range []struct {
		name           string
		size, sessions int
	}{
		{"10KiB-20", 10 << 10, 20},
		{"10KiB-200", 10 << 10, 200},
		{"1MiB-20", 1 << 20, 20},
	} {
		b.Run(bc.name, func(b *testing.B) {
			q := openTest(b, b.TempDir(), Options{Concurrency: 20})
			defer q.Close()
			txid := func() (id int) {
				q.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
				return id
			}
			body := []byte(strings.Repeat("0123456789abcdefghijklmnopqrstu\r\n", bc.size/33+1)[:bc.size])
			b.SetBytes(int64(bc.size))
			b.SetParallelism((bc.sessions + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			t0 := txid()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					in, err := q.NewMessage(Envelope{From: "s@src.test", Rcpts: []Rcpt{{Addr: "r@x.test"}}})
					if err == nil {
						_, err = in.Write(body)
					}
					if err == nil {
						err = in.Commit(context.Background())
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			commits := float64(txid() - t0)
			b.ReportMetric(commits/float64(b.N), "commits/msg")
			b.ReportMetric(float64(b.N)/commits, "msgs/commit")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
