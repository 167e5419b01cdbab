package policy

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mxedge/mxedge/internal/fakeclock"
)

func TestLimits(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	l := &Limits{Sessions: 2, ConnRate: 4, MsgRate: 3, RcptRate: 5, Now: clock.Now}
	conn := func(ip string) (*Conn, Result) {
		c := &Conn{IP: netip.MustParseAddr(ip)}
		return c, l.CheckConnect(context.Background(), c)
	}
	a, r1 := conn("192.0.2.1")
	a2, r2 := conn("192.0.2.1")
	_, r3 := conn("192.0.2.1")
	if r1.Reply != nil || r2.Reply != nil || r3.Reply == nil ||
		r3.Reply.String() != "421 4.7.0 Error: too many connections from 192.0.2.1" || !r3.Disconnect {
		t.Fatalf("sessions: %+v %+v %+v", r1, r2, r3)
	}
	// Another client is not affected; an IPv6 client counts per /64.
	if _, r := conn("192.0.2.2"); r.Reply != nil {
		t.Errorf("other client: %+v", r)
	}
	conn("2001:db8::1")
	conn("2001:db8::2")
	if _, r := conn("2001:db8::ffff"); r.Reply == nil {
		t.Error("third session of one /64 admitted")
	}
	if _, r := conn("2001:db8:0:1::1"); r.Reply != nil {
		t.Errorf("other /64: %+v", r)
	}
	// A session that ends gives its slot back; the refused attempt
	// counted for the rate: 4 attempts so far, the 5th is over the rate.
	a.Close()
	if _, r := conn("192.0.2.1"); r.Reply != nil {
		t.Fatalf("after a session ended: %+v", r)
	}
	a.Close() // a second Close changes nothing
	a2.Close()
	if _, r := conn("192.0.2.1"); r.Reply == nil || !strings.Contains(r.Reply.Text, "too many connection attempts") {
		t.Fatalf("rate: %+v", r)
	}
	// A minute later the rate counts again (the sessions are still open:
	// 2 of 2, so close them).
	clock.Advance(time.Minute)
	b, r := conn("192.0.2.3")
	if r.Reply != nil {
		t.Fatal(r)
	}
	for i := 0; i < 3; i++ {
		if r := l.CheckMail(context.Background(), b, &Txn{}); r.Reply != nil {
			t.Fatalf("mail %d: %+v", i, r)
		}
	}
	if r := l.CheckMail(context.Background(), b, &Txn{}); r.Reply == nil || r.Reply.String() != "421 4.7.0 Error: too much mail from 192.0.2.3" || !r.Disconnect {
		t.Errorf("message rate: %+v", r)
	}
	for i := 0; i < 5; i++ {
		l.CheckRcpt(context.Background(), b, &Txn{}, Rcpt{})
	}
	if r := l.CheckRcpt(context.Background(), b, &Txn{}, Rcpt{}); r.Reply == nil || r.Reply.String() != "421 4.7.0 Error: too many recipients from 192.0.2.3" {
		t.Errorf("recipient rate: %+v", r)
	}
	// Trusted clients are not counted.
	tr := &Conn{IP: netip.MustParseAddr("192.0.2.3"), Trusted: true}
	for i := 0; i < 10; i++ {
		if r := l.CheckRcpt(context.Background(), tr, &Txn{}, Rcpt{}); r.Reply != nil {
			t.Fatal("trusted client limited")
		}
	}
	// Clients without sessions are forgotten after their window: of the
	// clients tracked, 192.0.2.3 has none left; one new client comes.
	b.Close()
	before := l.Tracked()
	clock.Advance(2 * time.Minute)
	conn("192.0.2.200")
	if after := l.Tracked(); after != before {
		t.Errorf("tracked %d -> %d, want the same (192.0.2.3 forgotten, 192.0.2.200 added)", before, after)
	}
}

func TestLimitsMaxClients(t *testing.T) {
	l := &Limits{Sessions: 1, MaxClients: 2}
	for _, ip := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.3"} {
		if r := l.CheckConnect(context.Background(), &Conn{IP: netip.MustParseAddr(ip)}); r.Reply != nil {
			t.Errorf("%s refused: beyond MaxClients a client is let through uncounted", ip)
		}
	}
	if l.Tracked() != 2 {
		t.Errorf("tracked %d", l.Tracked())
	}
}

// SetLimits keeps the counts: a client at its message rate stays refused
// after the limits are set again unchanged, is admitted under a higher
// rate until it reaches that, and an open session still counts against a
// lower session limit.
func TestLimitsSetLimitsKeepsCounts(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	l := &Limits{Sessions: 2, MsgRate: 2, Now: clock.Now}
	c := &Conn{IP: netip.MustParseAddr("192.0.2.1")}
	if r := l.CheckConnect(context.Background(), c); r.Reply != nil {
		t.Fatal(r)
	}
	mail := func() Result { return l.CheckMail(context.Background(), c, &Txn{}) }
	mail()
	mail()
	if r := mail(); r.Reply == nil {
		t.Fatal("third message of a rate of 2 admitted")
	}
	l.SetLimits(2, 0, 2, 0)
	if r := mail(); r.Reply == nil {
		t.Error("after SetLimits with the same rate: admitted (the count was lost)")
	}
	l.SetLimits(1, 0, 5, 0)
	if r := mail(); r.Reply != nil {
		t.Errorf("5th message under a rate of 5: %+v", r)
	}
	if r := mail(); r.Reply == nil {
		t.Error("6th message under a rate of 5 admitted")
	}
	if r := l.CheckConnect(context.Background(), &Conn{IP: c.IP}); r.Reply == nil {
		t.Error("second session under a new session limit of 1 admitted (the open one was not counted)")
	}
}
