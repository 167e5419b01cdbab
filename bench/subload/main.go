// Command subload is the submission load generator of bench/submission.sh:
// smtp-source cannot authenticate, so this sends N messages of a given size
// over S parallel sessions the way a desktop client does: STARTTLS, AUTH
// PLAIN once per session, then one message after another (MAIL, RCPT,
// DATA). It prints the rate and the per-message latency (MAIL to the 250
// after the final dot) and the per-session setup latency (connect, TLS,
// AUTH), p50 and p99.
//
// With -flood ADDR it first takes -flood-conns connections to ADDR (the MX
// port) and holds them idle, and keeps opening new ones while the load
// runs (the listener turns those away with 421), so that the submission
// numbers are measured while port 25 is flooded.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:2701", "submission listener (STARTTLS)")
	n := flag.Int("n", 5000, "messages")
	size := flag.Int("size", 10240, "message size in bytes")
	sessions := flag.Int("sessions", 20, "parallel sessions")
	user := flag.String("user", "bench@sender.test", "SASL user")
	pass := flag.String("pass", "", "SASL password")
	from := flag.String("from", "bench@sender.test", "envelope sender and From:")
	to := flag.String("to", "user@bench.test", "recipient")
	flood := flag.String("flood", "", "MX address to flood while the load runs")
	floodConns := flag.Int("flood-conns", 1000, "idle connections held on -flood")
	flag.Parse()

	var stopFlood func() (held, refused int64)
	if *flood != "" {
		stopFlood = startFlood(*flood, *floodConns)
	}
	msg := message(*from, *to, *size)
	var next atomic.Int64
	var mu sync.Mutex
	var lat, setup []time.Duration
	var failed atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for range *sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var l, s []time.Duration
			defer func() { mu.Lock(); lat, setup = append(lat, l...), append(setup, s...); mu.Unlock() }()
			for next.Load() < int64(*n) {
				ts := time.Now()
				c, err := dial(*addr, *user, *pass)
				if err != nil {
					fmt.Fprintln(os.Stderr, "session:", err)
					failed.Add(1)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				s = append(s, time.Since(ts))
				for next.Add(1) <= int64(*n) {
					tm := time.Now()
					if err := send(c, *from, *to, msg); err != nil {
						fmt.Fprintln(os.Stderr, "message:", err)
						failed.Add(1)
						break
					}
					l = append(l, time.Since(tm))
				}
				c.Quit()
			}
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	out := fmt.Sprintf("accepted=%d failed=%d accept_s=%.2f accept_msgs_per_s=%.0f msg_p50_ms=%.1f msg_p99_ms=%.1f setup_p50_ms=%.1f setup_p99_ms=%.1f",
		len(lat), failed.Load(), el.Seconds(), float64(len(lat))/el.Seconds(), ms(pct(lat, 50)), ms(pct(lat, 99)), ms(pct(setup, 50)), ms(pct(setup, 99)))
	if stopFlood != nil {
		held, refused := stopFlood()
		out += fmt.Sprintf(" flood_held=%d flood_refused=%d", held, refused)
	}
	fmt.Println(out)
	if failed.Load() > 0 {
		os.Exit(1)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// message is a message of about size bytes with a From: header.
func message(from, to string, size int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: submission benchmark\r\nMessage-ID: <%d@sender.test>\r\n\r\n", from, to, time.Now().UnixNano())
	line := strings.Repeat("abcdefghijklmnopqrstuvwxyz0123456789", 2)[:70] + "\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return []byte(b.String())
}

// plainAuth is SASL PLAIN without net/smtp's host check (the benchmark
// connects to an IP address, over TLS).
type plainAuth struct{ user, pass string }

func (a plainAuth) Start(*smtp.ServerInfo) (string, []byte, error) {
	return "PLAIN", []byte("\x00" + a.user + "\x00" + a.pass), nil
}
func (a plainAuth) Next(_ []byte, more bool) ([]byte, error) {
	if more {
		return nil, errors.New("unexpected challenge")
	}
	return nil, nil
}

func dial(addr, user, pass string) (*smtp.Client, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(5 * time.Minute))
	host, _, _ := net.SplitHostPort(addr)
	c, err := smtp.NewClient(nc, host)
	if err == nil {
		err = c.Hello("bench-client.sender.test")
	}
	if err == nil {
		err = c.StartTLS(&tls.Config{InsecureSkipVerify: true}) // a self-signed benchmark certificate
	}
	if err == nil {
		err = c.Auth(plainAuth{user, pass})
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func send(c *smtp.Client, from, to string, msg []byte) error {
	// Not c.Mail: net/smtp adds SMTPUTF8 whenever the server offers it,
	// and the benchmark sink does not take SMTPUTF8 mail.
	id, err := c.Text.Cmd("MAIL FROM:<%s>", from)
	if err != nil {
		return err
	}
	c.Text.StartResponse(id)
	_, _, err = c.Text.ReadResponse(250)
	c.Text.EndResponse(id)
	if err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	return w.Close()
}

// startFlood holds conns idle connections to addr and keeps knocking with
// more; the returned function stops it and says how many were held and
// how many were turned away.
func startFlood(addr string, conns int) func() (int64, int64) {
	var held, refused atomic.Int64
	var open []net.Conn
	for range conns {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			break
		}
		open = append(open, c)
		held.Add(1)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 256)
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					continue
				}
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				k, _ := c.Read(buf)
				if strings.HasPrefix(string(buf[:k]), "421") {
					refused.Add(1)
				}
				c.Close()
			}
		}()
	}
	return func() (int64, int64) {
		close(stop)
		wg.Wait()
		for _, c := range open {
			c.Close()
		}
		return held.Load(), refused.Load()
	}
}
