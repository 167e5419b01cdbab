// Package probedial adapts delivery's outbound SMTP client layer to
// verifycache.Dialer, so that recipient verification probes reach a
// backend exactly as deliveries do (next hops, source address, TLS policy,
// dead-hop state, connection cache). It is the one place that knows both
// packages; cmd/mxedge and verifycache's tests use it.
package probedial

import (
	"context"
	"errors"
	"io"

	"github.com/mxedge/mxedge/delivery"
	"github.com/mxedge/mxedge/verifycache"
)

// Dialer is d as a verifycache.Dialer.
func Dialer(d *delivery.Deliverer) verifycache.Dialer { return dialer{d} }

type dialer struct{ d *delivery.Deliverer }

func (x dialer) Hops(ctx context.Context, domain string) ([]verifycache.Hop, error) {
	hs, err := x.d.Hops(ctx, domain)
	if err != nil {
		return nil, err
	}
	out := make([]verifycache.Hop, len(hs))
	for i, h := range hs {
		out[i] = hop{x.d, h}
	}
	return out, nil
}

type hop struct {
	d *delivery.Deliverer
	h delivery.Hop
}

func (h hop) String() string { return h.h.String() }

func (h hop) Dial(ctx context.Context, fresh bool, debug io.Writer) (verifycache.Conn, error) {
	c, err := h.d.Dial(ctx, h.h, delivery.DialOptions{Fresh: fresh, Debug: debug})
	var de *delivery.DialError
	if errors.As(err, &de) {
		return nil, &verifycache.DialError{Stage: de.Stage, Refused: de.Refused, Text: de.Text}
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}
