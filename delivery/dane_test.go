package delivery

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/mxedge/mxedge/dane"
	"github.com/mxedge/mxedge/resolver"
)

// DANE (RFC 7672) with package dane against the test DNS server, which
// sets the AD bit as a validating resolver would.
func TestDANE(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.leaf(t, "mx1.tls.example")
	other := ca.leaf(t, "mx1.tls.example") // same name, another key
	for _, tc := range []struct {
		name  string
		tlsa  string // TLSA data for mx1, "" none
		ad    bool
		level string
		sts   *STSPolicy
		code  int
		enh   string
		text  string
		mails int
	}{
		// DANE-EE: the key matches; no CA needed (none given), names not
		// looked at.
		{name: "EE match", tlsa: "3 1 1 " + spkiSHA256(cert), ad: true, level: "may", code: 250, text: "policy=dane", mails: 1},
		{name: "EE mismatch", tlsa: "3 1 1 " + spkiSHA256(other), ad: true, level: "may", code: 0, enh: "4.7.5", text: "TLS policy dane: certificate of mx1.tls.example"},
		// DANE takes precedence over MTA-STS (whose policy would refuse
		// the host here).
		{name: "EE over MTA-STS", tlsa: "3 1 1 " + spkiSHA256(cert), ad: true, level: "may", sts: stsPolicy("enforce", "nomatch.example"), code: 250, text: "policy=dane", mails: 1},
		// Not DNSSEC-validated: DANE does not apply.
		{name: "insecure", tlsa: "3 1 1 " + spkiSHA256(other), ad: false, level: "may", code: 250, text: "policy=may", mails: 1},
		// tls policy dane without TLSA records: deferred.
		{name: "required, none", ad: true, level: "dane", code: 0, enh: "4.7.5", text: "has no usable DNSSEC-signed TLSA records"},
		// Records, none usable (PKIX-EE): TLS without authentication.
		{name: "unusable", tlsa: "1 1 1 " + spkiSHA256(other), ad: true, level: "may", code: 250, text: "policy=dane-unusable", mails: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hops, port := startMXServers(t)
			hops[0].SetTLS(serverTLS(cert))
			zone := append([]string(nil), tlsZone...)
			if tc.tlsa != "" {
				zone = append(zone, fmt.Sprintf("_%d._tcp.mx1.tls.example. 300 IN TLSA %s", port, tc.tlsa))
			}
			e := newMXEnv(t, zone, port, withPolicy("one.example", tc.level), func(o *Options) {
				if tc.sts != nil {
					o.TLS.STS = fakeSTS{"one.example": tc.sts}
				}
			})
			e.dns.SetAD(tc.ad)
			r := resolver.New(resolver.Config{Servers: []string{e.dns.Addr()}})
			tp := *e.d.tls.Load()
			tp.DANE = daneWith{r}
			e.d.SetTLSPolicy(tp)
			e.d.resolver = r
			res := e.deliver(t, "alice@one.example")[0]
			if res.Code != tc.code || tc.enh != "" && res.Enhanced != tc.enh || !strings.Contains(res.Text+res.Relay, tc.text) {
				t.Errorf("%+v", res)
			}
			if _, tlsed := mails(hops[0]); tlsed != tc.mails {
				t.Errorf("%d messages over TLS, want %d", tlsed, tc.mails)
			}
		})
	}
}

// daneWith is package dane as DANE, as cmd/mxedge adapts it.
type daneWith struct{ r dane.Resolver }

func (x daneWith) TLSA(ctx context.Context, host string, port uint16) ([]*dns.TLSA, error) {
	return dane.Lookup(ctx, x.r, host, port)
}
func (daneWith) Usable(records []*dns.TLSA) []*dns.TLSA { return dane.Usable(records) }
func (daneWith) Verify(cs tls.ConnectionState, records []*dns.TLSA, names []string) error {
	return dane.Verify(cs, records, names)
}
