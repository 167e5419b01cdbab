package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mxedge/mxedge/control"
	"github.com/mxedge/mxedge/internal/metrics"
)

// health is what /healthz reports: the first reason the relay is not
// serving, or "" when its listeners, queue scheduler and control socket
// are up.
type health struct {
	mu     sync.Mutex
	reason string
}

func (h *health) set(reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.reason == "" || reason == "" {
		h.reason = reason
	}
}

func (h *health) get() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reason
}

// registerMetrics puts every stage's families on r.reg.
func (r *relay) registerMetrics() {
	ls := make(map[string]metrics.Listener, len(r.servers))
	for i, s := range r.servers {
		ls[r.cfg.Listeners[i].Name] = s
	}
	metrics.Listeners(r.reg, ls)
	metrics.Verify(r.reg, r.ver)
	metrics.DeadHops(r.reg, r.dl.DeadHops)
	metrics.QueueState(r.reg, r.queue, nil)
	metrics.OutboundTLS(r.reg, r.dl.TLSSessions)
	metrics.DKIM(r.reg, func() (uint64, uint64) {
		c := r.signer.Counts()
		return c.Signed, c.Failed
	})
	metrics.Auth(r.reg, func() (uint64, uint64) {
		if r.sub == nil {
			return 0, 0
		}
		c := r.sub.auth.Guard().Counts()
		return c.Failures, c.Lockouts
	})
	cs := make(map[string]metrics.Certs, len(r.certNames))
	for i, st := range r.certs {
		cs[r.certNames[i]] = st
	}
	metrics.CertExpiry(r.reg, cs)
}

// adminHTTP serves /metrics and /healthz on [admin] http; nil when off.
// The listener is bound by build (a taken port is a start error).
func (r *relay) adminHTTP() (*http.Server, net.Listener, error) {
	if r.cfg.Admin.HTTP == "" {
		return nil, nil, nil
	}
	ln, err := net.Listen("tcp", r.cfg.Admin.HTTP)
	if err != nil {
		return nil, nil, fmt.Errorf("admin.http: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", r.serveHealth)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	return srv, ln, nil
}

// serveHealth is /healthz: 200 "ok", or 503 with the reason.
func (r *relay) serveHealth(w http.ResponseWriter, req *http.Request) {
	reason := r.health.get()
	if reason == "" {
		// The control socket answers (a connect on the unix socket, with
		// a deadline): admin commands work.
		ctx, cancel := context.WithTimeout(req.Context(), 2*time.Second)
		defer cancel()
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", control.SocketPath(r.cfg.DataDir))
		if err != nil {
			reason = "control socket: " + err.Error()
		} else {
			c.Close()
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if reason != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, reason)
		return
	}
	fmt.Fprintln(w, "ok")
}
