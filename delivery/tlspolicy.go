package delivery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/internal/tlsname"
)

// TLS policy. Each address tried gets a tlsPlan: what TLS it must have
// and how its certificate is checked. The levels are Postfix's
// smtp_tls_security_level names, configured per domain in [tls_policy]
// with delivery.default_tls_policy for the rest:
//
//	none     no STARTTLS
//	may      STARTTLS if offered, certificate not checked; a failed
//	         handshake is retried in plaintext on a new connection
//	encrypt  TLS required, certificate not checked
//	verify   TLS required, certificate valid (PKIX) for the host name
//	dane     TLS required, certificate matching the host's TLSA records
//
// What the domain publishes raises "may", "encrypt" and "verify" (never
// "none", which an operator sets for a broken receiver):
//
//   - DANE first (RFC 7672 section 1.3: DANE takes precedence over
//     MTA-STS, RFC 8461 section 2): if the MX lookup and the host's
//     address lookup were DNSSEC-validated and the host has usable TLSA
//     records, the plan is "dane". Records that exist but none usable
//     mean mandatory TLS without authentication (RFC 7672 section 2.2:
//     "encrypt"). A failed TLSA lookup excludes the host (no downgrade).
//   - Else MTA-STS (RFC 8461 section 5): "enforce": MX hosts not
//     matching the policy are not used, and a matching host's certificate
//     must be valid for its name ("verify"); "testing": the same checks,
//     failures logged only.
//
// A policy failure defers with 4.7.4 (TLS required but not offered or
// refused: "security features not supported", RFC 3463) or 4.7.5
// (handshake or certificate failure, no usable TLSA records, MX host not
// in the MTA-STS policy: "cryptographic failure"), and the walk moves on
// to the next address.

// Levels of tls policy.
const (
	levelNone    = "none"
	levelMay     = "may"
	levelEncrypt = "encrypt"
	levelVerify  = "verify"
	levelDANE    = "dane"
)

// tlsPlan is the TLS an address must get.
type tlsPlan struct {
	level string
	// policy names the policy in the log: the level, "mta-sts" (enforce,
	// level verify), "smarthost".
	policy string
	// server is the name sent as SNI and checked by "verify": the MX host
	// name, or the host of a route or smarthost.
	server string
	// names are DANE's reference identifiers.
	names []string
	tlsa  []*dns.TLSA
	dane  DANE // checks tlsa (level dane)
	// stsTesting: MTA-STS "testing": check as "verify" would, log only.
	stsTesting bool
	stsID      string
	// fallback: the handshake failed under "may"; this is the plaintext
	// retry (for the log).
	fallback bool
}

// required reports whether the plan fails without TLS.
func (p tlsPlan) required() bool {
	return p.level == levelEncrypt || p.level == levelVerify || p.level == levelDANE
}

// cacheKey extends an address into the key of its cached connections: a
// session made under one plan is reused only under an equally strict one.
func (p tlsPlan) cacheKey(addr string) string {
	if p.level == levelNone || p.level == levelMay {
		return addr
	}
	return addr + " " + p.level + ":" + p.server
}

// describe is the log form of the TLS a session got under p: "tls=none"
// or "tls=TLSv1.3/TLS_AES_128_GCM_SHA256", then the policy.
func (p tlsPlan) describe(cs *tls.ConnectionState) string {
	s := "tls=none"
	if cs != nil {
		s = "tls=" + tlsname.Version(cs.Version) + "/" + tls.CipherSuiteName(cs.CipherSuite)
	}
	s += " policy=" + p.policy
	if p.stsTesting {
		s += "+mta-sts-testing"
	}
	if p.fallback {
		s += " (handshake failed, plaintext)"
	}
	return s
}

// levelFor returns the level of domain under p.
func (p *TLSPolicy) levelFor(domain string) string {
	if l, ok := p.Domains[domain]; ok {
		return l
	}
	return p.Default
}

// levelFor returns the configured level of domain.
func (d *Deliverer) levelFor(domain string) string { return d.tls.Load().levelFor(domain) }

// stsLoader returns a function that fetches domain's MTA-STS policy once,
// when first called (only hosts without DANE need it), and then returns
// the same: the policy if one applies to level, or nil; a failure if the
// policy in force is unknown now (the STS contract: defer, never guess
// "no policy").
func (d *Deliverer) stsLoader(ctx context.Context, tp *TLSPolicy, domain, msgID string) func() (*STSPolicy, *failure) {
	var p *STSPolicy
	var f *failure
	level := tp.levelFor(domain)
	done := tp.STS == nil || level == levelNone || level == levelDANE
	return func() (*STSPolicy, *failure) {
		if done {
			return p, f
		}
		done = true
		pol, err := tp.STS.Policy(ctx, domain)
		switch {
		case err != nil:
			d.log.Warn("MTA-STS policy unknown", "queue_id", msgID, "domain", domain, "err", err)
			f = &failure{enh: "4.4.3", text: "MTA-STS policy of " + domain + " unknown (lookup failed), will retry"}
		case pol != nil && pol.Mode != "none" && pol.Match != nil:
			p = pol
		}
		return p, f
	}
}

// mxPlan returns the plan of MX host (authentic: its MX and address
// lookups were DNSSEC-validated) for domain under tp, or why it must not
// be used.
func (d *Deliverer) mxPlan(ctx context.Context, tp *TLSPolicy, domain, host string, authentic bool, getSTS func() (*STSPolicy, *failure), msgID string) (tlsPlan, *failure) {
	level := tp.levelFor(domain)
	p := tlsPlan{level: level, policy: level, server: host, names: []string{host, domain}}
	if level == levelNone {
		return p, nil
	}
	if tp.DANE != nil && authentic {
		recs, err := tp.DANE.TLSA(ctx, host, uint16(d.mxPort))
		if err != nil {
			return p, &failure{enh: "4.7.5", text: "DANE TLSA lookup for " + host + " failed, will retry"}
		}
		if len(recs) > 0 {
			if usable := tp.DANE.Usable(recs); len(usable) > 0 {
				p.level, p.policy, p.tlsa, p.dane = levelDANE, levelDANE, usable, tp.DANE
				return p, nil
			}
			// RFC 7672 section 2.2: TLSA records, none usable:
			// mandatory TLS without authentication.
			if level == levelMay || level == levelDANE {
				p.level, p.policy = levelEncrypt, "dane-unusable"
			}
			return p, nil
		}
	}
	if level == levelDANE {
		if tp.DANE == nil {
			return p, &failure{enh: "4.7.5", text: "tls policy dane for " + domain + ", but DANE is not available"}
		}
		return p, &failure{enh: "4.7.5", text: "tls policy dane for " + domain + ", but " + host + " has no usable DNSSEC-signed TLSA records"}
	}
	sts, f := getSTS()
	if f != nil {
		return p, f
	}
	if sts != nil {
		p.stsID = sts.ID
		match := sts.Match(host)
		switch {
		case sts.Mode == "enforce" && !match:
			return p, &failure{enh: "4.7.5", text: "MX host " + host + " does not match the MTA-STS policy of " + domain}
		case sts.Mode == "enforce":
			p.level, p.policy = levelVerify, "mta-sts"
		case !match:
			d.log.Warn("MTA-STS testing: MX host does not match the policy", "queue_id", msgID,
				"domain", domain, "mx", host, "policy_id", sts.ID)
			p.stsTesting = true
		default:
			p.stsTesting = true
		}
	}
	return p, nil
}

// routePlan returns the plan of a route's next hop host for domain; DANE
// and MTA-STS apply to MX delivery only.
func (d *Deliverer) routePlan(domain, host string) tlsPlan {
	level := d.levelFor(domain)
	if level == levelDANE {
		level = levelVerify // no TLSA for a fixed next hop: the strictest PKIX check
	}
	return tlsPlan{level: level, policy: level, server: host}
}

// verifyPeer checks the certificates of a finished handshake against p.
// "may" and "encrypt" check nothing.
func (d *Deliverer) verifyPeer(cs tls.ConnectionState, p tlsPlan) error {
	switch p.level {
	case levelDANE:
		return p.dane.Verify(cs, p.tlsa, p.names)
	case levelVerify:
		return d.verifyPKIX(cs, p.server)
	}
	return nil
}

// verifyPKIX checks the chain against the roots (the system's unless
// WithRootCAs) and name (RFC 6125; an IP address matches IP SANs).
func (d *Deliverer) verifyPKIX(cs tls.ConnectionState, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		DNSName: name, Roots: d.roots, Intermediates: inter,
	})
	return err
}

// tlsConfig is the client configuration of a handshake under p. The
// certificate is checked after the handshake (verifyPeer), so that every
// policy reports its own failure.
func (d *Deliverer) tlsConfig(p tlsPlan) *tls.Config {
	sni := p.server
	if net.ParseIP(sni) != nil {
		sni = "" // no SNI for an address (RFC 6066 section 3)
	}
	return &tls.Config{
		ServerName:         sni,
		InsecureSkipVerify: true, // checked by verifyPeer
		MinVersion:         tls.VersionTLS12,
	}
}

// policyFailure is the failure of an address under p.
func policyFailure(p tlsPlan, enh, format string, args ...any) failure {
	return failure{enh: enh, text: fmt.Sprintf("TLS policy %s: ", p.policy) + fmt.Sprintf(format, args...), policy: true}
}
