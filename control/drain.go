package control

import (
	"context"
	"net/http"
	"net/url"
)

// Drainer is what "mxedge drain" switches: the MX listeners
// (smtpd.Server.Drain). Drain must return at once; sessions in flight
// and the queue go on.
type Drainer interface {
	Drain(on bool)
	Draining() bool
}

// DrainState is the answer of /drain.
type DrainState struct {
	Draining bool `json:"draining"`
}

// HandleDrain adds POST /drain?on=true|false (switch, answer the state
// after it) and GET /drain. Call it before Serve.
func (s *Server) HandleDrain(d Drainer) {
	s.Handle("GET /drain", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, DrainState{Draining: d.Draining()})
	}))
	s.Handle("POST /drain", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var on bool
		switch r.URL.Query().Get("on") {
		case "true":
			on = true
		case "false":
		default:
			writeError(w, http.StatusBadRequest, `on: must be "true" or "false"`)
			return
		}
		d.Drain(on)
		s.log.Info("admin", "action", "drain", "draining", on)
		writeJSON(w, http.StatusOK, DrainState{Draining: d.Draining()})
	}))
}

// Drain switches draining on or off and returns the state after it.
func (c *Client) Drain(ctx context.Context, on bool) (DrainState, error) {
	var st DrainState
	q := url.Values{"on": {"false"}}
	if on {
		q.Set("on", "true")
	}
	err := c.call(ctx, http.MethodPost, "/drain", q, &st)
	return st, err
}
