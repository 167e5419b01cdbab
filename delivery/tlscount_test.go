package delivery

import (
	"crypto/tls"
	"fmt"
	"slices"
	"testing"
)

// The version label of the outbound TLS sessions takes the fixed values
// of the metrics (docs/deploy.md): "none" for plaintext, TLSv1.0 to
// TLSv1.3, and "other" for anything else (SSLv3, a version crypto/tls
// does not know); a policy outside the fixed set is "other" too.
func TestTLSSessionLabels(t *testing.T) {
	d := &Deliverer{}
	for _, s := range []struct {
		version uint16 // 0: plaintext
		policy  string
	}{
		{0, levelMay}, {tls.VersionTLS10, levelMay}, {tls.VersionTLS11, levelEncrypt}, {tls.VersionTLS12, levelVerify},
		{tls.VersionTLS13, levelDANE}, {tls.VersionTLS13, levelDANE}, {tls.VersionSSL30, "mta-sts"}, {0x0305, "bogus"},
	} {
		var cs *tls.ConnectionState
		if s.version != 0 {
			cs = &tls.ConnectionState{Version: s.version}
		}
		d.tlsOut.add(cs, s.policy)
	}
	var got []string
	for _, c := range d.TLSSessions() {
		got = append(got, fmt.Sprintf("%s/%s=%d", c.Version, c.Policy, c.N))
	}
	slices.Sort(got)
	want := []string{"TLSv1.0/may=1", "TLSv1.1/encrypt=1", "TLSv1.2/verify=1", "TLSv1.3/dane=2", "none/may=1", "other/mta-sts=1", "other/other=1"}
	if !slices.Equal(got, want) {
		t.Errorf("TLS sessions %q, want %q", got, want)
	}
}
