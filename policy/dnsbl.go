package policy

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/internal/domainname"
	"github.com/mxedge/mxedge/resolver"
)

// DNSBLSite is one entry of dnsbl_sites, in Postfix's
// postscreen_dnsbl_sites syntax: "domain[=filter][*weight]".
//
//	zen.spamhaus.org=127.0.0.[2..11]*3
//	bl.example*2
//	list.dnswl.org=127.0.[0..255].[1..3]*-5
//
// The filter is an IPv4 address whose octets may be ranges "[a..b]" or
// lists "[a;b;c]" (items of a list may be ranges); without one, any
// address in 127.0.0.0/8 counts except 127.255.255.0/24 (the error codes
// lists return, e.g. Spamhaus for queries through public resolvers). The
// weight (default 1) is added to the client's score when the list returns
// a matching address; a negative weight makes the entry an allowlist
// (DNSWL).
type DNSBLSite struct {
	Spec   string // as configured, for logs
	Domain string // the list's zone, lowercase A-labels
	Weight int
	filter *[4][256]bool // nil: the default filter
}

// ParseDNSBLSite parses one dnsbl_sites entry.
func ParseDNSBLSite(spec string) (DNSBLSite, error) {
	s := DNSBLSite{Spec: spec, Weight: 1}
	rest := spec
	if i := strings.LastIndexByte(rest, '*'); i >= 0 {
		w, err := strconv.Atoi(rest[i+1:])
		if err != nil {
			return s, fmt.Errorf("%q: weight %q is not an integer", spec, rest[i+1:])
		}
		s.Weight, rest = w, rest[:i]
	}
	domain, filter, hasFilter := strings.Cut(rest, "=")
	d, err := domainname.Normalize(domain, domainname.Options{Hostname: true})
	if err != nil {
		return s, fmt.Errorf("%q: list %q: %v", spec, domain, err)
	}
	s.Domain = d
	if hasFilter {
		f, err := parseDNSBLFilter(filter)
		if err != nil {
			return s, fmt.Errorf("%q: filter %q: %v", spec, filter, err)
		}
		s.filter = f
	}
	if s.Weight == 0 {
		return s, fmt.Errorf("%q: weight 0 counts nothing", spec)
	}
	return s, nil
}

// parseDNSBLFilter parses "127.0.0.[2..11]", "127.0.0.[2;4;6..8]".
func parseDNSBLFilter(f string) (*[4][256]bool, error) {
	var out [4][256]bool
	octets := splitOctets(f)
	if len(octets) != 4 {
		return nil, fmt.Errorf("not four octets")
	}
	for i, o := range octets {
		items := []string{o}
		if strings.HasPrefix(o, "[") && strings.HasSuffix(o, "]") {
			items = strings.Split(o[1:len(o)-1], ";")
		}
		for _, it := range items {
			lo, hi, isRange := strings.Cut(it, "..")
			if !isRange {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil || a < 0 || b > 255 || a > b {
				return nil, fmt.Errorf("octet %d: %q is not a number, range [a..b] or list [a;b] of 0-255", i+1, o)
			}
			for v := a; v <= b; v++ {
				out[i][v] = true
			}
		}
	}
	return &out, nil
}

// splitOctets splits a filter at the dots outside brackets.
func splitOctets(f string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(f); i++ {
		switch f[i] {
		case '[':
			depth++
		case ']':
			depth--
		case '.':
			if depth == 0 {
				out = append(out, f[start:i])
				start = i + 1
			}
		}
	}
	return append(out, f[start:])
}

// Matches reports whether a list's answer a counts for this entry: it
// passes the filter, or without one it is in 127.0.0.0/8 but not an
// error code 127.255.255.x.
func (s DNSBLSite) Matches(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	b := a.As4()
	if s.filter == nil {
		return b[0] == 127 && !(b[1] == 255 && b[2] == 255)
	}
	for i := range b {
		if !s.filter[i][b[i]] {
			return false
		}
	}
	return true
}

// DNSBL is the weighted DNS block and allow list check (Postfix
// postscreen_dnsbl_sites, postscreen_dnsbl_threshold). At connect it
// queries every list at once (each list's zone once, however many entries
// name it), each query within Timeout, and returns a Later; at the first
// RCPT the client's score is the sum of the weights of the entries whose
// list answered a matching address. At or above Threshold the client is
// refused with "554 5.7.1 Service unavailable; client [ip] blocked using
// <list>", held and answered to every RCPT (postscreen's "enforce"), the
// list named being the matching entry of the greatest weight. A list that
// does not answer in time, or fails, counts 0. IPv4 clients are looked up
// as reversed octets, IPv6 clients as reversed nibbles (RFC 5782 section
// 2.4); the answers are cached for their TTL by the resolver. Allowlisted
// clients never get here (the allowlist ends the connect stage first).
type DNSBL struct {
	Sites     []DNSBLSite
	Threshold int
	Timeout   time.Duration
	DNS       DNS
}

// Name implements Check.
func (*DNSBL) Name() string { return "dnsbl" }

// dnsblAnswer is one zone's answer: the addresses returned, or why none.
type dnsblAnswer struct {
	zone  string
	addrs []netip.Addr
	err   error
}

// CheckConnect implements ConnectCheck: the queries start now.
func (b *DNSBL) CheckConnect(ctx context.Context, c *Conn) Result {
	if len(b.Sites) == 0 || !c.IP.IsValid() {
		return Result{}
	}
	name := DNSBLName(c.IP)
	var zones []string
	for _, s := range b.Sites {
		if !contains(zones, s.Domain) {
			zones = append(zones, s.Domain)
		}
	}
	answers := make(chan dnsblAnswer, len(zones))
	for _, z := range zones {
		go func() {
			qctx, cancel := context.WithTimeout(ctx, b.Timeout)
			defer cancel()
			rrs, _, err := b.DNS.Lookup(qctx, name+z, dns.TypeA)
			a := dnsblAnswer{zone: z, err: err}
			for _, rr := range rrs {
				if ar, ok := rr.(*dns.A); ok {
					if ip, ok := netip.AddrFromSlice(ar.A.To4()); ok {
						a.addrs = append(a.addrs, ip)
					}
				}
			}
			answers <- a
		}()
	}
	return Result{Later: func(ctx context.Context) Result {
		got := map[string]dnsblAnswer{}
		for range zones {
			select {
			case a := <-answers:
				got[a.zone] = a
			case <-ctx.Done():
				return b.score(c, got) // the rest count 0
			}
		}
		return b.score(c, got)
	}}
}

// score adds up the weights of the matching entries and decides.
func (b *DNSBL) score(c *Conn, got map[string]dnsblAnswer) Result {
	score, top, topWeight := 0, "", 0
	var hits []string
	for _, s := range b.Sites {
		a, ok := got[s.Domain]
		switch {
		case !ok:
			hits = append(hits, s.Domain+"=timeout")
			continue
		case a.err != nil && !resolver.IsNotFound(a.err):
			hits = append(hits, s.Domain+"=error")
			continue
		}
		for _, ip := range a.addrs {
			if s.Matches(ip) {
				score += s.Weight
				if s.Weight < 0 {
					c.DNSWL = true
				}
				hits = append(hits, s.Domain+"="+ip.String()+"*"+strconv.Itoa(s.Weight))
				if s.Weight > topWeight {
					top, topWeight = s.Domain, s.Weight
				}
				break
			}
		}
	}
	reason := "score=" + strconv.Itoa(score)
	if len(hits) > 0 {
		reason += " " + strings.Join(hits, " ")
	}
	if score >= b.Threshold && top != "" {
		return Result{Reply: replyDNSBL(c.IP, top), Reason: reason}
	}
	return Result{Reason: reason} // no opinion; the reason is for tests
}

// DNSBLName is the query name of ip below a list's zone, with a trailing
// dot: "2.0.0.127." for 127.0.0.2, 32 nibbles for IPv6 (RFC 5782 section
// 2.1, 2.4).
func DNSBLName(ip netip.Addr) string {
	arpa, _ := dns.ReverseAddr(ip.Unmap().String())
	arpa = strings.TrimSuffix(arpa, "in-addr.arpa.")
	return strings.TrimSuffix(arpa, "ip6.arpa.")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
