// Command dnsserve answers the DNS of the benchmark relay (bench/compare.sh
// -checks) from memory, with resolver/dnstest: the reverse name of the
// load generator's address and its forward confirmation, the sender
// domain's MX, and two DNS block lists on which the load generator is not
// listed (their negative answers carry an SOA, so the relay caches them
// as a real list's). It prints its address ("127.0.0.1:port") on stdout
// and serves until it gets SIGTERM or SIGINT.
//
//	dnsserve [-addr 127.0.0.1:0] [-record "zone-file line"]...
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/mxedge/mxedge/resolver/dnstest"
)

// zone is the bench zone: smtp-source connects from 127.0.0.1 and sends
// from sender@src.test; the lists are bl1.bench.test and bl2.bench.test.
var zone = []string{
	"1.0.0.127.in-addr.arpa. 3600 IN PTR client.bench.test.",
	"client.bench.test. 3600 IN A 127.0.0.1",
	"src.test. 3600 IN MX 10 mx.src.test.",
	"mx.src.test. 3600 IN A 127.0.0.1",
	"bench.test. 3600 IN SOA ns.bench.test. hostmaster.bench.test. 1 3600 600 86400 300",
	"bl1.bench.test. 3600 IN SOA ns.bench.test. hostmaster.bench.test. 1 3600 600 86400 300",
	"bl2.bench.test. 3600 IN SOA ns.bench.test. hostmaster.bench.test. 1 3600 600 86400 300",
	// A listed address, to check the lists work: 127.0.0.2.
	"2.0.0.127.bl1.bench.test. 300 IN A 127.0.0.2",
}

type records []string

func (r *records) String() string     { return strings.Join(*r, "; ") }
func (r *records) Set(s string) error { *r = append(*r, s); return nil }

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to serve on (UDP and TCP)")
	var extra records
	flag.Var(&extra, "record", "an extra record in zone-file syntax (repeatable)")
	flag.Parse()
	s, err := dnstest.Start(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := s.Add(append(zone, extra...)...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(s.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	s.Close()
}
