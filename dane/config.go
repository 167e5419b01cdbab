package dane

import (
	"crypto/tls"
	"strings"

	"github.com/miekg/dns"
)

// Config returns the TLS configuration of an SMTP client that connects
// to serverName (the TLSA base domain, sent as SNI as RFC 7672 requires)
// and authenticates it with records, by Verify: the Web PKI is not
// consulted (InsecureSkipVerify, with VerifyConnection doing the check on
// every handshake, resumed ones included). names are the reference
// identifiers for DANE-TA(2) (default: serverName). TLS 1.2 or later.
// records and names are copied.
func Config(serverName string, records []*dns.TLSA, names []string) *tls.Config {
	recs := make([]*dns.TLSA, 0, len(records))
	for _, r := range records {
		if r != nil {
			recs = append(recs, dns.Copy(r).(*dns.TLSA))
		}
	}
	serverName = strings.TrimSuffix(serverName, ".")
	if len(names) == 0 {
		names = []string{serverName}
	}
	names = append([]string(nil), names...)
	return &tls.Config{
		ServerName:         serverName,
		InsecureSkipVerify: true, // replaced by VerifyConnection
		MinVersion:         tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return Verify(cs, recs, names)
		},
	}
}
