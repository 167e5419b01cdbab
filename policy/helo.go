package policy

import (
	"context"
	"net/netip"
	"strings"
	"time"

	"github.com/mxedge/mxedge/internal/domainname"
	"github.com/mxedge/mxedge/resolver"
)

// Helo checks the HELO/EHLO argument (Postfix
// reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname,
// reject_unknown_helo_hostname, and the common check_helo_access of one's
// own names). A refusal is the reply to that HELO/EHLO; the client may try
// another. Trusted clients are not checked. In order:
//
//   - Invalid: neither a syntactically valid host name (letters, digits,
//     hyphens, dots; an IDN is converted) with at least one dot, nor an
//     address literal ("[192.0.2.1]", "[IPv6:2001:db8::1]", RFC 5321
//     section 4.1.3): "501 5.5.2 Invalid name" for bad syntax (also a bare
//     IP address), "504 5.5.2 need fully-qualified hostname" for a name
//     without a dot.
//   - IsUs: the name is this relay's Hostname or one of Domains (the relay
//     domains), or the literal of the address the client connected to:
//     "550 5.7.1 ... you are not me".
//   - Unknown: the name has no A or AAAA record: 550 5.7.1 "Host not
//     found" (450 4.7.1 under defer, or when the lookup failed
//     temporarily). Address literals are not looked up.
type Helo struct {
	Invalid Action
	IsUs    Action
	Unknown Action

	Hostname string          // this relay's name, normal form
	Domains  map[string]bool // the relay domains, normal form
	DNS      DNS             // for Unknown
	Timeout  time.Duration   // bounds the lookup of Unknown
}

// Name implements Check.
func (*Helo) Name() string { return "helo" }

// CheckHelo implements HeloCheck.
func (h *Helo) CheckHelo(ctx context.Context, c *Conn) Result {
	if c.Trusted {
		return Result{}
	}
	arg := c.Helo
	shown := printable(arg, 64)
	if strings.HasPrefix(arg, "[") {
		ip, ok := addressLiteral(arg)
		if !ok {
			return h.Invalid.decide(false, replyHelo(501, [3]int{5, 5, 2}, shown, "Invalid ip address"), replyHelo(450, [3]int{4, 5, 2}, shown, "Invalid ip address"), "helo literal invalid")
		}
		if ip == c.Local.Addr().Unmap() {
			return h.IsUs.decide(false, replyHeloIsUs(550, shown), replyHeloIsUs(450, shown), "helo is our address")
		}
		return Result{}
	}
	name, err := domainname.Normalize(arg, domainname.Options{Hostname: true})
	switch {
	case err != nil:
		return h.Invalid.decide(false, replyHelo(501, [3]int{5, 5, 2}, shown, "Invalid name"), replyHelo(450, [3]int{4, 5, 2}, shown, "Invalid name"), "helo invalid: "+err.Error())
	case !strings.Contains(name, "."):
		return h.Invalid.decide(false, replyHelo(504, [3]int{5, 5, 2}, shown, "need fully-qualified hostname"), replyHelo(450, [3]int{4, 5, 2}, shown, "need fully-qualified hostname"), "helo not fully qualified")
	}
	if name == h.Hostname || h.Domains[name] {
		return h.IsUs.decide(false, replyHeloIsUs(550, shown), replyHeloIsUs(450, shown), "helo is us")
	}
	if h.Unknown == ActionOff || h.DNS == nil {
		return Result{}
	}
	if h.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.Timeout)
		defer cancel()
	}
	ips, _, err := h.DNS.LookupIP(ctx, name)
	switch {
	case len(ips) > 0:
		return Result{}
	case resolver.IsNotFound(err):
		return h.Unknown.decide(false, replyHelo(550, [3]int{5, 7, 1}, shown, "Host not found"), replyHelo(450, [3]int{4, 7, 1}, shown, "Host not found"), "helo has no address")
	}
	return h.Unknown.decide(true, nil, replyHelo(450, [3]int{4, 7, 1}, shown, "Host not found"), "helo lookup failed")
}

// addressLiteral parses an RFC 5321 address literal: "[192.0.2.1]" or
// "[IPv6:2001:db8::1]".
func addressLiteral(s string) (netip.Addr, bool) {
	if !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") {
		return netip.Addr{}, false
	}
	s = s[1 : len(s)-1]
	v6 := false
	if len(s) > 5 && strings.EqualFold(s[:5], "IPv6:") {
		s, v6 = s[5:], true
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Is6() != v6 || ip.Zone() != "" {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}
