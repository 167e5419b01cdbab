package resolver

import (
	"context"
	"net"
	"strings"

	"github.com/miekg/dns"
)

// Lookuper is the part of a Resolver that NetStyle needs (a fake in tests
// of the callers).
type Lookuper interface {
	Lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, Result, error)
	LookupIP(ctx context.Context, host string) ([]net.IP, Result, error)
}

var _ Lookuper = (*Resolver)(nil)

// LookupTXT returns name's TXT records, each with its character-strings
// joined (RFC 7208 section 3.3, RFC 6376 section 3.6.2.2: a record split
// into several strings is one text).
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, Result, error) {
	return lookupTXT(ctx, r, name)
}

func lookupTXT(ctx context.Context, l Lookuper, name string) ([]string, Result, error) {
	rrs, res, err := l.Lookup(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, res, err
	}
	var out []string
	for _, rr := range rrs {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	return out, res, nil
}

// NetStyle adapts a Resolver to the method set of Go's net.Resolver
// (LookupTXT, LookupMX, LookupIPAddr, LookupAddr), for libraries that take
// such a resolver (blitiri.com.ar/go/spf's DNSResolver). Its errors are
// *net.DNSError, with IsNotFound for NXDOMAIN and NODATA and IsTemporary
// for a temporary failure, as those libraries test them; the *Error is
// kept in its Err text.
type NetStyle struct{ DNS Lookuper }

func netError(name string, err error) error {
	return &net.DNSError{Err: err.Error(), Name: name, IsNotFound: IsNotFound(err), IsTemporary: IsTemporary(err)}
}

// LookupTXT implements the net.Resolver method.
func (n NetStyle) LookupTXT(ctx context.Context, name string) ([]string, error) {
	txt, _, err := lookupTXT(ctx, n.DNS, name)
	if err != nil {
		return nil, netError(name, err)
	}
	return txt, nil
}

// LookupMX implements the net.Resolver method (records in answer order).
func (n NetStyle) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	rrs, _, err := n.DNS.Lookup(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, netError(name, err)
	}
	var out []*net.MX
	for _, rr := range rrs {
		if mx, ok := rr.(*dns.MX); ok {
			out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
		}
	}
	return out, nil
}

// LookupIPAddr implements the net.Resolver method.
func (n NetStyle) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	ips, _, err := n.DNS.LookupIP(ctx, host)
	if err != nil {
		return nil, netError(host, err)
	}
	out := make([]net.IPAddr, len(ips))
	for i, ip := range ips {
		out[i] = net.IPAddr{IP: ip}
	}
	return out, nil
}

// LookupAddr implements the net.Resolver method: the PTR names of addr.
func (n NetStyle) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	rev, err := dns.ReverseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: err.Error(), Name: addr}
	}
	rrs, _, err := n.DNS.Lookup(ctx, rev, dns.TypePTR)
	if err != nil {
		return nil, netError(addr, err)
	}
	var out []string
	for _, rr := range rrs {
		if p, ok := rr.(*dns.PTR); ok {
			out = append(out, p.Ptr)
		}
	}
	return out, nil
}
