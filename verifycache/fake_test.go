package verifycache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mxedge/mxedge/delivery"
	"github.com/mxedge/mxedge/internal/fakeclock"
	"github.com/mxedge/mxedge/internal/smtptest"
	"github.com/mxedge/mxedge/internal/testlog"
)

// StartBackend starts a mailbox backend for the tests on addr
// ("127.0.0.3:0") that knows users (local parts, compared exactly; none:
// every recipient exists); it stops when the test ends. Exported for the
// external tests of this package.
func StartBackend(t testing.TB, addr string, users ...string) *smtptest.Server {
	t.Helper()
	be, err := smtptest.Start(addr)
	if err != nil {
		t.Fatal(err)
	}
	if users != nil {
		be.SetUsers(users...)
	}
	t.Cleanup(be.Close)
	return be
}

// fakeClock is a settable cache clock.
type fakeClock = fakeclock.Clock

func newFakeClock() *fakeClock {
	return fakeclock.New(time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC))
}

// switchDialer is a Dialer over delivery's client layer whose next hops
// can be changed (backend moved or down): each set builds a Deliverer with
// one route per hop, so dead-hop state starts afresh. (The adapter is
// internal/probedial's, which this package's own tests cannot import.)
type switchDialer struct {
	t     testing.TB
	mu    sync.Mutex
	d     *delivery.Deliverer
	names []string // the route domain of each hop, in order
}

func (r *switchDialer) set(hops ...string) {
	routes := map[string]string{}
	names := make([]string, len(hops))
	for i, h := range hops {
		names[i] = fmt.Sprintf("hop%d.test", i)
		routes[names[i]] = h
	}
	d := delivery.New(delivery.Options{Hostname: "mx1.relay.test", Routes: routes,
		ConnectTimeout: 2 * time.Second, ReplyTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	r.t.Cleanup(func() { d.Close() })
	r.mu.Lock()
	r.d, r.names = d, names
	r.mu.Unlock()
}

func (r *switchDialer) Hops(ctx context.Context, _ string) ([]Hop, error) {
	r.mu.Lock()
	d, names := r.d, r.names
	r.mu.Unlock()
	var out []Hop
	for _, n := range names {
		hs, err := d.Hops(ctx, n)
		if err != nil {
			return nil, err
		}
		for _, h := range hs {
			out = append(out, testHop{d, h})
		}
	}
	return out, nil
}

type testHop struct {
	d *delivery.Deliverer
	h delivery.Hop
}

func (h testHop) String() string { return h.h.String() }

func (h testHop) Dial(ctx context.Context, fresh bool, debug io.Writer) (Conn, error) {
	c, err := h.d.Dial(ctx, h.h, delivery.DialOptions{Fresh: fresh, Debug: debug})
	var de *delivery.DialError
	if errors.As(err, &de) {
		return nil, &DialError{Stage: de.Stage, Refused: de.Refused, Text: de.Text}
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// syncBuffer is a log sink shared by goroutines.
type syncBuffer = testlog.Buffer

// deadAddr returns an address where nothing listens.
func deadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
