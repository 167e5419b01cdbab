package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/mxedge/mxedge/control"
	"github.com/mxedge/mxedge/queue"
)

// "queue show" prints where the message came from.
func TestShowOrigin(t *testing.T) {
	for _, tc := range []struct {
		name   string
		origin queue.Origin
		want   []string // lines in order
		absent []string
	}{
		{"submission over TLS", queue.Origin{Listener: "submit", Kind: "submission", ClientIP: "192.0.2.7",
			ClientName: "host.src.test", Helo: "laptop", AuthUser: "alice", TLS: "TLSv1.3 TLS_AES_128_GCM_SHA256"},
			[]string{"Listener:    submit (submission)\n", "Client:      host.src.test [192.0.2.7]\n",
				"HELO:        laptop\n", "Auth user:   alice\n", "TLS:         TLSv1.3 TLS_AES_128_GCM_SHA256\n"}, nil},
		{"MX, plaintext, no reverse name", queue.Origin{Listener: "mx", Kind: "mx", ClientIP: "192.0.2.8", Helo: "mx.src.test"},
			[]string{"Listener:    mx (mx)\n", "Client:      unknown [192.0.2.8]\n", "HELO:        mx.src.test\n",
				"TLS:         none (plaintext)\n"}, []string{"Auth user:"}},
		{"queued before origins were stored", queue.Origin{ClientIP: "192.0.2.9", Helo: "old.src.test"},
			[]string{"Client:      unknown [192.0.2.9]\n", "HELO:        old.src.test\n"}, []string{"Listener:", "TLS:"}},
		{"a report of ours", queue.Origin{}, nil, []string{"Listener:", "Client:", "HELO:", "TLS:"}},
		{"control characters", queue.Origin{Listener: "mx", Kind: "mx", ClientIP: "192.0.2.1", ClientName: "evil\x1b[2J.test", Helo: "a\x07b"},
			[]string{"Client:      evil?[2J.test [192.0.2.1]\n", "HELO:        a?b\n"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &control.Message{Envelope: queue.Envelope{ID: "0G3Q8Z9V1B2C3D4E", From: "s@src.test", Origin: tc.origin,
				Rcpts: []queue.Rcpt{{Addr: "a@x.test", Status: queue.StatusPending}}}, State: queue.StateIncoming}
			var b bytes.Buffer
			writeShow(&b, m, time.Now())
			out := b.String()
			rest := out
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("lacks %q (in this order):\n%s", w, out)
				}
				rest = rest[i+len(w):]
			}
			for _, a := range tc.absent {
				if strings.Contains(out, a) {
					t.Errorf("has %q:\n%s", a, out)
				}
			}
		})
	}
}

func TestSpanRoundsToWholeDays(t *testing.T) {
	day := 24 * time.Hour
	for d, want := range map[time.Duration]string{
		30*day - time.Second:   "30d",
		29*day + 4*time.Hour:   "29d4h",
		3*day + 29*time.Minute: "3d",
		3*day + 31*time.Minute: "3d1h",
		90 * time.Minute:       "1h30m0s",
	} {
		if got := span(d); got != want {
			t.Errorf("span(%v) = %q, want %q", d, got, want)
		}
	}
}
