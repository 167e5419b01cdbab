package policy

import (
	"context"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/resolver"
)

// maxPTRNames bounds the PTR names of a client that are forward-checked.
const maxPTRNames = 5

// LookupReverse finds the client's reverse DNS name and checks it the
// way RFC 8601 section 3 (iprev) and Postfix do: the PTR records of ip,
// then the addresses of each name (at most 5); a name one of whose
// addresses is ip passes (forward-confirmed reverse DNS, FCrDNS). No PTR
// record (NXDOMAIN or no data) is ReverseNone; PTR names of which none
// resolves back to ip are ReverseMismatch, unless a forward lookup failed
// temporarily; a temporary failure of the PTR lookup, or of a forward
// lookup that might have confirmed, is ReverseTempError. ctx bounds it
// all; the listener starts it when it accepts the connection.
func LookupReverse(ctx context.Context, r DNS, ip netip.Addr) Reverse {
	ip = ip.Unmap()
	arpa, err := dns.ReverseAddr(ip.String())
	if err != nil {
		return Reverse{Status: ReverseNone}
	}
	rrs, _, err := r.Lookup(ctx, arpa, dns.TypePTR)
	switch {
	case resolver.IsNotFound(err):
		return Reverse{Status: ReverseNone}
	case err != nil:
		return Reverse{Status: ReverseTempError}
	}
	var names []string
	for _, rr := range rrs {
		if p, ok := rr.(*dns.PTR); ok && len(names) < maxPTRNames {
			names = append(names, strings.ToLower(strings.TrimSuffix(p.Ptr, ".")))
		}
	}
	if len(names) == 0 {
		return Reverse{Status: ReverseNone}
	}
	temp := false
	for _, name := range names {
		ips, _, err := r.LookupIP(ctx, name)
		if err != nil && !resolver.IsNotFound(err) {
			temp = true
		}
		for _, a := range ips {
			if fa, ok := netip.AddrFromSlice(a); ok && fa.Unmap() == ip {
				return Reverse{Name: name, Status: ReversePass}
			}
		}
	}
	if temp {
		return Reverse{Name: names[0], Status: ReverseTempError}
	}
	return Reverse{Name: names[0], Status: ReverseMismatch}
}

// Iprev refuses clients by their reverse DNS (Postfix
// reject_unknown_reverse_client_hostname and
// reject_unknown_client_hostname), from the lookup the listener started
// at connect; it decides at the first RCPT (Later) and its refusals are
// held there, so a client's HELO, sender and recipient are logged.
//
//   - NoPTR: the client has no PTR record (550 5.7.25 under reject; 450
//     4.7.25 under defer, and always when the lookup failed temporarily).
//   - Mismatch: PTR names exist but none resolves back to the client (550
//     or 450 5.7.25 / 4.7.25).
type Iprev struct {
	NoPTR    Action
	Mismatch Action
}

// Name implements Check.
func (*Iprev) Name() string { return "iprev" }

// CheckConnect implements ConnectCheck.
func (ip *Iprev) CheckConnect(_ context.Context, c *Conn) Result {
	if ip.NoPTR == ActionOff && ip.Mismatch == ActionOff {
		return Result{}
	}
	return Result{Later: func(context.Context) Result {
		rev := c.Reverse
		switch rev.Status {
		case ReverseNone:
			return ip.NoPTR.decide(false, replyNoPTR(550, c.IP), replyNoPTR(450, c.IP), "ptr=none")
		case ReverseTempError:
			// Either check might have matched: the stricter action.
			return stricter(ip.NoPTR, ip.Mismatch).decide(true, nil, replyNoPTR(450, c.IP), "ptr=temperror "+rev.Name)
		case ReverseMismatch:
			return ip.Mismatch.decide(false, replyNotConfirmed(550, c.IP), replyNotConfirmed(450, c.IP), "ptr="+rev.Name+" not forward-confirmed")
		}
		return Result{}
	}}
}
