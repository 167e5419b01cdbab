package control

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// BodySource opens a queued message as it is delivered
// (queue.Queue.OpenMessage).
type BodySource interface {
	OpenMessage(id string) (io.ReadCloser, error)
}

// HandleBody adds GET /queue/{id}/body: the message's bytes as stored,
// streamed (application/octet-stream). Call it before Serve.
func (s *Server) HandleBody(q BodySource) {
	a := &queueAPI{log: s.log}
	s.Handle("GET /queue/{id}/body", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		s.log.Debug("admin", "action", "show body", "queue_id", id)
		rc, err := q.OpenMessage(id)
		if err != nil {
			a.fail(w, "show", id, err)
			return
		}
		defer rc.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = io.Copy(w, rc)
	}))
}

// Body copies message id as it is delivered to w.
func (c *Client) Body(ctx context.Context, id string, w io.Writer) error {
	if err := CheckID(id); err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodGet, "/queue/"+id+"/body", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("control: message %s: %w", id, err)
	}
	return nil
}
