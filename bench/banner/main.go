// Command banner measures connect-to-banner latency: n connections, one
// after the other, each from dial to the banner's last line ("220 ..."),
// then QUIT. It prints p50, p99 and the maximum in microseconds. The first
// connection (which may go through the pregreet wait) is a warm-up and is
// not counted, so the numbers are those of a client that passed.
//
//	banner [-n 1000] [-from 127.0.0.1] host:port
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"
)

func main() {
	n := flag.Int("n", 1000, "connections measured")
	from := flag.String("from", "127.0.0.1", "local address to connect from")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: banner [-n N] [-from IP] host:port")
		os.Exit(2)
	}
	addr := flag.Arg(0)
	var lat []time.Duration
	for i := 0; i <= *n; i++ {
		d, err := once(addr, *from)
		if err != nil {
			fmt.Fprintln(os.Stderr, "banner:", err)
			os.Exit(1)
		}
		if i > 0 {
			lat = append(lat, d)
		}
	}
	slices.Sort(lat)
	q := func(p float64) int64 { return lat[int(p*float64(len(lat)-1))].Microseconds() }
	fmt.Printf("banner_us_p50=%d banner_us_p99=%d banner_us_max=%d n=%d\n", q(0.5), q(0.99), lat[len(lat)-1].Microseconds(), len(lat))
}

// once connects, reads the banner up to its last line and says QUIT.
func once(addr, from string) (time.Duration, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	t0 := time.Now()
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(nc)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return 0, fmt.Errorf("banner: %q: %w", line, err)
		}
		if !strings.HasPrefix(line, "220") {
			return 0, fmt.Errorf("banner: %q", line)
		}
		if len(line) > 3 && line[3] == ' ' {
			break
		}
	}
	lat := time.Since(t0)
	fmt.Fprintf(nc, "QUIT\r\n")
	r.ReadString('\n')
	return lat, nil
}
