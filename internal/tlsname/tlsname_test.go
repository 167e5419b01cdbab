package tlsname

import (
	"crypto/tls"
	"slices"
	"testing"
)

// The log names are Postfix's and OpenSSL's; the metric labels are the
// four TLS versions and "other", a fixed set (the metrics tests and the
// dashboards depend on these exact strings).
func TestNames(t *testing.T) {
	for _, tc := range []struct {
		v              uint16
		version, label string
		index          int
	}{
		{tls.VersionTLS10, "TLSv1.0", "TLSv1.0", 0},
		{tls.VersionTLS11, "TLSv1.1", "TLSv1.1", 1},
		{tls.VersionTLS12, "TLSv1.2", "TLSv1.2", 2},
		{tls.VersionTLS13, "TLSv1.3", "TLSv1.3", 3},
		{tls.VersionSSL30, "SSLv3", "other", 4},
		{0x0305, "0x0305", "other", 4},
		{0, "0x0000", "other", 4},
	} {
		if got := Version(tc.v); got != tc.version {
			t.Errorf("Version(%#04x) = %q, want %q", tc.v, got, tc.version)
		}
		if got := Label(tc.v); got != tc.label {
			t.Errorf("Label(%#04x) = %q, want %q", tc.v, got, tc.label)
		}
		if got := Index(tc.v); got != tc.index {
			t.Errorf("Index(%#04x) = %d, want %d", tc.v, got, tc.index)
		}
	}
	var all []string
	for i := range Labels {
		all = append(all, LabelAt(i))
	}
	if want := []string{"TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3", "other"}; !slices.Equal(all, want) {
		t.Errorf("labels %q, want %q", all, want)
	}
}
