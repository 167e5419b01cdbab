package integration

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// An operator feeding the log to Loki runs "mxedge serve -log-format
// json": every line on stderr is one JSON object with time, level and
// msg, and the message's lines carry the queue ID of its 250 reply, from
// accepted through delivery to removed (docs/logging.md).
func TestJSONLogs(t *testing.T) {
	r := startPlainRelay(t, "-log-format", "json")
	out, code := swaks(t, r.mx, "--helo", "client.test", "--from", "sender@src.test", "--to", "alice@relay.test")
	if code != 0 {
		t.Fatalf("swaks failed (%d):\n%s", code, out)
	}
	id := queuedID(t, out)
	if _, err := r.logs.wait(`"msg":"removed"|"queue_id":"`+id+`"`, 1, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if code, err := r.stop(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("stop: %d %v", code, err)
	}
	byMsg := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(r.logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("not a JSON log line: %q (%v)", line, err)
			continue
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("line without %q: %s", k, line)
			}
		}
		if rec["queue_id"] == id {
			byMsg[rec["msg"].(string)] = rec
		}
	}
	for msg, want := range map[string]map[string]any{
		"accepted": {"from": "<sender@src.test>", "helo": "client.test", "listener": "mx", "nrcpt": float64(1)},
		"delivery": {"to": "<alice@relay.test>", "status": "sent", "dsn": "2.0.0", "attempt": float64(1)},
		"removed":  {},
	} {
		rec, ok := byMsg[msg]
		if !ok {
			t.Errorf("no %q line with queue_id %s", msg, id)
			continue
		}
		for k, v := range want {
			if rec[k] != v {
				t.Errorf("%s: %s = %#v, want %#v", msg, k, rec[k], v)
			}
		}
	}
}
