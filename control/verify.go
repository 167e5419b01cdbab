package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/mxedge/mxedge/verifycache"
)

// Recipient verification routes ("mxedge verify ..."), added with
// Server.HandleVerify:
//
//	GET    /verify/stats          verifycache.Stats
//	GET    /verify/{addr}         verifycache.Lookup: the cache entry and what RCPT would get
//	POST   /verify/{addr}/probe   verifycache.ProbeReport: a fresh probe with its dialogue, cached
//	DELETE /verify/{addr}         remove the entry: {"addr": ADDR, "result": "forgotten"}
//
// {addr} is path-escaped (url.PathEscape) and normalized by the daemon
// (verifycache.Normalize): the domain lowercased, the local part kept. A
// malformed address, or a probe of a domain that is not probed, is 400; a
// forget without an entry 404.

// Verifier is what the control socket needs of recipient verification;
// *verifycache.Verifier implements it (verifycache/admin.go documents each
// method). Errors wrapping verifycache.ErrBadAddress or ErrNotProbed are
// answered 400, ErrNotFound 404.
type Verifier interface {
	Show(addr string) (verifycache.Lookup, error)
	Probe(ctx context.Context, addr string) (verifycache.ProbeReport, error)
	Forget(addr string) (string, error)
	Stats() (verifycache.Stats, error)
}

var _ Verifier = (*verifycache.Verifier)(nil)

// ForgetResult answers DELETE /verify/{addr}.
type ForgetResult struct {
	Addr   string `json:"addr"`
	Result string `json:"result"` // "forgotten"
}

type verifyAPI struct {
	v   Verifier
	log *slog.Logger
}

// HandleVerify adds the /verify routes over v. Call it before Serve.
func (s *Server) HandleVerify(v Verifier) {
	a := &verifyAPI{v: v, log: s.log}
	s.Handle("GET /verify/stats", http.HandlerFunc(a.stats))
	s.Handle("GET /verify/{addr}", http.HandlerFunc(a.show))
	s.Handle("POST /verify/{addr}/probe", http.HandlerFunc(a.probe))
	s.Handle("DELETE /verify/{addr}", http.HandlerFunc(a.forget))
}

func (a *verifyAPI) stats(w http.ResponseWriter, r *http.Request) {
	a.log.Debug("admin", "action", "verify-stats")
	st, err := a.v.Stats()
	if err != nil {
		a.fail(w, "verify-stats", "", err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (a *verifyAPI) show(w http.ResponseWriter, r *http.Request) {
	addr := r.PathValue("addr")
	a.log.Debug("admin", "action", "verify-show", "to", "<"+addr+">")
	l, err := a.v.Show(addr)
	if err != nil {
		a.fail(w, "verify-show", addr, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (a *verifyAPI) probe(w http.ResponseWriter, r *http.Request) {
	addr := r.PathValue("addr")
	rep, err := a.v.Probe(r.Context(), addr)
	if err != nil {
		a.fail(w, "verify-probe", addr, err)
		return
	}
	a.log.Info("admin", "action", "verify-probe", "to", "<"+rep.Addr+">", "result", string(rep.Result))
	writeJSON(w, http.StatusOK, rep)
}

func (a *verifyAPI) forget(w http.ResponseWriter, r *http.Request) {
	addr := r.PathValue("addr")
	norm, err := a.v.Forget(addr)
	if err != nil {
		a.fail(w, "verify-forget", addr, err)
		return
	}
	a.log.Info("admin", "action", "verify-forget", "to", "<"+norm+">")
	writeJSON(w, http.StatusOK, ForgetResult{Addr: norm, Result: "forgotten"})
}

// fail logs a failed request and answers it: 400 bad address or a domain
// that is not probed, 404 no entry, 500 otherwise.
func (a *verifyAPI) fail(w http.ResponseWriter, action, addr string, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, verifycache.ErrBadAddress), errors.Is(err, verifycache.ErrNotProbed):
		status = http.StatusBadRequest
	case errors.Is(err, verifycache.ErrNotFound):
		status = http.StatusNotFound
	}
	level := slog.LevelWarn
	if status == http.StatusInternalServerError {
		level = slog.LevelError
	}
	attrs := []any{"action", action, "err", err}
	if addr != "" {
		attrs = append(attrs, "to", "<"+addr+">")
	}
	a.log.Log(context.Background(), level, "admin", attrs...)
	writeError(w, status, err.Error())
}

// VerifyShow returns what the daemon's cache says about addr.
func (c *Client) VerifyShow(ctx context.Context, addr string) (verifycache.Lookup, error) {
	var l verifycache.Lookup
	if err := checkAddr(addr); err != nil {
		return l, err
	}
	err := c.call(ctx, http.MethodGet, verifyPath(addr, ""), nil, &l)
	return l, err
}

// VerifyProbe has the daemon probe addr now and returns the dialogue.
func (c *Client) VerifyProbe(ctx context.Context, addr string) (verifycache.ProbeReport, error) {
	var rep verifycache.ProbeReport
	if err := checkAddr(addr); err != nil {
		return rep, err
	}
	err := c.call(ctx, http.MethodPost, verifyPath(addr, "/probe"), nil, &rep)
	return rep, err
}

// VerifyForget removes the cache entry of addr and returns the address as
// the daemon normalized it.
func (c *Client) VerifyForget(ctx context.Context, addr string) (string, error) {
	var res ForgetResult
	if err := checkAddr(addr); err != nil {
		return "", err
	}
	err := c.call(ctx, http.MethodDelete, verifyPath(addr, ""), nil, &res)
	return res.Addr, err
}

// VerifyStats returns the verification counters.
func (c *Client) VerifyStats(ctx context.Context) (verifycache.Stats, error) {
	var st verifycache.Stats
	err := c.call(ctx, http.MethodGet, "/verify/stats", nil, &st)
	return st, err
}

// checkAddr refuses what cannot be an address before it becomes a path
// ("stats" would be another endpoint).
func checkAddr(addr string) error {
	if !strings.Contains(addr, "@") {
		return fmt.Errorf("invalid address %q: want local@domain", addr)
	}
	return nil
}

func verifyPath(addr, suffix string) string {
	return "/verify/" + url.PathEscape(addr) + suffix
}
