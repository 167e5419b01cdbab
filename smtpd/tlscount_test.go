package smtpd

import (
	"crypto/tls"
	"maps"
	"slices"
	"testing"

	"github.com/mxedge/mxedge/internal/tlsname"
)

// Server.TLSSessions always has the same version labels, the fixed set
// of the metrics (docs/deploy.md): TLSv1.0 to TLSv1.3 and "other", where
// SSLv3 and unknown versions are counted.
func TestTLSSessionLabels(t *testing.T) {
	s := &Server{}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13, tls.VersionTLS13, tls.VersionSSL30, 0x0305} {
		s.counts.tlsIn[tlsname.Index(v)].Add(1)
	}
	got := s.TLSSessions()
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, []string{"TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3", "other"}) {
		t.Errorf("version labels %q", keys)
	}
	for label, want := range map[string]uint64{"TLSv1.0": 0, "TLSv1.1": 0, "TLSv1.2": 1, "TLSv1.3": 2, "other": 2} {
		if got[label] != want {
			t.Errorf("%s: %d sessions, want %d", label, got[label], want)
		}
	}
}
