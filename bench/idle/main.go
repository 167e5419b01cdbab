// Command idle measures the relay's memory for idle sessions: it opens n
// connections to the relay from several 127.0.0.x addresses (at most
// -per connections each, so that one address's ephemeral ports and the
// per-client limit are not what is measured), waits for each banner,
// says EHLO, and keeps them open; then it reads the relay's resident set
// size (VmRSS of /proc/PID/status) before and after, and prints both and
// the difference per session. The relay needs max_sessions above n and
// file descriptors for them.
//
//	idle -pid PID [-n 10000] [-per 500] host:port
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	pid := flag.Int("pid", 0, "process ID of the relay")
	n := flag.Int("n", 10000, "idle sessions")
	per := flag.Int("per", 500, "sessions per source address (127.0.0.10, .11, ...)")
	hold := flag.Duration("hold", 2*time.Second, "how long the sessions stay idle before RSS is read")
	flag.Parse()
	if flag.NArg() != 1 || *pid == 0 {
		fmt.Fprintln(os.Stderr, "usage: idle -pid PID [-n N] [-per M] host:port")
		os.Exit(2)
	}
	addr := flag.Arg(0)
	before, err := rss(*pid)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	conns := make([]net.Conn, *n)
	var wg sync.WaitGroup
	errs := make(chan error, *n)
	sem := make(chan struct{}, 200) // dials in flight
	t0 := time.Now()
	for i := 0; i < *n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ip := net.IPv4(127, 0, byte(2 + i / *per / 250), byte(10+(i / *per)%250))
			c, err := session(addr, ip)
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed == 0 {
			fmt.Fprintln(os.Stderr, "first failure:", err)
		}
		failed++
	}
	time.Sleep(*hold) // the sessions idle; the relay settles
	after, err := rss(*pid)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ok := *n - failed
	fmt.Printf("idle_sessions=%d failed=%d rss_before_kib=%d rss_after_kib=%d rss_per_session_bytes=%d setup_s=%.1f\n",
		ok, failed, before, after, (after-before)*1024/int64(max(ok, 1)), time.Since(t0).Seconds())
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// session connects from ip, reads the banner, says EHLO and reads its
// reply: an idle session after its greeting.
func session(addr string, ip net.IP) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 30 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReaderSize(c, 512)
	if err := reply(r); err != nil {
		c.Close()
		return nil, fmt.Errorf("banner: %w", err)
	}
	fmt.Fprintf(c, "EHLO idle.bench.test\r\n")
	if err := reply(r); err != nil {
		c.Close()
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// reply reads one reply, all its lines; an error for a non-2xx one.
func reply(r *bufio.Reader) error {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if line[0] != '2' {
			return fmt.Errorf("%q", strings.TrimSpace(line))
		}
		if len(line) > 3 && line[3] == ' ' {
			return nil
		}
	}
}

// rss is VmRSS of process pid in KiB.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
