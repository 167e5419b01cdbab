package queue

import (
	"context"
	"strings"
	"testing"
)

// BenchmarkReceive measures the receive path as a listener drives it:
// NewMessage, Write, Commit (fsyncs and group commit included), with many
// sessions at once so that group commits form. One op is one message.
//
//	go test -run '^$' -bench Receive ./queue
func BenchmarkReceive(b *testing.B) {
	for _, bc := range []struct {
		name string
		size int
	}{
		{"inline-1KiB", 1 << 10},
		{"inline-32KiB", 32 << 10},
		{"spool-256KiB", 256 << 10},
	} {
		b.Run(bc.name, func(b *testing.B) {
			q := openTest(b, b.TempDir(), Options{})
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
