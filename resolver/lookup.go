package resolver

import (
	"context"
	"fmt"
	"net"

	"github.com/miekg/dns"
)

// Lookup returns the records of type qtype for name, following CNAMEs in
// the answer. A negative answer is an *Error of kind ErrNotExist or
// ErrNoRecords, with the Result still describing it (Status, TTL,
// Authentic). The records are copies, the caller's to modify.
func (r *Resolver) Lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, Result, error) {
	a, err := r.lookup(ctx, name, qtype)
	if err != nil {
		return nil, Result{}, err
	}
	rrs := make([]dns.RR, len(a.rrs))
	for i, rr := range a.rrs {
		rrs[i] = dns.Copy(rr)
	}
	return rrs, a.result(), a.err(name, qtype)
}

// Query returns the response for (name, qtype) as the server sent it (a
// copy; from the cache if it is there), for callers that need more than
// the records (the authority section, the AD bit of a negative answer).
// Errors are as for Lookup; the message is nil only when the lookup failed
// temporarily or the name is invalid.
func (r *Resolver) Query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	a, err := r.lookup(ctx, name, qtype)
	if err != nil {
		return nil, err
	}
	return a.msg.Copy(), a.err(name, qtype)
}

// LookupMX returns the MX records of name, in the order the server gave
// them (sorting and shuffling is the caller's, see package mxroute).
func (r *Resolver) LookupMX(ctx context.Context, name string) ([]*dns.MX, Result, error) {
	return lookupTyped[*dns.MX](ctx, r, name, dns.TypeMX)
}

// LookupTLSA returns the TLSA records of a service (RFC 6698 section 3:
// "_port._proto.host", e.g. 25, "tcp", "mx.example.org"). For DANE, use
// them only if Result.Authentic.
func (r *Resolver) LookupTLSA(ctx context.Context, port uint16, proto, host string) ([]*dns.TLSA, Result, error) {
	return lookupTyped[*dns.TLSA](ctx, r, fmt.Sprintf("_%d._%s.%s", port, proto, dns.Fqdn(host)), dns.TypeTLSA)
}

// lookupTyped is Lookup for a record type T of qtype.
func lookupTyped[T dns.RR](ctx context.Context, r *Resolver, name string, qtype uint16) ([]T, Result, error) {
	rrs, res, err := r.Lookup(ctx, name, qtype)
	var out []T
	for _, rr := range rrs {
		if t, ok := rr.(T); ok {
			out = append(out, t)
		}
	}
	return out, res, err
}

// LookupIP returns the IPv4 (A) and IPv6 (AAAA) addresses of host, IPv4
// first; both are asked at once. Addresses of one family are enough: if
// the other lookup failed, the error is dropped. Without addresses, the
// error is temporary if either lookup failed temporarily, ErrNotExist if
// both said NXDOMAIN, ErrNoRecords otherwise. Result describes the A
// answer, or the AAAA answer if there is no A answer; it is Authentic
// only if both answers arrived and were authentic.
func (r *Resolver) LookupIP(ctx context.Context, host string) ([]net.IP, Result, error) {
	type part struct {
		a   *answer
		err error
	}
	ch := make(chan part, 1)
	go func() {
		a, err := r.lookup(ctx, host, dns.TypeAAAA)
		ch <- part{a, err}
	}()
	a4, err4 := r.lookup(ctx, host, dns.TypeA)
	p6 := <-ch
	a6, err6 := p6.a, p6.err

	var ips []net.IP
	var res Result
	for _, a := range []*answer{a6, a4} { // a4 last: res describes it
		if a == nil {
			continue
		}
		res = a.result()
	}
	res.Authentic = a4 != nil && a6 != nil && a4.authentic && a6.authentic
	if a4 != nil && a6 != nil {
		res.TTL = min(a4.ttl, a6.ttl)
	}
	for _, a := range []*answer{a4, a6} {
		if a == nil {
			continue
		}
		for _, rr := range a.rrs {
			switch rr := rr.(type) {
			case *dns.A:
				ips = append(ips, append(net.IP(nil), rr.A...))
			case *dns.AAAA:
				ips = append(ips, append(net.IP(nil), rr.AAAA...))
			}
		}
	}
	switch {
	case len(ips) > 0:
		res.Status = StatusAnswer
		return ips, res, nil
	case err4 != nil:
		return nil, res, err4
	case err6 != nil:
		return nil, res, err6
	case a4.status == StatusNXDOMAIN && a6.status == StatusNXDOMAIN:
		return nil, res, a4.err(host, dns.TypeA)
	case a4.status == StatusNODATA:
		return nil, res, a4.err(host, dns.TypeA)
	default:
		return nil, res, a6.err(host, dns.TypeAAAA)
	}
}

// LookupCNAME returns the canonical name of name: it asks for name's
// CNAME record and follows the chain, at most 8 aliases deep, to the first
// name that is not an alias. Result.CNAMEs lists the aliases followed.
//
// A name that is not an alias (NODATA for CNAME) is its own canonical
// name: LookupCNAME returns it with a nil error and StatusNODATA. If the
// name, or the end of the chain, does not exist, the error is ErrNotExist
// and the name returned is that last name. Names are returned as lowercase
// FQDNs.
func (r *Resolver) LookupCNAME(ctx context.Context, name string) (string, Result, error) {
	cur, err := fqdn(name, dns.TypeCNAME)
	if err != nil {
		return "", Result{}, err
	}
	res := Result{Authentic: true, TTL: ^uint32(0)}
	for {
		a, err := r.lookup(ctx, cur, dns.TypeCNAME)
		if err != nil {
			return cur, Result{Name: cur, CNAMEs: res.CNAMEs}, err
		}
		res.Authentic = res.Authentic && a.authentic
		res.TTL = min(res.TTL, a.ttl)
		res.Status, res.Server, res.Name = a.status, a.server, cur
		if a.status != StatusAnswer {
			if len(res.CNAMEs) > 0 && a.status == StatusNODATA {
				res.Status = StatusAnswer
			}
			if a.status == StatusNXDOMAIN {
				return cur, res, a.err(name, dns.TypeCNAME)
			}
			return cur, res, nil
		}
		c, ok := a.rrs[0].(*dns.CNAME)
		if !ok || len(res.CNAMEs) == maxCNAMEs {
			return cur, res, &Error{Name: name, Type: dns.TypeCNAME, Kind: ErrTemporary, Rcode: -1, Server: a.server, Err: errCNAMEChain{}}
		}
		res.CNAMEs = append(res.CNAMEs, cur)
		if cur, err = fqdn(c.Target, dns.TypeCNAME); err != nil {
			return c.Target, res, err
		}
	}
}
