package mxroute

import (
	"cmp"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/resolver"
)

// hostName is a DNS name as mxroute uses it: lowercase, no trailing dot.
func hostName(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// canonicalDomain follows a CNAME of domain. RFC 5321 section 5.1: "If a
// CNAME record is found, the resulting name is processed as if it were
// the initial name." A domain that does not exist is returned as is: the
// MX lookup decides. authentic reports the CNAME answers' AD bit.
func canonicalDomain(ctx context.Context, r Resolver, domain string) (canon string, authentic bool, err error) {
	name, res, err := r.LookupCNAME(ctx, domain)
	if err != nil && !resolver.IsNotFound(err) {
		if errors.Is(err, resolver.ErrInvalid) {
			return "", false, permanent("5.1.2", "invalid destination domain "+domain, err)
		}
		return "", false, temporary("4.4.3", "DNS lookup for "+domain+" failed, will retry", err)
	}
	if name = hostName(name); name == "" {
		name = domain
	}
	return name, res.Authentic, nil
}

// lookupMX returns the MX records of name, none if it has none (NODATA:
// the implicit MX of RFC 5321 section 5.1). RFC 5321 section 5.1: "If a
// non-existent domain error is returned, this situation MUST be reported
// as an error" (permanent), and "If a temporary error is returned, the
// message MUST be queued and retried later": a lookup failure is never a
// reason to use the address records instead, as MX records may exist.
func lookupMX(ctx context.Context, r Resolver, name string) (mxs []*dns.MX, authentic bool, err error) {
	mxs, res, err := r.LookupMX(ctx, name)
	switch {
	case err == nil:
		return mxs, res.Authentic, nil
	case errors.Is(err, resolver.ErrNoRecords):
		return nil, res.Authentic, nil
	case errors.Is(err, resolver.ErrNotExist):
		return nil, false, permanent("5.1.2", "domain "+name+" does not exist", err)
	case errors.Is(err, resolver.ErrInvalid):
		return nil, false, permanent("5.1.2", "invalid destination domain "+name, err)
	default:
		return nil, false, temporary("4.4.3", "MX lookup for "+name+" failed, will retry", err)
	}
}

// isNullMX reports whether the MX records say the domain accepts no mail.
// RFC 7505 section 3: a null MX is a single MX record with preference 0
// and the root (".") as target, and a sender MUST NOT try to deliver. Any
// MX set whose targets are all the root is read the same way; a root
// target among real ones is a misconfiguration that orderMX skips.
func isNullMX(mxs []*dns.MX) bool {
	for _, mx := range mxs {
		if hostName(mx.Mx) != "" {
			return false
		}
	}
	return len(mxs) > 0
}

// orderMX returns the MX hosts, most preferred (lowest preference value)
// first, each host once. RFC 5321 section 5.1: "If there are multiple
// destinations with the same preference and there is no clear reason to
// favor one (...), then the sender-SMTP MUST randomize them to spread the
// load across multiple mail exchangers for a specific organization."
// miekg/dns keeps the server's order, so the shuffle is here: a uniform
// shuffle, then a stable sort by preference.
func orderMX(mxs []*dns.MX, rng *rand.Rand) []Host {
	hosts := make([]Host, 0, len(mxs))
	for _, mx := range mxs {
		if name := hostName(mx.Mx); name != "" { // RFC 7505: "." is no host
			hosts = append(hosts, Host{Name: name, Pref: mx.Preference})
		}
	}
	swap := func(i, j int) { hosts[i], hosts[j] = hosts[j], hosts[i] }
	if rng != nil {
		rng.Shuffle(len(hosts), swap)
	} else {
		rand.Shuffle(len(hosts), swap)
	}
	slices.SortStableFunc(hosts, func(a, b Host) int { return cmp.Compare(a.Pref, b.Pref) })
	seen := map[string]bool{}
	return slices.DeleteFunc(hosts, func(h Host) bool {
		dup := seen[h.Name]
		seen[h.Name] = true
		return dup // a host listed twice keeps its best preference
	})
}

// implicitMX is the route of a domain without MX records. RFC 5321
// section 5.1: "If an empty list of MXs is returned, the address is
// treated as if it was associated with an implicit MX RR, with a
// preference of 0, pointing to that host."
func implicitMX(domain string) []Host {
	return []Host{{Name: domain, Pref: 0}}
}

// resolveHosts looks up the addresses of every host. RFC 5321 section
// 5.1: an MX host name "MUST return at least one address record (e.g., A
// or AAAA RR)"; a CNAME on the way is followed, as other MTAs do. A host that does not resolve is kept
// without addresses; tempErr is the first temporary failure, so that
// keepResolved can tell "try later" from "no address".
func resolveHosts(ctx context.Context, r Resolver, hosts []Host) (_ []Host, tempErr error) {
	for i := range hosts {
		if ctx.Err() != nil {
			return hosts, ctx.Err()
		}
		ips, res, err := r.LookupIP(ctx, hosts[i].Name)
		if err != nil {
			if resolver.IsTemporary(err) && tempErr == nil {
				tempErr = err
			}
			continue
		}
		hosts[i].Addrs, hosts[i].Authentic = ips, res.Authentic
	}
	return hosts, tempErr
}

// dropSelf removes this relay from the hosts, and every host not
// preferred to it, else mail would loop between MX hosts. RFC 5321
// section 5.1: "The relay host MUST then inspect the list for any of the
// names or addresses by which it might be known in mail transactions. If
// a matching record is found, all records at that preference level and
// higher-numbered ones MUST be discarded from consideration. If there are
// no records left at that point, it is an error condition, and the
// message MUST be returned as undeliverable": this relay is the best MX,
// mail for the domain loops back to it (5.4.6, Postfix's wording). hosts
// are sorted by preference.
func dropSelf(hosts []Host, self func(string, net.IP) bool, domain string) ([]Host, error) {
	if self == nil {
		return hosts, nil
	}
	for _, h := range hosts {
		if !isSelf(h, self) {
			continue
		}
		keep := slices.IndexFunc(hosts, func(o Host) bool { return o.Pref >= h.Pref })
		if keep == 0 {
			return nil, permanent("5.4.6", "mail for "+domain+" loops back to myself", nil)
		}
		return hosts[:keep], nil
	}
	return hosts, nil
}

// isSelf reports whether h's name or one of its addresses is this relay.
func isSelf(h Host, self func(string, net.IP) bool) bool {
	if self(h.Name, nil) {
		return true
	}
	return slices.ContainsFunc(h.Addrs, func(ip net.IP) bool { return self(h.Name, ip) })
}

// keepResolved removes the hosts without addresses. If none is left, the
// failure is temporary if a lookup failed temporarily, else permanent: no
// address for the domain itself (implicit MX, 5.1.2) or for any of its MX
// hosts (5.4.4).
func keepResolved(hosts []Host, implicit bool, domain string, tempErr error) ([]Host, error) {
	hosts = slices.DeleteFunc(hosts, func(h Host) bool { return len(h.Addrs) == 0 })
	switch {
	case len(hosts) > 0:
		return hosts, nil
	case tempErr != nil:
		return nil, temporary("4.4.3", "address lookup for the mail hosts of "+domain+" failed, will retry", tempErr)
	case implicit:
		return nil, permanent("5.1.2", "domain "+domain+" has no MX and no address records", nil)
	default:
		return nil, permanent("5.4.4", "no MX host of "+domain+" has an address", nil)
	}
}

// limitAddrs keeps at most max addresses (0: DefaultMaxAddrs, negative: no
// limit), all hosts together, in preference order, like Postfix's
// smtp_mx_address_limit: a destination with many addresses does not hold
// a delivery attempt for long. Hosts left without addresses go.
func limitAddrs(hosts []Host, max int) []Host {
	if max == 0 {
		max = DefaultMaxAddrs
	}
	if max < 0 {
		return hosts
	}
	var out []Host
	for _, h := range hosts {
		if max == 0 {
			break
		}
		h.Addrs = h.Addrs[:min(len(h.Addrs), max)]
		max -= len(h.Addrs)
		out = append(out, h)
	}
	return out
}
