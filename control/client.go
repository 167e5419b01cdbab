package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/mxedge/mxedge/queue"
)

// ErrNotRunning is wrapped by Client errors when no daemon listens on the
// socket (no socket file, or one left by a daemon that died).
var ErrNotRunning = errors.New("mxedge is not running")

// APIError is an error answered by the daemon.
type APIError struct {
	Status  int    // HTTP status: 400, 404, 409, 500
	Message string // the daemon's text
}

func (e *APIError) Error() string { return e.Message }

// Unwrap makes a 404 match queue.ErrNotFound.
func (e *APIError) Unwrap() error {
	if e.Status == http.StatusNotFound {
		return queue.ErrNotFound
	}
	return nil
}

// Client talks to a daemon's control socket. It is safe for concurrent use.
type Client struct {
	path string
	hc   *http.Client
}

const (
	clientDialTimeout = 5 * time.Second
	// clientReplyTimeout bounds the wait for an answer. It is long: stats
	// and flush without a filter pass over the whole queue first. A
	// listing is bounded by this until its first line only.
	clientReplyTimeout = 10 * time.Minute
)

// NewClient returns a client for the control socket at socketPath. It
// connects on the first call.
func NewClient(socketPath string) *Client {
	d := &net.Dialer{Timeout: clientDialTimeout}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socketPath)
		},
		Proxy:                 nil, // never HTTP_PROXY: the socket is the only destination
		ResponseHeaderTimeout: clientReplyTimeout,
		IdleConnTimeout:       30 * time.Second,
		DisableCompression:    true,
	}
	return &Client{path: socketPath, hc: &http.Client{Transport: tr}}
}

// List calls fn for each message matching f, in arrival order, as the
// daemon streams them; an error from fn stops the listing.
func (c *Client) List(ctx context.Context, f queue.Filter, fn func(*Message) error) error {
	resp, err := c.do(ctx, http.MethodGet, "/queue", filterQuery(f, true))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var line struct {
			Message
			Error string `json:"error"`
		}
		if err := dec.Decode(&line); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("control: list: %w", err)
		}
		if line.Error != "" {
			return &APIError{Status: http.StatusInternalServerError, Message: line.Error}
		}
		if err := fn(&line.Message); err != nil {
			return err
		}
	}
}

// Backup copies the running daemon's queue index to w (GET
// /queue/backup) and returns its size; a stream cut short is an error.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	resp, err := c.do(ctx, http.MethodGet, "/queue/backup", nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("control: backup: %w", err)
	}
	if want := resp.Trailer.Get("X-Backup-Size"); want != strconv.FormatInt(n, 10) {
		return n, fmt.Errorf("control: backup: got %d bytes, daemon wrote %q: incomplete (see its log)", n, want)
	}
	return n, nil
}

// Show returns message id with its header section.
func (c *Client) Show(ctx context.Context, id string) (*Message, error) {
	if err := CheckID(id); err != nil {
		return nil, err
	}
	var m Message
	if err := c.call(ctx, http.MethodGet, "/queue/"+id, nil, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// Stats returns the queue's counters.
func (c *Client) Stats(ctx context.Context) (queue.Stats, error) {
	var st queue.Stats
	err := c.call(ctx, http.MethodGet, "/queue/stats", nil, &st)
	return st, err
}

// Flush makes message id due now.
func (c *Client) Flush(ctx context.Context, id string) error {
	return c.action(ctx, http.MethodPost, id, "/flush")
}

// FlushMatching makes every message matching f due now (every message with
// a zero Filter; Filter.State is not used) and returns how many.
func (c *Client) FlushMatching(ctx context.Context, f queue.Filter) (int, error) {
	var res FlushResult
	err := c.call(ctx, http.MethodPost, "/queue/flush", filterQuery(f, false), &res)
	return res.Flushed, err
}

// Hold takes message id off the schedule until Release.
func (c *Client) Hold(ctx context.Context, id string) error {
	return c.action(ctx, http.MethodPost, id, "/hold")
}

// Release puts a held message back on the schedule, due now.
func (c *Client) Release(ctx context.Context, id string) error {
	return c.action(ctx, http.MethodPost, id, "/release")
}

// Requeue makes message id due now as a fresh message (queue.Requeue).
func (c *Client) Requeue(ctx context.Context, id string) error {
	return c.action(ctx, http.MethodPost, id, "/requeue")
}

// Bounce returns message id to its sender now.
func (c *Client) Bounce(ctx context.Context, id string) error {
	return c.action(ctx, http.MethodPost, id, "/bounce")
}

// Delete removes message id without telling its sender.
func (c *Client) Delete(ctx context.Context, id string) error {
	return c.action(ctx, http.MethodDelete, id, "")
}

func (c *Client) action(ctx context.Context, method, id, suffix string) error {
	if err := CheckID(id); err != nil {
		return err
	}
	return c.call(ctx, method, "/queue/"+id+suffix, nil, nil)
}

// call does one request and decodes its JSON answer into out (if not nil).
func (c *Client) call(ctx context.Context, method, path string, query url.Values, out any) error {
	resp, err := c.do(ctx, method, path, query)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("control: %s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// do sends a request; any answer but 200 becomes an *APIError.
func (c *Client) do(ctx context.Context, method, path string, query url.Values) (*http.Response, error) {
	u := "http://mxedge" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.connError(err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var body errorBody
		if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body); err != nil || body.Error == "" {
			body.Error = fmt.Sprintf("%s %s: %s", method, path, resp.Status)
		}
		return nil, &APIError{Status: resp.StatusCode, Message: body.Error}
	}
	return resp, nil
}

// connError explains a failure to talk to the daemon.
func (c *Client) connError(err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("%w (no control socket at %s)", ErrNotRunning, c.path)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w (stale control socket at %s)", ErrNotRunning, c.path)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("cannot access control socket %s: permission denied (run as the user that runs mxedge)", c.path)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("control socket %s: %w", c.path, err)
}

func filterQuery(f queue.Filter, withState bool) url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"sender": f.Sender, "recipient": f.Recipient, "domain": f.Domain} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if withState && f.State != "" {
		v.Set("state", f.State)
	}
	return v
}
