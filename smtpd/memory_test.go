package smtpd

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/mxedge/mxedge/policy"
	"github.com/mxedge/mxedge/queue"
	"github.com/mxedge/mxedge/resolver"
	"github.com/mxedge/mxedge/resolver/dnstest"
)

// An idle session with every check on (limits, reverse lookup, DNSBL
// pending, pregreet passed) holds a few KB of heap and goroutine stack,
// client sockets of the test included: 10,000 idle connections are tens
// of MB, not GB (bench/README.md has the RSS of the real binary).
func TestIdleSessionMemory(t *testing.T) {
	srv, err := dnstest.Start("127.0.0.53:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	res := resolver.New(resolver.Config{Servers: []string{srv.Addr()}, Timeout: time.Second, Attempts: 1})
	site, _ := policy.ParseDNSBLSite("bl.test")
	s, addr, _, _ := startServer(t, func(o *Options) {
		o.MaxSessions = 10000
		o.ReverseLookup = func(ctx context.Context, ip netip.Addr) policy.Reverse { return policy.LookupReverse(ctx, res, ip) }
	}, queue.Options{},
		&policy.Limits{Sessions: 1000, ConnRate: 100000},
		&policy.Iprev{NoPTR: policy.ActionLog, Mismatch: policy.ActionLog},
		&policy.DNSBL{Sites: []policy.DNSBLSite{site}, Threshold: 1, Timeout: time.Second, DNS: res})
	const n = 400
	measure := func() (heap, stack uint64) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc, ms.StackInuse
	}
	heap0, stack0 := measure()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	buf := make([]byte, 512)
	for i := 0; i < n; i++ {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i%200))}}
		nc, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, nc)
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := nc.Read(buf); err != nil { // the banner
			t.Fatal(err)
		}
		fmt.Fprintf(nc, "EHLO client%d.test\r\n", i)
		if _, err := nc.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return s.gate.sessions.Load() == n }, "sessions")
	heap1, stack1 := measure()
	perHeap := (int64(heap1) - int64(heap0)) / n
	perStack := (int64(stack1) - int64(stack0)) / n
	t.Logf("per idle session: %d bytes of heap, %d bytes of goroutine stack", perHeap, perStack)
	if perHeap+perStack > 48<<10 {
		t.Errorf("an idle session costs %d bytes", perHeap+perStack)
	}
}
