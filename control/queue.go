package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mxedge/mxedge/queue"
)

// Queue is what the control socket needs of the queue; *queue.Queue
// implements it (queue/admin.go documents each method). Errors for an
// unknown ID wrap queue.ErrNotFound (answered 404), errors for a message
// whose delivery attempt is in flight wrap queue.ErrInFlight (409). Every
// method is one short transaction, safe while the scheduler runs, except
// List, Stats and FlushMatching, which pass over the whole queue in pages.
type Queue interface {
	List(f queue.Filter, fn func(*queue.Envelope) error) error
	Get(id string) (*queue.Envelope, error)
	State(env *queue.Envelope) string
	Headers(id string) ([]byte, error)
	Flush(id string) error
	FlushMatching(f queue.Filter) (int, error)
	Hold(id string) error
	Release(id string) error
	Requeue(id string) error
	Delete(id string) error
	Bounce(id string) error
	Stats() (queue.Stats, error)
	// Backup writes a consistent copy of the queue index (bbolt
	// Tx.WriteTo) to w.
	Backup(w io.Writer) (int64, error)
}

var _ Queue = (*queue.Queue)(nil)

// Message is one queued message as the API returns it: the stored
// envelope, its state (queue.StateActive ...) and, from GET /queue/{id}
// only, its header section.
type Message struct {
	queue.Envelope
	State   string `json:"state"`
	Headers string `json:"headers,omitempty"`
}

// ActionResult answers a per-message action.
type ActionResult struct {
	ID     string `json:"id"`
	Result string `json:"result"` // "flushed", "held", "released", "requeued", "bounced", "deleted"
}

// FlushResult answers POST /queue/flush.
type FlushResult struct {
	Flushed int `json:"flushed"`
}

// listWriteTimeout bounds one write of a listing to a client that stopped
// reading.
const listWriteTimeout = 30 * time.Second

type queueAPI struct {
	q   Queue
	log *slog.Logger
}

func (s *Server) queueRoutes(q Queue) {
	a := &queueAPI{q: q, log: s.log}
	s.mux.HandleFunc("GET /queue", a.list)
	s.mux.HandleFunc("GET /queue/stats", a.stats)
	s.mux.HandleFunc("GET /queue/backup", a.backup)
	s.mux.HandleFunc("GET /queue/{id}", a.show)
	s.mux.HandleFunc("POST /queue/flush", a.flushMatching)
	s.mux.HandleFunc("POST /queue/{id}/flush", a.action("flush", "flushed", q.Flush))
	s.mux.HandleFunc("POST /queue/{id}/hold", a.action("hold", "held", q.Hold))
	s.mux.HandleFunc("POST /queue/{id}/release", a.action("release", "released", q.Release))
	s.mux.HandleFunc("POST /queue/{id}/requeue", a.action("requeue", "requeued", q.Requeue))
	s.mux.HandleFunc("POST /queue/{id}/bounce", a.action("bounce", "bounced", q.Bounce))
	s.mux.HandleFunc("DELETE /queue/{id}", a.action("delete", "deleted", q.Delete))
}

// list streams the matching messages as JSON lines, one encoder write per
// message: memory stays at one page of the queue's List whatever the queue
// size. An error after the first line is sent as a last line
// {"error": "..."}; a client that goes away ends the listing.
func (a *queueAPI) list(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.Query(), "sender", "recipient", "domain", "state")
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	a.log.Debug("admin", "action", "list", "filter", fmt.Sprintf("%+v", f))
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	started := false
	err = a.q.List(f, func(env *queue.Envelope) error {
		if err := r.Context().Err(); err != nil {
			return err
		}
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		_ = rc.SetWriteDeadline(time.Now().Add(listWriteTimeout))
		if err := enc.Encode(Message{Envelope: *env, State: a.q.State(env)}); err != nil {
			return err
		}
		// Each message goes out as it is found: with a narrow filter the
		// next match may be a long scan away.
		return rc.Flush()
	})
	switch {
	case r.Context().Err() != nil:
		return // the client left
	case err != nil && !started:
		a.log.Error("admin", "action", "list", "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
	case err != nil:
		a.log.Error("admin", "action", "list", "err", err)
		_ = enc.Encode(errorBody{Error: err.Error()})
	case !started:
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
	}
}

func (a *queueAPI) stats(w http.ResponseWriter, r *http.Request) {
	a.log.Debug("admin", "action", "stats")
	st, err := a.q.Stats()
	if err != nil {
		a.fail(w, "stats", "", err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// backup streams a consistent copy of queue.db. An error after the first
// byte can only cut the stream short: the client compares the length with
// the X-Backup-Size trailer.
func (a *queueAPI) backup(w http.ResponseWriter, r *http.Request) {
	a.log.Info("admin", "action", "backup")
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Trailer", "X-Backup-Size")
	n, err := a.q.Backup(w)
	if err != nil {
		a.log.Error("admin backup failed", "err", err)
		return
	}
	w.Header().Set("X-Backup-Size", strconv.FormatInt(n, 10))
}

func (a *queueAPI) show(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	a.log.Debug("admin", "action", "show", "queue_id", id)
	env, err := a.q.Get(id)
	if err != nil {
		a.fail(w, "show", id, err)
		return
	}
	hdr, err := a.q.Headers(id)
	if err != nil {
		a.fail(w, "show", id, err)
		return
	}
	writeJSON(w, http.StatusOK, Message{Envelope: *env, State: a.q.State(env), Headers: string(hdr)})
}

// action serves a per-message action done by fn.
func (a *queueAPI) action(name, result string, fn func(id string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		if err := fn(id); err != nil {
			a.fail(w, name, id, err)
			return
		}
		a.log.Info("admin", "action", name, "queue_id", id)
		writeJSON(w, http.StatusOK, ActionResult{ID: id, Result: result})
	}
}

func (a *queueAPI) flushMatching(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.Query(), "sender", "recipient", "domain")
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	n, err := a.q.FlushMatching(f)
	if err != nil {
		a.fail(w, "flush", "", err)
		return
	}
	a.log.Info("admin", "action", "flush", "sender", f.Sender, "recipient", f.Recipient,
		"domain", f.Domain, "count", n)
	writeJSON(w, http.StatusOK, FlushResult{Flushed: n})
}

// fail logs a failed action and answers it: 404 unknown message, 409 in
// flight or on hold, 500 otherwise.
func (a *queueAPI) fail(w http.ResponseWriter, action, id string, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, queue.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, queue.ErrInFlight), errors.Is(err, queue.ErrHeld):
		status = http.StatusConflict
	}
	level := slog.LevelWarn
	if status == http.StatusInternalServerError {
		level = slog.LevelError
	}
	attrs := []any{"action", action, "err", err}
	if id != "" {
		attrs = append(attrs, "queue_id", id)
	}
	a.log.Log(context.Background(), level, "admin", attrs...)
	writeError(w, status, err.Error())
}

// pathID returns the {id} of r, or answers 400 for a malformed one.
func pathID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if err := CheckID(id); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return "", false
	}
	return id, true
}

// CheckID returns an error unless id is a well-formed queue ID: 16
// characters of Crockford's base32 alphabet (0-9 and A-Z without I, L, O,
// U), upper case.
func CheckID(id string) error {
	ok := len(id) == 16
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = ('0' <= c && c <= '9' || 'A' <= c && c <= 'Z') && c != 'I' && c != 'L' && c != 'O' && c != 'U'
	}
	if !ok {
		return fmt.Errorf("invalid queue ID %q: want 16 characters of 0-9 and A-Z without I, L, O, U", id)
	}
	return nil
}

// parseFilter reads a queue.Filter from query parameters, refusing any
// parameter not in allowed (a typo must not widen a flush to everything).
// Addresses may be given in angle brackets; "<>" is the null sender.
func parseFilter(v url.Values, allowed ...string) (queue.Filter, error) {
	for k, vs := range v {
		known := false
		for _, a := range allowed {
			known = known || k == a
		}
		if !known {
			return queue.Filter{}, fmt.Errorf("unknown parameter %q (want %s)", k, strings.Join(allowed, ", "))
		}
		if len(vs) > 1 {
			return queue.Filter{}, fmt.Errorf("parameter %q given more than once", k)
		}
	}
	f := queue.Filter{
		Sender:    unbracket(v.Get("sender")),
		Recipient: unbracket(v.Get("recipient")),
		Domain:    strings.TrimSuffix(strings.TrimPrefix(v.Get("domain"), "@"), "."),
		State:     v.Get("state"),
	}
	switch f.State {
	case "", queue.StateActive, queue.StateHold, queue.StateDeferred, queue.StateIncoming:
	default:
		return queue.Filter{}, fmt.Errorf("state %q: want %s, %s, %s or %s", f.State,
			queue.StateActive, queue.StateHold, queue.StateDeferred, queue.StateIncoming)
	}
	return f, nil
}

// unbracket turns "<a@b>" into "a@b"; "<>" (the null sender) stays.
func unbracket(s string) string {
	if len(s) > 2 && s[0] == '<' && s[len(s)-1] == '>' {
		return s[1 : len(s)-1]
	}
	return s
}
