package doctor

import (
	"net/netip"
	"slices"

	"github.com/mxedge/mxedge/policy"
)

// dnsbl checks that our outbound addresses are not listed on the block
// lists of dnsblZones, each queried as the listeners query a client
// (policy.DNSBLName, RFC 5782 section 2.1 and 2.4). A listing is an
// answer in 127.0.0.0/8; an answer in 127.255.255.0/24 is the list's
// error code (Spamhaus refuses queries from public resolvers that way)
// and any other answer no listing either: a warning that the check could
// not tell.
func (c *run) dnsbl() {
	zones, bad := dnsblZones(c.in.DNSBLs)
	for _, err := range bad {
		c.add("dnsbl_sites entry", "", false, err.Error(), "fix the entry: zone[=filter][*weight]")
	}
	for _, ip := range c.in.Outbound {
		for _, zone := range zones {
			site := policy.DNSBLSite{Spec: zone, Domain: zone, Weight: 1} // the default filter
			var listed, codes []netip.Addr
			for _, a := range c.addrs(policy.DNSBLName(ip) + zone) {
				if site.Matches(a) {
					listed = append(listed, a)
				} else {
					codes = append(codes, a)
				}
			}
			check := "not on " + zone
			if len(listed) == 0 && len(codes) > 0 {
				c.warn(check, ip.String(), "answered "+join(codes)+": not a listing (an error code of the list, or a resolver that rewrites NXDOMAIN)",
					"query "+zone+" through a resolver of your own in [dns] (lists refuse queries from public resolvers)")
				continue
			}
			c.add(check, ip.String(), len(listed) == 0, join(listed),
				"ask "+zone+" for delisting (see its lookup page), then find why it was listed")
		}
	}
}

// dnsblZones are the block lists our outbound addresses are checked
// against: the zones the dnsbl_sites entries name (policy.DNSBLSite),
// each once however many entries of however many listeners name it,
// with whatever filter or weight: a listing on the zone is what other
// receivers see, whichever answers our own listeners count. A zone named
// only with negative weights is an allow list (DNSWL), where being
// listed is no fault: it is left out. The entries that do not parse are
// returned in bad (config validation refuses them first).
func dnsblZones(specs []string) (zones []string, bad []error) {
	for _, spec := range specs {
		s, err := policy.ParseDNSBLSite(spec)
		switch {
		case err != nil:
			bad = append(bad, err)
		case s.Weight > 0 && !slices.Contains(zones, s.Domain):
			zones = append(zones, s.Domain)
		}
	}
	return zones, bad
}
