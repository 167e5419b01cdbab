// Command soakload is the load generator and backend of bench/soak.sh: a
// counting SMTP sink (the "backend") that records the X-Soak-Id of every
// message it receives, and SMTP clients that send messages of mixed sizes
// to the relay under test and record which IDs got a 250.
//
//	soakload -relay 127.0.0.1:2700 -sink 127.0.0.1:2626 -dur 30m -out DIR
//
// The sink goes down (closes its listener and every session) for -down
// every -down-every. At the end (after -drain more for the queue to
// empty), DIR holds accepted.txt and delivered.txt (one ID per line,
// delivered with repeats), and the summary is printed.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	relay := flag.String("relay", "127.0.0.1:2700", "relay under test")
	sinkAddr := flag.String("sink", "127.0.0.1:2626", "backend sink address")
	dur := flag.Duration("dur", 10*time.Minute, "load duration")
	drain := flag.Duration("drain", 3*time.Minute, "after the load: wait at most this long for deliveries")
	down := flag.Duration("down", 30*time.Second, "backend outage length")
	downEvery := flag.Duration("down-every", 5*time.Minute, "backend outage period")
	sessions := flag.Int("sessions", 8, "parallel client sessions")
	out := flag.String("out", ".", "output directory")
	flag.Parse()

	s := &sink{addr: *sinkAddr, seen: map[string]int{}}
	s.up()
	go func() {
		for t := time.NewTicker(*downEvery); ; <-t.C {
			if time.Since(start) < *downEvery/2 {
				continue
			}
			log.Printf("backend down for %v", *down)
			s.downFor(*down)
			log.Printf("backend up")
		}
	}()

	var acceptedMu sync.Mutex
	var accepted []string
	var tempfail, sent atomic.Int64
	stop := time.Now().Add(*dur)
	var wg sync.WaitGroup
	for w := 0; w < *sessions; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				id := fmt.Sprintf("s%d-%d-%d", w, i, time.Now().UnixNano())
				sent.Add(1)
				if err := send(*relay, id, size()); err != nil {
					tempfail.Add(1)
					time.Sleep(200 * time.Millisecond) // relay restarting / refusing: back off
					continue
				}
				acceptedMu.Lock()
				accepted = append(accepted, id)
				acceptedMu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	log.Printf("load over: %d sent, %d accepted, %d refused or failed", sent.Load(), len(accepted), tempfail.Load())
	deadline := time.Now().Add(*drain)
	for time.Now().Before(deadline) && s.missing(accepted) > 0 {
		time.Sleep(2 * time.Second)
	}
	writeLines(filepath.Join(*out, "accepted.txt"), accepted)
	s.mu.Lock()
	var deliv []string
	dups := 0
	for id, n := range s.seen {
		for j := 0; j < n; j++ {
			deliv = append(deliv, id)
		}
		dups += n - 1
	}
	s.mu.Unlock()
	writeLines(filepath.Join(*out, "delivered.txt"), deliv)
	fmt.Printf("sent=%d accepted=%d refused=%d delivered_unique=%d duplicates=%d missing=%d\n",
		sent.Load(), len(accepted), tempfail.Load(), len(s.seen), dups, s.missing(accepted))
}

var start = time.Now()

// size: mostly small, some large, a few up to 5 MiB.
func size() int {
	switch r := rand.IntN(100); {
	case r < 70:
		return 1<<10 + rand.IntN(9<<10)
	case r < 95:
		return 10<<10 + rand.IntN(246<<10)
	default:
		return 256<<10 + rand.IntN(5<<20-256<<10)
	}
}

func send(relay, id string, n int) error {
	c, err := net.DialTimeout("tcp", relay, 5*time.Second)
	if err != nil {
		return err
	}
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	cl, err := smtp.NewClient(c, "relay")
	if err != nil {
		c.Close()
		return err
	}
	defer cl.Close()
	if err := cl.Hello("soak.client.test"); err != nil {
		return err
	}
	if err := cl.Mail("load@src.test"); err != nil {
		return err
	}
	if err := cl.Rcpt("user@bench.test"); err != nil {
		return err
	}
	w, err := cl.Data()
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	fmt.Fprintf(bw, "From: load@src.test\r\nTo: user@bench.test\r\nSubject: soak\r\nX-Soak-Id: %s\r\n\r\n", id)
	line := strings.Repeat("abcdefghij", 7) + "\r\n"
	for written := 0; written < n; written += len(line) {
		bw.WriteString(line)
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := w.Close(); err != nil { // the reply to the final dot
		return err
	}
	_ = cl.Quit()
	return nil
}

type sink struct {
	addr string
	mu   sync.Mutex
	seen map[string]int
	ln   net.Listener
	conn map[net.Conn]bool
}

func (s *sink) up() {
	for {
		ln, err := net.Listen("tcp", s.addr)
		if err == nil {
			s.mu.Lock()
			s.ln, s.conn = ln, map[net.Conn]bool{}
			s.mu.Unlock()
			go s.serve(ln)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *sink) downFor(d time.Duration) {
	s.mu.Lock()
	s.ln.Close()
	for c := range s.conn {
		c.Close()
	}
	s.mu.Unlock()
	time.Sleep(d)
	s.up()
}

func (s *sink) missing(ids []string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, id := range ids {
		if s.seen[id] == 0 {
			n++
		}
	}
	return n
}

func (s *sink) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conn[c] = true
		s.mu.Unlock()
		go s.session(c)
	}
}

// session is a minimal SMTP server: enough for mxedge's client (EHLO,
// MAIL, RCPT, DATA, RSET, NOOP, QUIT; PIPELINING and 8BITMIME offered).
func (s *sink) session(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 64<<10)
	w := bufio.NewWriter(c)
	reply := func(l string) { w.WriteString(l + "\r\n") }
	reply("220 sink ESMTP")
	w.Flush()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			reply("250-sink")
			reply("250-PIPELINING")
			reply("250-8BITMIME")
			reply("250-SMTPUTF8")
			reply("250 SIZE 100000000")
		case strings.HasPrefix(cmd, "HELO"), strings.HasPrefix(cmd, "MAIL"), strings.HasPrefix(cmd, "RCPT"),
			strings.HasPrefix(cmd, "RSET"), strings.HasPrefix(cmd, "NOOP"):
			reply("250 ok")
		case cmd == "DATA":
			reply("354 go")
			w.Flush()
			id := ""
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				if id == "" && strings.HasPrefix(l, "X-Soak-Id: ") {
					id = strings.TrimSpace(l[len("X-Soak-Id: "):])
				}
			}
			s.mu.Lock()
			s.seen[id]++
			s.mu.Unlock()
			reply("250 2.0.0 ok")
		case cmd == "QUIT":
			reply("221 bye")
			w.Flush()
			return
		default:
			reply("502 5.5.2 unknown")
		}
		if r.Buffered() == 0 {
			w.Flush()
		}
	}
}

func writeLines(path string, lines []string) {
	f, err := os.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	for _, l := range lines {
		io.WriteString(w, l+"\n")
	}
	w.Flush()
}
