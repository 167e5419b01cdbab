package doctor

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/mtasts"
)

// mtaSTS checks dom's MTA-STS record and policy (RFC 8461) with the
// uncached steps of package mtasts. Without a record MTA-STS is not
// published: a warning, since it is optional. Once the record is there,
// sending MTAs fetch the policy and (in enforce mode) refuse MX hosts it
// does not name, so everything after it must work: failures.
func (c *run) mtaSTS(dom string) {
	name := "_mta-sts." + dom
	recordFix := fmt.Sprintf("%s. TXT \"v=STSv1; id=%s\"", name, c.in.Now.UTC().Format("20060102150405"))
	_, rec, err := mtasts.LookupRecord(c.ctx, c.d, dom)
	switch {
	case errors.Is(err, mtasts.ErrNoRecord):
		c.warn("MTA-STS record", dom, "no v=STSv1 record at "+name+" (MTA-STS is optional)",
			c.policyFix(dom)+", then publish "+recordFix)
		return
	case err != nil:
		found := err.Error()
		if rec != "" {
			found += ": " + rec
		}
		c.add("MTA-STS record", dom, false, found, "exactly one record: "+recordFix)
		return
	}
	c.add("MTA-STS record", dom, true, rec, "")

	url := "https://mta-sts." + dom + "/.well-known/mta-sts.txt"
	p, err := mtasts.Fetch(c.ctx, c.in.HTTPS, dom)
	if err != nil {
		c.add("MTA-STS policy fetch", url, false, err.Error(), c.policyFix(dom))
		return
	}
	c.add("MTA-STS policy fetch", url, true,
		fmt.Sprintf("mode %s, max_age %d, mx %s", p.Mode, int64(p.MaxAge.Seconds()), strings.Join(p.MX, " ")), "")
	switch p.Mode {
	case mtasts.ModeEnforce:
		c.add("MTA-STS mode enforce", dom, true, "mode: enforce", "")
	case mtasts.ModeNone:
		c.warn("MTA-STS mode enforce", dom, "mode: none (the policy is withdrawn)",
			"\"mode: enforce\" in the policy and a new id: "+recordFix)
		return // mx patterns do not matter in mode none
	default:
		c.warn("MTA-STS mode enforce", dom, "mode: "+string(p.Mode)+" (senders only report failures)",
			"once the TLS reports are clean, \"mode: enforce\" in the policy and a new id: "+recordFix)
	}
	var missing []string
	for _, h := range c.mtaSTSHosts(dom) {
		if !p.Match(h) {
			missing = append(missing, h)
		}
	}
	found := "mx: " + strings.Join(p.MX, ", mx: ")
	if len(missing) > 0 {
		found += "; not covered: " + strings.Join(missing, ", ")
	}
	c.add("MTA-STS policy covers the MX hosts", dom, len(missing) == 0, found,
		fmt.Sprintf("add \"mx: %s\" to the policy, and a new id: %s", strings.Join(missing, "\", \"mx: "), recordFix))
}

// mtaSTSHosts are the host names an MTA-STS policy of dom must allow:
// this host and the domain's MX hosts (RFC 8461 section 4.1), lowercase
// without trailing dot.
func (c *run) mtaSTSHosts(dom string) []string {
	hosts := []string{strings.ToLower(strings.TrimSuffix(c.in.Hostname, "."))}
	for _, rr := range c.lookup(dom, dns.TypeMX) {
		if m, ok := rr.(*dns.MX); ok {
			if h := strings.ToLower(strings.TrimSuffix(m.Mx, ".")); h != "" && !slices.Contains(hosts, h) {
				hosts = append(hosts, h)
			}
		}
	}
	return hosts
}

// policyFix is what to serve as dom's MTA-STS policy (RFC 8461 section
// 3.2 and 3.3): our MX hosts, enforce, a week.
func (c *run) policyFix(dom string) string {
	lines := []string{"version: STSv1", "mode: enforce"}
	for _, h := range append([]string{c.in.Hostname}, c.in.Partners...) {
		lines = append(lines, "mx: "+strings.TrimSuffix(h, "."))
	}
	lines = append(lines, "max_age: 604800")
	return fmt.Sprintf("serve https://mta-sts.%s/.well-known/mta-sts.txt (a certificate for mta-sts.%s, status 200 without "+
		"redirect, Content-Type text/plain) with the lines %q", dom, dom, lines)
}

// tlsrpt checks dom's TLS-RPT record (RFC 8460 section 3): exactly one
// TXT record beginning "v=TLSRPTv1", with a rua= field of mailto: or
// https: addresses.
func (c *run) tlsrpt(dom string) {
	recs := c.txt("_smtp._tls."+dom, "v=TLSRPTv1")
	found := strings.Join(recs, " | ")
	ok := len(recs) == 1
	if ok {
		var why string
		if ok, why = tlsrptValid(recs[0]); !ok {
			found = why + ": " + found
		}
	}
	c.add("TLS-RPT record", dom, ok, found,
		fmt.Sprintf("_smtp._tls.%s. TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@%s\"", dom, dom))
}

// tlsrptValid reports whether a TLS-RPT record has version first and a
// rua of mailto: or https: URIs (RFC 8460 section 3), and if not why.
func tlsrptValid(rec string) (bool, string) {
	fields := strings.Split(rec, ";")
	if strings.TrimSpace(fields[0]) != "v=TLSRPTv1" {
		return false, "the record does not begin with v=TLSRPTv1;"
	}
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		if strings.TrimSpace(k) != "rua" {
			continue
		}
		uris := strings.Split(v, ",")
		for _, u := range uris {
			u = strings.ToLower(strings.TrimSpace(u))
			if !strings.HasPrefix(u, "mailto:") && !strings.HasPrefix(u, "https://") || len(u) <= len("mailto:") {
				return false, fmt.Sprintf("rua %q is not a mailto: or https: URI", strings.TrimSpace(u))
			}
		}
		return true, ""
	}
	return false, "no rua= (where reports go)"
}
