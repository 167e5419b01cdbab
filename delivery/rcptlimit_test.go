package delivery

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/mxedge/mxedge/internal/smtptest"
)

// limitRcpts makes be answer "452 4.5.3 Error: too many recipients" (as
// Postfix's smtpd_recipient_limit) beyond limit RCPTs per transaction.
func limitRcpts(be *smtptest.Server, limit int) {
	var mu sync.Mutex
	n := map[*smtptest.Session]int{}
	be.On(smtptest.Mail, func(s *smtptest.Session, _ string) string {
		mu.Lock()
		n[s] = 0
		mu.Unlock()
		return ""
	})
	be.On(smtptest.Rcpt, func(s *smtptest.Session, _ string) string {
		mu.Lock()
		defer mu.Unlock()
		if n[s]++; n[s] > limit {
			return "452 4.5.3 Error: too many recipients"
		}
		return ""
	})
}

// Issue 16, section 2: a backend takes 20 recipients per transaction.
// One attempt with 50 recipients: three transactions on one connection,
// each recipient once, all delivered; the next message is split at 20
// from the start (no 452 any more).
func TestRecipientLimitOfNextHop(t *testing.T) {
	be := startServer(t, "127.0.0.3:0")
	limitRcpts(be, 20)
	d := newDeliverer(t, map[string]string{"relay.test": be.Addr()})
	var rcpts []string
	for i := 0; i < 50; i++ {
		rcpts = append(rcpts, fmt.Sprintf("u%02d@relay.test", i))
	}
	msg := spooled(t, "s@src.test", "Subject: many\r\n\r\nbody\r\n", rcpts...)
	res := d.Deliver(context.Background(), msg)
	if len(res) != 50 {
		t.Fatalf("%d results, want 50", len(res))
	}
	for _, r := range res {
		if r.Code != 250 {
			t.Errorf("%s: %d %s %s", r.Rcpt, r.Code, r.Enhanced, r.Text)
		}
	}
	msgs := be.Messages()
	seen := map[string]int{}
	var sizes []int
	for _, m := range msgs {
		sizes = append(sizes, len(m.Rcpts))
		for _, r := range m.Rcpts {
			seen[r]++
		}
	}
	if fmt.Sprint(sizes) != "[20 20 10]" || be.Conns() != 1 {
		t.Errorf("transactions %v over %d connections, want [20 20 10] over 1", sizes, be.Conns())
	}
	for _, r := range rcpts {
		if seen["<"+r+">"] != 1 {
			t.Errorf("%s delivered %d times", r, seen["<"+r+">"])
		}
	}
	refused := strings.Count(strings.Join(be.Commands(), "\n"), "RCPT TO:") - 50
	if refused != 30 {
		// 30 refused in the first transaction; the second and third
		// already keep to the limit learnt.
		t.Errorf("%d RCPTs refused as too many, want 30", refused)
	}

	// The next message: split before the limit.
	before := len(be.Commands())
	msg = spooled(t, "s@src.test", "Subject: again\r\n\r\nbody\r\n", rcpts[:45]...)
	for _, r := range d.Deliver(context.Background(), msg) {
		if r.Code != 250 {
			t.Errorf("second message %s: %d %s", r.Rcpt, r.Code, r.Text)
		}
	}
	if n := strings.Count(strings.Join(be.Commands()[before:], "\n"), "RCPT TO:"); n != 45 {
		t.Errorf("second message: %d RCPTs, want 45 (limit remembered)", n)
	}
}

// A hop that answers every RCPT with 452 4.5.3 gets no endless loop:
// the recipients are deferred.
func TestRecipientLimitNoProgress(t *testing.T) {
	be := startServer(t, "127.0.0.3:0")
	limitRcpts(be, 0)
	d := newDeliverer(t, map[string]string{"relay.test": be.Addr()})
	msg := spooled(t, "s@src.test", "Subject: x\r\n\r\nbody\r\n", "a@relay.test", "b@relay.test")
	for _, r := range d.Deliver(context.Background(), msg) {
		if r.Code != 452 {
			t.Errorf("%s: %d %s", r.Rcpt, r.Code, r.Text)
		}
	}
}

// RFC 6152: BODY=8BITMIME only for a message received with it.
func TestBodyParameterAsReceived(t *testing.T) {
	be := startServer(t, "127.0.0.3:0")
	d := newDeliverer(t, map[string]string{"relay.test": be.Addr()})
	for _, body := range []string{"", "7BIT", "8BITMIME"} {
		msg := spooled(t, "s@src.test", "Subject: x\r\n\r\nbody\r\n", "a@relay.test")
		msg.Body = body
		d.Deliver(context.Background(), msg)
	}
	var got []string
	for _, m := range be.Messages() {
		got = append(got, m.From)
	}
	want := "[<s@src.test> BODY=7BIT SIZE=20 <s@src.test> BODY=7BIT SIZE=20 <s@src.test> BODY=8BITMIME SIZE=20]"
	if fmt.Sprint(got) != want {
		t.Errorf("MAIL parameters %v\nwant %s", got, want)
	}
}
