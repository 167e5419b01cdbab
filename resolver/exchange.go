package resolver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// ednsSize is the UDP payload size announced in EDNS0 (RFC 6891 section
// 6.2.5; 1232 avoids IP fragmentation, DNS flag day 2020).
const ednsSize = 1232

// errMismatch: a response that does not answer the question asked.
var errMismatch = errors.New("response does not match the query")

// exchange asks the servers, in order, Attempts rounds, until one gives a
// usable answer: NOERROR or NXDOMAIN. A timeout, network error, unusable
// response or other rcode (SERVFAIL, REFUSED, ...) moves on to the next
// server. The error is a temporary *Error about the last failure.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, string, error) {
	last := &Error{Kind: ErrTemporary, Rcode: -1, Err: errors.New("no servers")}
	for range r.attempts {
		for _, server := range r.servers {
			t0 := time.Now()
			resp, err := r.exchangeWith(ctx, server, query(name, qtype))
			r.observe(resp, err, time.Since(t0))
			if ctx.Err() != nil {
				return nil, server, &Error{Kind: ErrTemporary, Rcode: -1, Server: server, Err: ctx.Err()}
			}
			if err != nil {
				last = &Error{Kind: ErrTemporary, Rcode: -1, Server: server, Err: err}
				continue
			}
			if resp.Rcode == dns.RcodeSuccess || resp.Rcode == dns.RcodeNameError {
				return resp, server, nil
			}
			last = &Error{Kind: ErrTemporary, Rcode: resp.Rcode, Server: server}
		}
	}
	return nil, last.Server, last
}

// query is the message asking for (name, qtype): recursion desired, EDNS0
// with the DO bit (RFC 6891, RFC 4035 section 3.2.1) so that a validating
// server reports validation in the AD bit. Each query has a fresh random
// ID.
func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(ednsSize, true)
	return m
}

// exchangeWith asks one server over UDP, and over TCP when the UDP answer
// is truncated (RFC 1035 section 4.2.1, RFC 7766 section 5).
func (r *Resolver) exchangeWith(ctx context.Context, server string, q *dns.Msg) (*dns.Msg, error) {
	resp, err := r.roundTrip(ctx, r.udp, server, q)
	if err == nil && resp.Truncated {
		resp, err = r.roundTrip(ctx, r.tcp, server, q)
	}
	if err != nil {
		return nil, err
	}
	if err := matches(q, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// roundTrip sends q to server with client c and reads the answer, within
// r.timeout and ctx's deadline (socket deadlines, so that a timeout is
// reported as one); cancelling ctx closes the connection at once.
func (r *Resolver) roundTrip(ctx context.Context, c *dns.Client, server string, q *dns.Msg) (*dns.Msg, error) {
	select {
	case r.slots <- struct{}{}:
		defer func() { <-r.slots }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	tctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	conn, err := c.DialContext(tctx, server)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Net, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	resp, _, err := c.ExchangeWithConnContext(tctx, q, conn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Net, err)
	}
	return resp, nil
}

// matches checks that resp is a response to q: same ID (checked by
// miekg/dns), a response, and the same question.
func matches(q, resp *dns.Msg) error {
	if !resp.Response || resp.Opcode != dns.OpcodeQuery {
		return errMismatch
	}
	failed := resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError
	if len(resp.Question) == 0 && failed { // an error may come without question
		return nil
	}
	if len(resp.Question) != 1 {
		return errMismatch
	}
	a, b := q.Question[0], resp.Question[0]
	if !strings.EqualFold(a.Name, b.Name) || a.Qtype != b.Qtype || a.Qclass != b.Qclass {
		return errMismatch
	}
	return nil
}

// observe tells the Observer about one exchange.
func (r *Resolver) observe(resp *dns.Msg, err error, took time.Duration) {
	if r.obs == nil {
		return
	}
	result := "ok"
	switch {
	case err != nil:
		result = "error"
	case resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError:
		result = "rcode"
	}
	r.obs.DNSExchanged(result, took)
}
