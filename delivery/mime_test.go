package delivery

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/mxedge/mxedge/queue"
)

// A message that needs 8BITMIME (or SMTPUTF8: here a UTF-8 sender) is
// returned with 5.6.3 (5.6.7) by a next hop that does not announce it;
// nothing is sent.
func TestEightBitAndUTF8Refusal(t *testing.T) {
	hop := startServer(t, "127.0.0.6:0")
	hop.SetExtensions("SIZE 104857600") // neither 8BITMIME nor SMTPUTF8
	d := newDeliverer(t, map[string]string{"relay.test": hop.Addr()})
	d.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		change func(*queue.Message)
		code   int
		enh    string
	}{
		{func(m *queue.Message) { m.Body = "8BITMIME" }, 550, "5.6.3"},
		{func(m *queue.Message) { m.UTF8, m.From = true, "jörg@src.test" }, 550, "5.6.7"},
		{func(m *queue.Message) { m.Body = "7BIT" }, 250, ""},
	} {
		m := spooled(t, "s@src.test", "x\r\n", "a@relay.test")
		tc.change(m)
		r := d.Deliver(context.Background(), m)[0]
		if r.Code != tc.code || tc.enh != "" && r.Enhanced != tc.enh {
			t.Errorf("%+v, want %d %s", r, tc.code, tc.enh)
		}
	}
	if plain, _ := mails(hop); plain != 1 {
		t.Errorf("%d MAIL commands, want 1 (the 7-bit message)", plain)
	}
}
