package control

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxedge/mxedge/queue"
)

// FuzzAPI sends hostile requests (any method, path and query) to the
// control socket's handlers over a real queue with one message: no panic,
// never a 5xx, and every answer but the backup stream is JSON (one value,
// or one per line for a listing).
func FuzzAPI(f *testing.F) {
	dir := f.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	q, err := queue.Open(filepath.Join(dir, "queue"), queue.Options{Logger: log})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { q.Close() })
	in, err := q.NewMessage(queue.Envelope{From: "s@src.test", Rcpts: []queue.Rcpt{{Addr: "a@x.test"}}})
	if err != nil {
		f.Fatal(err)
	}
	io.WriteString(in, "Subject: x\r\n\r\nhi\r\n")
	if err := in.Commit(f.Context()); err != nil {
		f.Fatal(err)
	}
	id := in.ID()
	s := New(q, log)
	for _, p := range []string{"/queue", "/queue?state=hold&sender=%3C%3E", "/queue/stats", "/queue/" + id,
		"/queue/" + id + "/hold", "/queue/" + id + "/release", "/queue/flush?domain=x.test", "/queue/%00", "/verify/a@b"} {
		f.Add(uint8(0), p)
		f.Add(uint8(1), p)
	}
	methods := []string{http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodPut, "BREW"}
	f.Fuzz(func(t *testing.T, m uint8, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil || !strings.HasPrefix(u.Path, "/") || strings.ContainsFunc(target, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return
		}
		method := methods[int(m)%len(methods)]
		if method == http.MethodDelete || strings.HasSuffix(u.Path, "/bounce") {
			return // keep the one message for the other inputs
		}
		req := httptest.NewRequest(method, "http://mxedge"+u.RequestURI(), nil)
		rec := httptest.NewRecorder()
		s.mux.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s: %d %s", method, target, rec.Code, rec.Body)
		}
		if u.Path == "/queue/backup" || rec.Code >= 300 && rec.Code < 400 {
			return // a byte stream; ServeMux's redirect of an unclean path ("/.")
		}
		dec := json.NewDecoder(rec.Body)
		for dec.More() {
			var v any
			if err := dec.Decode(&v); err != nil {
				t.Fatalf("%s %s: not JSON: %v: %q", method, target, err, rec.Body)
			}
		}
	})
}
