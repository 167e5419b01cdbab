package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mxedge/mxedge/config"
)

// BenchmarkRelay is the in-process message path: a pipelining client
// sends over 20 sessions to the MX listener (policy chain and recipient
// verification as configured, the queue with its fsyncs), delivery sends
// to a discarding sink; one op is one message received, queued and
// delivered. Allocations are the whole process's: the client and the
// sink here are small hand-written loops, the relay's part dominates.
// Log lines are written (text, to io.Discard) as in production.
//
//	go test -run '^$' -bench Relay -benchmem ./cmd/mxedge
func BenchmarkRelay(b *testing.B) {
	for _, size := range []int{10 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) { benchRelay(b, size, 20) })
	}
}

func benchRelay(b *testing.B, size, sessions int) {
	sink, delivered := startSink(b)
	dir := b.TempDir()
	cfgText := fmt.Sprintf(`hostname = "relay.bench.test"
data_dir = %q
relay_domains = ["bench.test"]
[routes]
"bench.test" = %q
[[listener]]
name = "mx"
kind = "mx"
address = %q
pregreet_wait = "0s"
client_sessions = 0
client_connection_rate = 0
client_message_rate = 0
client_recipient_rate = 0
client_no_ptr = "off"
client_ptr_mismatch = "off"
helo_invalid = "off"
helo_is_us = "off"
helo_unknown = "off"
sender_unknown_domain = "off"
[queue]
concurrency = 20
# As bench/compare.sh: SPF, DKIM and DMARC have their own benchmark
# (bench/auth.sh); the message here has no From for DMARC to check.
[spf]
enabled = false
[dkim_verify]
enabled = false
[dmarc]
enabled = false
`, filepath.Join(dir, "data"), sink, freeAddr(b, "127.0.0.7"))
	path := filepath.Join(dir, "mxedge.toml")
	os.WriteFile(path, []byte(cfgText), 0o644)
	cfg, err := config.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	r, err := build(ctx, cfg, false, io.Discard, log)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.run(ctx) }()
	defer func() {
		cancel()
		<-done
		r.shutdown()
	}()
	addr := r.lns[0].Addr().String()

	const unit = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345678\r\n"
	text := strings.TrimRight(strings.Repeat(unit, size/len(unit)+1)[:size-20], "\r")
	msg := []byte("Subject: bench\r\n\r\n" + text + "\r\n")
	send := func(n int) {
		var wg sync.WaitGroup
		var next atomic.Int64
		for range sessions {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := client(addr, msg, func() bool { return next.Add(1) <= int64(n) }); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
		deadline := time.Now().Add(2 * time.Minute)
		for delivered.Load() < int64(n) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond) // polling the sink's count, not synchronising
		}
		if got := delivered.Load(); got < int64(n) {
			b.Fatalf("sink got %d of %d messages", got, n)
		}
	}
	send(sessions) // warm: verification cache, delivery connections
	delivered.Store(0)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	send(b.N)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	// CPU of the whole process (client and sink included): less noisy
	// than msgs/s on a shared machine.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/msg")
}

// client sends messages on one pipelining session while more() says so.
func client(addr string, msg []byte, more func() bool) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	r := bufio.NewReader(c)
	w := bufio.NewWriterSize(c, 64<<10)
	expect := func(code string) error {
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if !strings.HasPrefix(l, code) {
				return fmt.Errorf("want %s, got %q", code, l)
			}
			if len(l) < 4 || l[3] != '-' {
				return nil
			}
		}
	}
	if err := expect("220"); err != nil {
		return err
	}
	fmt.Fprintf(w, "EHLO client.bench.test\r\n")
	w.Flush()
	if err := expect("250"); err != nil {
		return err
	}
	for more() {
		w.WriteString("MAIL FROM:<s@src.test>\r\nRCPT TO:<r@bench.test>\r\nDATA\r\n")
		w.Flush()
		for _, code := range []string{"250", "250", "354"} {
			if err := expect(code); err != nil {
				return err
			}
		}
		w.Write(msg)
		w.WriteString(".\r\n")
		w.Flush()
		if err := expect("250"); err != nil {
			return err
		}
	}
	w.WriteString("QUIT\r\n")
	w.Flush()
	return nil
}

// startSink is a next hop that answers everything and discards the
// messages; it counts them.
func startSink(b *testing.B) (string, *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReaderSize(c, 64<<10)
				c.Write([]byte("220 sink ESMTP\r\n"))
				var out []byte
				for {
					l, err := r.ReadSlice('\n')
					if err != nil {
						return
					}
					switch {
					case len(l) >= 4 && strings.EqualFold(string(l[:4]), "EHLO"):
						out = append(out, "250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"...)
					case len(l) >= 4 && strings.EqualFold(string(l[:4]), "DATA"):
						out = append(out, "354 go\r\n"...)
						c.Write(out)
						out = out[:0]
						for {
							d, err := r.ReadSlice('\n')
							if err == bufio.ErrBufferFull {
								continue
							}
							if err != nil {
								return
							}
							if len(d) == 3 && d[0] == '.' {
								break
							}
						}
						n.Add(1)
						out = append(out, "250 2.0.0 Ok\r\n"...)
					case len(l) >= 4 && strings.EqualFold(string(l[:4]), "QUIT"):
						c.Write(append(out, "221 Bye\r\n"...))
						return
					default:
						out = append(out, "250 2.0.0 Ok\r\n"...)
					}
					if r.Buffered() == 0 {
						c.Write(out)
						out = out[:0]
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), &n
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// freeAddr returns "ip:port" with a port that was free a moment ago.
func freeAddr(b *testing.B, ip string) string {
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
