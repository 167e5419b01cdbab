// Package doctor is "mxedge doctor": the deliverability checks of the
// operator's DNS and certificates that the big receivers apply before
// they accept our mail (../shared/PRINCIPLES.md, identity and DNS
// hygiene). Every check answers ok, fail or warn (✓, ✗, !), or skip when
// it cannot run (a relay that is not running), with the exact record
// found and, unless ok, the record or fix to publish.
//
// The checks ask DNS through the relay's own resolver ([dns] servers),
// never the system's, so they see what the relay sees; the self-test
// talks SMTP to our own MX listener:
//   - the hostname has A/AAAA records; the PTR of each outbound address is
//     the hostname and the hostname resolves back to it (forward-confirmed
//     reverse DNS, RFC 8601 section 3 "iprev"); HELO is the hostname;
//   - each relay domain's MX records name this host or its pair partners,
//     all with equal preference (a lower-priority backup MX is a spam
//     hole), none a CNAME (RFC 2181 section 10.3) or an IP address;
//   - SPF (RFC 7208): one v=spf1 record, at most 10 DNS-querying terms
//     (section 4.6.4), our outbound addresses authorised by ip4/ip6, a or
//     mx terms (include: is counted, not followed);
//   - each [[dkim_sign]] key's selector record (RFC 6376 section 3.6.1,
//     RFC 8463 section 4.2): exactly one TXT record at
//     <selector>._domainkey.<domain> whose k= and p= are our public key,
//     an RSA key of at least 2048 bits (RFC 8301 section 3.2);
//   - DMARC (RFC 7489 section 6.3): a v=DMARC1 record with a p= policy;
//   - MTA-STS (RFC 8461, mtasts.go), optional: one "v=STSv1; id=" TXT
//     record at _mta-sts.<domain> (section 3.1), the policy served at
//     https://mta-sts.<domain>/.well-known/mta-sts.txt as section 3.3
//     wants it (valid certificate, status 200 without redirect,
//     text/plain, at most 64 KiB, valid syntax: the fetch of package
//     mtasts), in mode enforce, its mx patterns covering this host and
//     the domain's MX hosts (section 4.1). No record is a warning; a
//     record whose policy cannot be fetched or does not cover the MX
//     hosts fails: senders that know the policy would refuse to deliver;
//   - TLS-RPT (RFC 8460 section 3): one v=TLSRPTv1 record with rua=
//     mailto: or https: addresses;
//   - our certificates cover the hostname and do not expire within 14
//     days;
//   - DANE (RFC 7672, dane.go): the TLSA records at _25._tcp.<hostname>,
//     if published under DNSSEC, match every certificate chain that any
//     MX listener offering STARTTLS serves (the matching of package dane):
//     a sender may reach any of them;
//   - our outbound addresses are not listed on the configured DNSBLs
//     (dnsbl.go: each zone once, allow lists left out);
//   - the open-relay self-test (relaytest.go): every MX listener refuses
//     mail from outside to a foreign domain, also hidden in the percent
//     hack, a bang path, a quoted local part or a source route, and with
//     a relay domain as the sender; each listener in its own session.
package doctor

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/dane"
	"github.com/mxedge/mxedge/mtasts"
)

// DNS is what the checks ask: *resolver.Resolver, the relay's own
// resolver. Lookup's records are those of the name asked (an NXDOMAIN or
// NODATA error is no records); LookupTLSA's Result carries the AD bit.
type DNS interface {
	mtasts.Resolver
	dane.Resolver
}

// Input is what the checks are about (from the configuration).
type Input struct {
	Hostname     string
	Outbound     []netip.Addr // our outbound addresses
	RelayDomains []string
	Partners     []string // the other relays of the pair (MX host names)
	// Chains are the certificate chains the MX listeners that offer
	// STARTTLS serve, each distinct chain once.
	Chains []Chain
	// DNSBLs are the MX listeners' dnsbl_sites entries, e.g.
	// "zen.spamhaus.org=127.0.0.[2..11]*3" (dnsbl.go: each zone is
	// checked once).
	DNSBLs []string
	DKIM   []DKIMKey
	// HTTPS fetches MTA-STS policies; nil: mtasts.NewClient over the DNS
	// given to Run (system roots, port 443).
	HTTPS *http.Client
	// RelayTests are the MX listeners the open-relay self-test connects
	// to, each tested in its own session (a sender may reach any of
	// them); none: the test is skipped.
	RelayTests []RelayTest
	Now        time.Time
}

// Chain is a certificate chain our MX listeners serve (one tls_cert
// file).
type Chain struct {
	Certs []*x509.Certificate // leaf first
	// Listeners name the [[listener]]s that serve it ("mx
	// 192.0.2.1:25"); they label its checks when there are several
	// chains.
	Listeners []string
}

// DKIMKey is one configured signing key ([[dkim_sign]]).
type DKIMKey struct {
	Domain, Selector string
	Public           crypto.PublicKey // *rsa.PublicKey or ed25519.PublicKey
	// Record is the zone line to publish (submission.Key.ZoneLine), the
	// fix when the check fails.
	Record string
}

// Check is one result.
type Check struct {
	Name    string `json:"check"`
	Subject string `json:"subject"`
	// Status: "ok", "fail", "warn", or "skip" (the check could not run,
	// Found says why).
	Status string `json:"status"`
	Found  string `json:"found,omitempty"`
	Fix    string `json:"fix,omitempty"`
}

// Run runs every check and returns them in order.
func Run(ctx context.Context, d DNS, in Input) []Check {
	if in.Now.IsZero() {
		in.Now = time.Now()
	}
	if in.HTTPS == nil {
		in.HTTPS = mtasts.NewClient(mtasts.ClientOptions{Resolver: d})
	}
	c := &run{ctx: ctx, d: d, in: in}
	c.hostname()
	c.fcrdns()
	for _, dom := range in.RelayDomains {
		c.mx(dom)
		c.spf(dom)
		c.dmarc(dom)
		c.mtaSTS(dom)
		c.tlsrpt(dom)
	}
	for _, k := range in.DKIM {
		c.dkim(k)
	}
	c.cert()
	c.dane()
	c.dnsbl()
	c.relayTests()
	return c.out
}

type run struct {
	ctx context.Context
	d   DNS
	in  Input
	out []Check
}

func (c *run) add(name, subject string, ok bool, found, fix string) {
	st := "fail"
	if ok {
		st, fix = "ok", ""
	}
	c.out = append(c.out, Check{Name: name, Subject: subject, Status: st, Found: found, Fix: fix})
}

func (c *run) warn(name, subject, found, fix string) {
	c.out = append(c.out, Check{Name: name, Subject: subject, Status: "warn", Found: found, Fix: fix})
}

func (c *run) skip(name, subject, why string) {
	c.out = append(c.out, Check{Name: name, Subject: subject, Status: "skip", Found: why})
}

func fqdn(s string) string { return dns.Fqdn(strings.ToLower(s)) }

func (c *run) lookup(name string, qtype uint16) []dns.RR {
	rrs, _, err := c.d.Lookup(c.ctx, fqdn(name), qtype)
	if err != nil {
		return nil
	}
	return rrs
}

// addrs are the A and AAAA addresses of name.
func (c *run) addrs(name string) []netip.Addr {
	var out []netip.Addr
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		for _, rr := range c.lookup(name, t) {
			switch r := rr.(type) {
			case *dns.A:
				a, _ := netip.AddrFromSlice(r.A.To4())
				out = append(out, a)
			case *dns.AAAA:
				a, _ := netip.AddrFromSlice(r.AAAA)
				out = append(out, a)
			}
		}
	}
	return out
}

func (c *run) txt(name, prefix string) []string {
	var out []string
	for _, rr := range c.lookup(name, dns.TypeTXT) {
		if t, ok := rr.(*dns.TXT); ok {
			s := strings.Join(t.Txt, "")
			if strings.HasPrefix(strings.ToLower(s), strings.ToLower(prefix)) {
				out = append(out, s)
			}
		}
	}
	return out
}

func (c *run) hostname() {
	h := c.in.Hostname
	as := c.addrs(h)
	fix := fmt.Sprintf("%s. A <outbound IPv4> (and AAAA for IPv6)", h)
	if len(c.in.Outbound) > 0 {
		fix = fmt.Sprintf("%s. A %s", h, c.in.Outbound[0])
	}
	c.add("hostname A/AAAA", h, len(as) > 0, join(as), fix)
	c.add("HELO is the hostname", h, true, "EHLO "+h, "")
}

func (c *run) fcrdns() {
	h := fqdn(c.in.Hostname)
	for _, ip := range c.in.Outbound {
		rev, _ := dns.ReverseAddr(ip.String())
		var names []string
		for _, rr := range c.lookup(rev, dns.TypePTR) {
			if p, ok := rr.(*dns.PTR); ok {
				names = append(names, strings.ToLower(p.Ptr))
			}
		}
		ptrOK := len(names) == 1 && names[0] == h
		c.add("PTR is the hostname", ip.String(), ptrOK, strings.Join(names, " "),
			fmt.Sprintf("%s PTR %s (ask the owner of %s)", rev, h, ip))
		back := slices.Contains(c.addrs(h), ip)
		c.add("hostname resolves back (FCrDNS)", ip.String(), ptrOK && back, join(c.addrs(h)),
			fmt.Sprintf("%s A/AAAA %s", h, ip))
	}
}

func (c *run) mx(dom string) {
	var mxs []*dns.MX
	for _, rr := range c.lookup(dom, dns.TypeMX) {
		if m, ok := rr.(*dns.MX); ok {
			mxs = append(mxs, m)
		}
	}
	ours := append([]string{fqdn(c.in.Hostname)}, mapf(c.in.Partners, fqdn)...)
	var found []string
	for _, m := range mxs {
		found = append(found, fmt.Sprintf("MX %d %s", m.Preference, m.Mx))
	}
	want := make([]string, len(ours))
	for i, h := range ours {
		want[i] = fmt.Sprintf("%s. MX 10 %s", dom, h)
	}
	fix := strings.Join(want, "; ")
	if len(mxs) == 0 {
		c.add("MX points at this host", dom, false, "no MX records", fix)
		return
	}
	best := mxs[0].Preference
	for _, m := range mxs {
		best = min(best, m.Preference)
	}
	allOurs, equal := true, true
	for _, m := range mxs {
		host := strings.ToLower(m.Mx)
		if !slices.Contains(ours, host) {
			allOurs = false
		}
		if m.Preference != best {
			equal = false
		}
		if _, err := netip.ParseAddr(strings.TrimSuffix(host, ".")); err == nil {
			c.add("MX is a host name, not an IP", dom, false, host, fix)
		}
		for _, rr := range c.lookup(host, dns.TypeCNAME) {
			if cn, ok := rr.(*dns.CNAME); ok && strings.EqualFold(cn.Hdr.Name, host) {
				c.add("MX is not a CNAME", dom, false, host+" CNAME "+cn.Target, "point the MX at "+cn.Target)
			}
		}
	}
	c.add("MX points at this host and its partners", dom, allOurs && slices.ContainsFunc(mxs, func(m *dns.MX) bool {
		return strings.EqualFold(m.Mx, fqdn(c.in.Hostname))
	}), strings.Join(found, ", "), fix)
	if !equal {
		c.warn("MX preferences equal", dom, strings.Join(found, ", "),
			"give every MX the same preference (two equal MX 10, no backup MX 20)")
	} else {
		c.add("MX preferences equal", dom, true, strings.Join(found, ", "), "")
	}
}

func (c *run) spf(dom string) {
	recs := c.txt(dom, "v=spf1")
	ours := "ip4:<outbound IPv4>" // no -ip: a record that authorises nobody would be no fix
	if len(c.in.Outbound) > 0 {
		ours = strings.Join(mapf(c.in.Outbound, spfTerm), " ")
	}
	fix := fmt.Sprintf("%s. TXT \"v=spf1 %s -all\"", dom, ours)
	if len(recs) != 1 {
		c.add("SPF: one record", dom, false, fmt.Sprintf("%d records: %s", len(recs), strings.Join(recs, " | ")), fix)
		return
	}
	c.add("SPF: one record", dom, true, recs[0], "")
	terms := strings.Fields(recs[0])[1:]
	lookups := 0
	var authorised []netip.Addr
	for _, t := range terms {
		mech := strings.ToLower(strings.TrimLeft(t, "+-~?"))
		if t != "" && (t[0] == '-' || t[0] == '~' || t[0] == '?') {
			continue
		}
		name, arg, _ := strings.Cut(mech, ":")
		if n, _, ok := strings.Cut(name, "/"); ok {
			name = n
		}
		switch {
		case name == "include" || name == "a" || name == "mx" || name == "ptr" || name == "exists" || strings.HasPrefix(mech, "redirect="):
			lookups++
		}
		switch name {
		case "ip4", "ip6":
			if p, err := netip.ParsePrefix(arg); err == nil {
				authorised = append(authorised, filterIn(c.in.Outbound, p)...)
			} else if a, err := netip.ParseAddr(arg); err == nil {
				authorised = append(authorised, a)
			}
		case "a":
			target := dom
			if arg != "" {
				target = arg
			}
			authorised = append(authorised, c.addrs(target)...)
		case "mx":
			for _, rr := range c.lookup(dom, dns.TypeMX) {
				if m, ok := rr.(*dns.MX); ok {
					authorised = append(authorised, c.addrs(m.Mx)...)
				}
			}
		}
	}
	c.add("SPF: at most 10 DNS lookups", dom, lookups <= 10, fmt.Sprintf("%d lookups in the top record", lookups),
		"flatten includes into ip4:/ip6: terms")
	for _, ip := range c.in.Outbound {
		c.add("SPF authorises our outbound address", dom+" "+ip.String(), slices.Contains(authorised, ip), recs[0],
			fmt.Sprintf("add %s to the record: %s", spfTerm(ip), fix))
	}
}

func (c *run) dmarc(dom string) {
	recs := c.txt("_dmarc."+dom, "v=DMARC1")
	fix := fmt.Sprintf("_dmarc.%s. TXT \"v=DMARC1; p=quarantine; rua=mailto:dmarc@%s\"", dom, dom)
	ok := len(recs) == 1 && strings.Contains(strings.ReplaceAll(recs[0], " ", ""), ";p=")
	c.add("DMARC record", dom, ok, strings.Join(recs, " | "), fix)
}

// dkim checks k's selector record: one DKIM TXT record (v=DKIM1 first,
// or no v= tag) carrying our public key.
func (c *run) dkim(k DKIMKey) {
	name := k.Selector + "._domainkey." + k.Domain
	var recs []string
	for _, r := range c.txt(name, "") {
		if tags := dkimTags(r); tags != nil {
			recs = append(recs, r)
		}
	}
	found, ok := strings.Join(recs, " | "), false
	switch len(recs) {
	case 0:
		found = "no DKIM record at " + name
	case 1:
		var why string
		ok, why = dkimMatches(dkimTags(recs[0]), k.Public)
		if !ok {
			found = why + ": " + found
		}
	default:
		found = fmt.Sprintf("%d DKIM records: %s", len(recs), found)
	}
	c.add("DKIM selector record matches the key", name, ok, found, k.Record)
}

// dkimTags parses a DKIM key record's tag list; nil when it is not one
// (a v= tag other than DKIM1, or not first).
func dkimTags(r string) map[string]string {
	tags := map[string]string{}
	for i, part := range strings.Split(r, ";") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		v = strings.Join(strings.Fields(v), "")
		if k == "v" && (i != 0 || v != "DKIM1") {
			return nil
		}
		tags[k] = v
	}
	if _, ok := tags["p"]; !ok {
		return nil
	}
	return tags
}

// dkimMatches reports whether the record's key is pub, and if not why.
func dkimMatches(tags map[string]string, pub crypto.PublicKey) (bool, string) {
	if tags["p"] == "" {
		return false, "key revoked (empty p=)"
	}
	der, err := base64.StdEncoding.DecodeString(tags["p"])
	if err != nil {
		return false, "p= is not base64"
	}
	kt := tags["k"]
	if kt == "" {
		kt = "rsa"
	}
	switch kt {
	case "rsa":
		var got *rsa.PublicKey
		if k, err := x509.ParsePKIXPublicKey(der); err == nil {
			got, _ = k.(*rsa.PublicKey)
		} else if k, err := x509.ParsePKCS1PublicKey(der); err == nil {
			got = k
		}
		if got == nil {
			return false, "p= is not an RSA public key"
		}
		if bits := got.N.BitLen(); bits < 2048 {
			return false, fmt.Sprintf("RSA key of %d bits published (at least 2048)", bits)
		}
		if want, ok := pub.(*rsa.PublicKey); !ok || !got.Equal(want) {
			return false, "another key published"
		}
		return true, ""
	case "ed25519":
		if want, ok := pub.(ed25519.PublicKey); !ok || !want.Equal(ed25519.PublicKey(der)) {
			return false, "another key published"
		}
		return true, ""
	}
	return false, "unknown key type k=" + kt
}

func (c *run) cert() {
	if len(c.in.Chains) == 0 {
		c.add("certificate", c.in.Hostname, false, "no tls_cert on any listener",
			"set tls_cert/tls_key of the MX listener (a certificate for "+c.in.Hostname+")")
		return
	}
	for _, ch := range c.in.Chains {
		leaf := ch.Certs[0]
		subject := c.in.Hostname + c.chainLabel(ch)
		c.add("certificate covers the hostname", subject, leaf.VerifyHostname(c.in.Hostname) == nil,
			strings.Join(leaf.DNSNames, " "), "a certificate with "+c.in.Hostname+" in its subjectAltName")
		left := leaf.NotAfter.Sub(c.in.Now)
		c.add("certificate valid for 14 days", subject, left >= 14*24*time.Hour,
			"expires "+leaf.NotAfter.UTC().Format(time.DateOnly), "renew the certificate")
	}
}

// chainLabel tells the served chains apart in the checks' subjects when
// there are several: " (ECDSA certificate)", " (RSA certificate of mx
// [2001:db8::1]:25)"; "" for one.
func (c *run) chainLabel(ch Chain) string {
	if len(c.in.Chains) < 2 {
		return ""
	}
	label := ch.Certs[0].PublicKeyAlgorithm.String() + " certificate"
	if len(ch.Listeners) > 0 {
		label += " of " + strings.Join(ch.Listeners, ", ")
	}
	return " (" + label + ")"
}

func spfTerm(ip netip.Addr) string {
	if ip.Is4() {
		return "ip4:" + ip.String()
	}
	return "ip6:" + ip.String()
}

func filterIn(ips []netip.Addr, p netip.Prefix) []netip.Addr {
	var out []netip.Addr
	for _, ip := range ips {
		if p.Contains(ip) {
			out = append(out, ip)
		}
	}
	return out
}

func mapf[T any](in []T, f func(T) string) []string {
	out := make([]string, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

func join(as []netip.Addr) string { return strings.Join(mapf(as, netip.Addr.String), " ") }
