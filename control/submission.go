package control

import (
	"context"
	"net/http"
	"net/url"

	"github.com/mxedge/mxedge/submission"
)

// UsageSource is the submission listeners' rate limit store.
type UsageSource interface {
	Usage(user string) submission.Usage
}

// HandleUsage adds GET /submission/usage/{user}: a user's rate limit
// counters now. Call it before Serve.
func (s *Server) HandleUsage(u UsageSource) {
	s.Handle("GET /submission/usage/{user}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, u.Usage(r.PathValue("user")))
	}))
}

// UserUsage returns user's rate limit counters from the daemon.
func (c *Client) UserUsage(ctx context.Context, user string) (submission.Usage, error) {
	var u submission.Usage
	err := c.call(ctx, http.MethodGet, "/submission/usage/"+url.PathEscape(user), nil, &u)
	return u, err
}
