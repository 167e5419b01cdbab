// Package tlsname names TLS protocol versions, in the one spelling every
// stage uses: Postfix's and OpenSSL's, "TLSv1.3", in logs, the Received
// header, the milter {tls_version} macro and the version label of the
// TLS session metrics (inbound in smtpd, outbound in delivery).
//
// The versions are the protocol_version values of RFC 2246 (TLS 1.0,
// 0x0301), RFC 4346 (1.1, 0x0302), RFC 5246 (1.2, 0x0303) and RFC 8446
// section 4.2.1 (1.3, 0x0304). A metric label takes only the four names
// or Other, so its set of values stays fixed whatever a peer negotiates.
package tlsname

import (
	"crypto/tls"
	"strings"
)

const (
	first = tls.VersionTLS10
	last  = tls.VersionTLS13

	// Other is the metric label of any version but TLS 1.0 to 1.3 (SSLv3,
	// a version crypto/tls does not know).
	Other = "other"
	// Labels is the number of metric labels: TLS 1.0 to 1.3 and Other.
	Labels = last - first + 2
)

// Version names v as Postfix and OpenSSL do: "TLSv1.3", "SSLv3"; a
// version crypto/tls does not know is its number, "0x0305".
func Version(v uint16) string {
	return strings.Replace(tls.VersionName(v), "TLS ", "TLSv", 1)
}

// Index numbers v's metric label, from 0 to Labels-1: TLS 1.0 to 1.3 in
// order, then Other for any other version. For counters kept in an
// array of Labels; LabelAt names them.
func Index(v uint16) int {
	if v < first || v > last {
		return Labels - 1
	}
	return int(v - first)
}

// LabelAt is the metric label of index i (Index): "TLSv1.0" to
// "TLSv1.3", then Other.
func LabelAt(i int) string {
	if i < 0 || i >= Labels-1 {
		return Other
	}
	return Version(first + uint16(i))
}

// Label is v's metric label: Version(v) for TLS 1.0 to 1.3, else Other.
func Label(v uint16) string { return LabelAt(Index(v)) }
