package control

import (
	"context"
	"net/http"
)

// ReloadResult is the answer of POST /reload: what was applied live and
// what changed but needs a restart.
type ReloadResult struct {
	Applied []string `json:"applied"`
	Restart []string `json:"restart_needed"`
}

// HandleReload adds POST /reload: reload re-reads the configuration. Its
// error (an invalid file: the old configuration stays) is answered as
// 422 with the error text (file:line). Call it before Serve.
func (s *Server) HandleReload(reload func(context.Context) (ReloadResult, error)) {
	s.Handle("POST /reload", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := reload(r.Context())
		if err != nil {
			s.log.Error("reload failed, the old configuration stays", "err", err)
			writeError(w, http.StatusUnprocessableEntity, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, res)
	}))
}

// Reload asks the daemon to re-read its configuration.
func (c *Client) Reload(ctx context.Context) (ReloadResult, error) {
	var res ReloadResult
	err := c.call(ctx, http.MethodPost, "/reload", nil, &res)
	return res, err
}
