package dane

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestUsable(t *testing.T) {
	c := newLeaf(t, nil, "mx.example.org").cert
	short := tlsa(3, 1, 1, c)
	short.Certificate = short.Certificate[:62]
	long := tlsa(3, 1, 2, c)
	long.Certificate = tlsa(3, 1, 1, c).Certificate // 32 bytes for SHA2-512
	notHex := tlsa(3, 1, 1, c)
	notHex.Certificate = strings.Repeat("zz", 32)
	empty := tlsa(3, 1, 0, c)
	empty.Certificate = ""
	tests := []struct {
		name   string
		r      *dns.TLSA
		usable bool
	}{
		{"DANE-EE SPKI SHA2-256", tlsa(3, 1, 1, c), true},
		{"DANE-EE cert full", tlsa(3, 0, 0, c), true},
		{"DANE-TA cert SHA2-512", tlsa(2, 0, 2, c), true},
		{"DANE-TA SPKI full", tlsa(2, 1, 0, c), true},
		{"PKIX-TA", tlsa(0, 0, 1, c), false},
		{"PKIX-EE", tlsa(1, 1, 1, c), false},
		{"usage 4", tlsa(4, 1, 1, c), false},
		{"selector 2", tlsa(3, 2, 1, c), false},
		{"matching type 3", tlsa(3, 1, 3, c), false},
		{"short digest", short, false},
		{"SHA2-512 of 32 bytes", long, false},
		{"not hex", notHex, false},
		{"empty full", empty, false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		got := Usable([]*dns.TLSA{tt.r})
		if (len(got) == 1) != tt.usable {
			t.Errorf("%s: Usable = %v, want usable %v", tt.name, got, tt.usable)
		}
	}
	if got := Usable([]*dns.TLSA{tlsa(0, 0, 1, c), tlsa(3, 1, 1, c), tlsa(1, 0, 1, c), tlsa(2, 0, 1, c)}); len(got) != 2 || got[0].Usage != 3 || got[1].Usage != 2 {
		t.Errorf("Usable of a mixed set = %v", got)
	}
}

// RFC 7672 section 3.1.1: DANE-EE matches the leaf, whatever its names
// and validity period.
func TestVerifyEE(t *testing.T) {
	expired := issue(t, &x509.Certificate{
		Subject:   pkix.Name{CommonName: "old.example"},
		DNSNames:  []string{"old.example"},
		NotBefore: time.Now().Add(-48 * time.Hour),
		NotAfter:  time.Now().Add(-24 * time.Hour),
	}, nil)
	other := newLeaf(t, nil, "mx.example.org")
	for sel := uint8(0); sel <= 1; sel++ {
		for mt := uint8(0); mt <= 2; mt++ {
			t.Run(fmt.Sprintf("3 %d %d", sel, mt), func(t *testing.T) {
				if err := Verify(state(expired), []*dns.TLSA{tlsa(3, sel, mt, expired.cert)}, []string{"mx.example.org"}); err != nil {
					t.Fatalf("match: %v", err)
				}
				err := Verify(state(expired), []*dns.TLSA{tlsa(3, sel, mt, other.cert)}, []string{"mx.example.org"})
				if !errors.Is(err, ErrNoMatch) {
					t.Fatalf("mismatch: %v", err)
				}
			})
		}
	}
	// One matching record among others is enough.
	recs := []*dns.TLSA{tlsa(3, 1, 1, other.cert), tlsa(3, 0, 1, expired.cert)}
	if err := Verify(state(expired), recs, nil); err != nil {
		t.Fatal(err)
	}
}

// DANE-EE is about the leaf only: a record matching another certificate
// of the chain does not count.
func TestVerifyEENotChain(t *testing.T) {
	ca := newCA(t, "CA", nil)
	leaf := newLeaf(t, ca, "mx.example.org")
	err := Verify(state(leaf, ca), []*dns.TLSA{tlsa(3, 1, 1, ca.cert)}, []string{"mx.example.org"})
	if !errors.Is(err, ErrNoMatch) {
		t.Fatalf("got %v", err)
	}
	// The error tells the operator what the server presented.
	if !strings.Contains(err.Error(), "mx.example.org") || !strings.Contains(err.Error(), "SPKI SHA2-256") {
		t.Fatalf("error %q says too little", err)
	}
}

func TestVerifyTA(t *testing.T) {
	root := newCA(t, "Root", nil)
	inter := newCA(t, "Intermediate", root)
	leaf := newLeaf(t, inter, "mx.example.org", "mx.example.net")
	wild := newLeaf(t, inter, "*.example.com")
	expired := issue(t, &x509.Certificate{
		Subject:   pkix.Name{CommonName: "mx.example.org"},
		DNSNames:  []string{"mx.example.org"},
		NotBefore: time.Now().Add(-48 * time.Hour),
		NotAfter:  time.Now().Add(-time.Hour),
	}, inter)
	unrelated := newCA(t, "Unrelated", nil)
	mx := []string{"mx.example.org"}
	tests := []struct {
		name  string
		chain []*issued
		rec   *dns.TLSA
		names []string
		ok    bool
	}{
		{"root in chain", []*issued{leaf, inter, root}, tlsa(2, 0, 1, root.cert), mx, true},
		{"intermediate", []*issued{leaf, inter}, tlsa(2, 1, 1, inter.cert), mx, true},
		{"intermediate SHA2-512", []*issued{leaf, inter}, tlsa(2, 0, 2, inter.cert), mx, true},
		{"root full key, not sent", []*issued{leaf, inter}, tlsa(2, 1, 0, root.cert), mx, true},
		{"intermediate full key, not sent", []*issued{leaf}, tlsa(2, 1, 0, inter.cert), mx, true},
		{"root digest, not sent", []*issued{leaf, inter}, tlsa(2, 0, 1, root.cert), mx, false},
		{"second name", []*issued{leaf, inter}, tlsa(2, 0, 1, inter.cert), []string{"tlsa-base.example", "mx.example.net."}, true},
		{"wrong name", []*issued{leaf, inter}, tlsa(2, 0, 1, inter.cert), []string{"mx.example.com"}, false},
		{"no names", []*issued{leaf, inter}, tlsa(2, 0, 1, inter.cert), nil, false},
		{"wildcard", []*issued{wild, inter}, tlsa(2, 0, 1, inter.cert), []string{"MX.example.com"}, true},
		{"wildcard one label", []*issued{wild, inter}, tlsa(2, 0, 1, inter.cert), []string{"a.mx.example.com"}, false},
		{"expired leaf", []*issued{expired, inter}, tlsa(2, 0, 1, inter.cert), mx, false},
		{"unrelated TA", []*issued{leaf, inter, root}, tlsa(2, 0, 1, unrelated.cert), mx, false},
		{"TA usage for the leaf itself", []*issued{leaf, inter}, tlsa(2, 0, 1, leaf.cert), mx, true},
		{"TA leaf itself, wrong name", []*issued{leaf, inter}, tlsa(2, 0, 1, leaf.cert), []string{"other.example"}, false},
		{"chain out of order still validates", []*issued{leaf, root, inter}, tlsa(2, 0, 1, root.cert), mx, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(state(tt.chain...), []*dns.TLSA{tt.rec}, tt.names)
			if tt.ok && err != nil {
				t.Fatalf("failed: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrNoMatch) {
				t.Fatalf("got %v, want ErrNoMatch", err)
			}
		})
	}
}

// A forged leaf that claims to be issued by the trust anchor but is not
// signed by it fails.
func TestVerifyTAForgedIssuer(t *testing.T) {
	ca := newCA(t, "CA", nil)
	impostor := newCA(t, "CA", nil) // same name, other key
	leaf := newLeaf(t, impostor, "mx.example.org")
	err := Verify(state(leaf, ca), []*dns.TLSA{tlsa(2, 0, 1, ca.cert)}, []string{"mx.example.org"})
	if !errors.Is(err, ErrNoMatch) {
		t.Fatalf("got %v", err)
	}
}

// RFC 7672 section 3.1.3: PKIX-TA(0) and PKIX-EE(1) are ignored, even
// when they match.
func TestVerifyUnusableIgnored(t *testing.T) {
	ca := newCA(t, "CA", nil)
	leaf := newLeaf(t, ca, "mx.example.org")
	pkix := []*dns.TLSA{tlsa(0, 0, 1, ca.cert), tlsa(1, 1, 1, leaf.cert)}
	if u := Usable(pkix); u != nil {
		t.Fatalf("Usable = %v", u)
	}
	if err := Verify(state(leaf, ca), pkix, []string{"mx.example.org"}); !errors.Is(err, ErrNoUsableRecords) {
		t.Fatalf("got %v, want ErrNoUsableRecords", err)
	}
	other := newLeaf(t, nil, "x")
	if err := Verify(state(leaf, ca), append(pkix, tlsa(3, 1, 1, other.cert)), []string{"mx.example.org"}); !errors.Is(err, ErrNoMatch) {
		t.Fatalf("got %v, want ErrNoMatch", err)
	}
	if err := Verify(tls.ConnectionState{}, []*dns.TLSA{tlsa(3, 1, 1, leaf.cert)}, nil); !errors.Is(err, ErrNoMatch) {
		t.Fatalf("no certificate: %v", err)
	}
}

// RFC 7671 section 9: a SHA2-256 record does not count when SHA2-512
// records of the same usage and selector exist.
func TestVerifyDigestAgility(t *testing.T) {
	leaf := newLeaf(t, nil, "mx.example.org")
	other := newLeaf(t, nil, "mx.example.org")
	tests := []struct {
		name string
		recs []*dns.TLSA
		ok   bool
	}{
		{"256 matches, 512 does not", []*dns.TLSA{tlsa(3, 1, 1, leaf.cert), tlsa(3, 1, 2, other.cert)}, false},
		{"512 matches, 256 does not", []*dns.TLSA{tlsa(3, 1, 1, other.cert), tlsa(3, 1, 2, leaf.cert)}, true},
		{"512 of another selector", []*dns.TLSA{tlsa(3, 1, 1, leaf.cert), tlsa(3, 0, 2, other.cert)}, true},
		{"512 of another usage", []*dns.TLSA{tlsa(3, 1, 1, leaf.cert), tlsa(2, 1, 2, other.cert)}, true},
		{"full kept", []*dns.TLSA{tlsa(3, 1, 0, leaf.cert), tlsa(3, 1, 2, other.cert)}, true},
	}
	for _, tt := range tests {
		err := Verify(state(leaf), tt.recs, nil)
		if (err == nil) != tt.ok {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

// Through a real TLS handshake with Config.
func TestConfigHandshake(t *testing.T) {
	self := newLeaf(t, nil, "mx.example.org")
	root := newCA(t, "Root", nil)
	inter := newCA(t, "Intermediate", root)
	leaf := newLeaf(t, inter, "mx.example.org")
	other := newLeaf(t, nil, "mx.example.org")

	err, sni := handshake(t, Config("mx.example.org.", []*dns.TLSA{tlsa(3, 1, 1, self.cert)}, nil), self)
	if err != nil {
		t.Fatalf("DANE-EE match: %v", err)
	}
	if sni != "mx.example.org" {
		t.Fatalf("SNI %q", sni)
	}
	if err, _ := handshake(t, Config("mx.example.org", []*dns.TLSA{tlsa(3, 1, 1, other.cert)}, nil), self); err == nil || !strings.Contains(err.Error(), ErrNoMatch.Error()) {
		t.Fatalf("DANE-EE mismatch: %v", err)
	}
	if err, _ := handshake(t, Config("mx.example.org", []*dns.TLSA{tlsa(2, 0, 1, root.cert)}, nil), leaf, inter, root); err != nil {
		t.Fatalf("DANE-TA: %v", err)
	}
	if err, _ := handshake(t, Config("mx.example.net", []*dns.TLSA{tlsa(2, 0, 1, root.cert)}, nil), leaf, inter, root); err == nil {
		t.Fatal("DANE-TA for the wrong name succeeded")
	}
	if err, _ := handshake(t, Config("tlsa.example.net", []*dns.TLSA{tlsa(2, 0, 1, root.cert)}, []string{"tlsa.example.net", "mx.example.org"}), leaf, inter, root); err != nil {
		t.Fatalf("DANE-TA with the MX name as second identifier: %v", err)
	}
	// The records are copied: changing them afterwards changes nothing.
	recs := []*dns.TLSA{tlsa(3, 1, 1, self.cert)}
	cfg := Config("mx.example.org", recs, nil)
	recs[0].Certificate = tlsa(3, 1, 1, other.cert).Certificate
	if err, _ := handshake(t, cfg, self); err != nil {
		t.Fatalf("after changing the caller's records: %v", err)
	}
	if cfg.MinVersion != tls.VersionTLS12 || !cfg.InsecureSkipVerify || cfg.VerifyConnection == nil {
		t.Fatalf("config %+v", cfg)
	}
}
