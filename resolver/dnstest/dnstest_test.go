package dnstest

import (
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func start(t *testing.T) *Server {
	t.Helper()
	s, err := Start("127.0.0.53:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	err = s.Add(
		"example.org. 300 IN SOA ns.example.org. hostmaster.example.org. 1 3600 600 86400 30",
		"example.org. 300 IN MX 10 mx1.example.org.",
		"example.org. 300 IN MX 20 mx2.example.org.",
		"mx1.example.org. 300 IN A 127.0.0.2",
		"mx1.example.org. 300 IN AAAA ::1",
		"_25._tcp.mx1.example.org. 300 IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"alias.example.org. 60 IN CNAME mx1.example.org.",
		"loop1.example.org. 60 IN CNAME loop2.example.org.",
		"loop2.example.org. 60 IN CNAME loop1.example.org.",
	)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ask sends one query over network ("udp" or "tcp"), with EDNS0 and the DO
// bit if do.
func ask(t *testing.T, s *Server, network, name string, qtype uint16, do bool) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if do {
		m.SetEdns0(1232, true)
	}
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	resp, _, err := c.Exchange(m, s.Addr())
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	return resp
}

func TestAnswers(t *testing.T) {
	s := start(t)
	tests := []struct {
		name    string
		qtype   uint16
		rcode   int
		answers int
		soa     string // owner of the SOA in the authority section, "" none
	}{
		{"example.org.", dns.TypeMX, dns.RcodeSuccess, 2, ""},
		{"EXAMPLE.org.", dns.TypeMX, dns.RcodeSuccess, 2, ""},
		{"mx1.example.org.", dns.TypeA, dns.RcodeSuccess, 1, ""},
		{"mx1.example.org.", dns.TypeAAAA, dns.RcodeSuccess, 1, ""},
		{"_25._tcp.mx1.example.org.", dns.TypeTLSA, dns.RcodeSuccess, 1, ""},
		// NODATA: the name exists with other types.
		{"mx1.example.org.", dns.TypeMX, dns.RcodeSuccess, 0, "example.org."},
		{"example.org.", dns.TypeA, dns.RcodeSuccess, 0, "example.org."},
		// NODATA: empty non-terminal.
		{"_tcp.mx1.example.org.", dns.TypeTXT, dns.RcodeSuccess, 0, "example.org."},
		// NXDOMAIN, with the zone's SOA, or the synthetic root SOA.
		{"nope.example.org.", dns.TypeMX, dns.RcodeNameError, 0, "example.org."},
		{"example.net.", dns.TypeMX, dns.RcodeNameError, 0, "."},
		// CNAME followed, or returned when asked.
		{"alias.example.org.", dns.TypeA, dns.RcodeSuccess, 2, ""},
		{"alias.example.org.", dns.TypeMX, dns.RcodeSuccess, 1, "example.org."}, // CNAME, then NODATA
		{"alias.example.org.", dns.TypeCNAME, dns.RcodeSuccess, 1, ""},
		{"loop1.example.org.", dns.TypeA, dns.RcodeServerFailure, 0, ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s", tt.name, dns.TypeToString[tt.qtype]), func(t *testing.T) {
			for _, network := range []string{"udp", "tcp"} {
				resp := ask(t, s, network, tt.name, tt.qtype, false)
				if resp.Rcode != tt.rcode || len(resp.Answer) != tt.answers {
					t.Fatalf("%s: rcode %s, %d answers, want %s, %d:\n%v", network,
						dns.RcodeToString[resp.Rcode], len(resp.Answer), dns.RcodeToString[tt.rcode], tt.answers, resp)
				}
				soa := ""
				if len(resp.Ns) == 1 {
					soa = resp.Ns[0].Header().Name
				}
				if soa != tt.soa || len(resp.Ns) > 1 {
					t.Errorf("%s: authority %v, want SOA of %q", network, resp.Ns, tt.soa)
				}
				if !resp.Authoritative {
					t.Errorf("%s: AA not set", network)
				}
			}
		})
	}
}

func TestSetRcode(t *testing.T) {
	s := start(t)
	s.SetRcode("example.org.", dns.TypeMX, dns.RcodeServerFailure)
	s.SetRcode("mx1.example.org", dns.TypeANY, dns.RcodeRefused)
	check := func(name string, qtype uint16, want int) {
		t.Helper()
		if got := ask(t, s, "udp", name, qtype, false).Rcode; got != want {
			t.Errorf("%s %s: rcode %s, want %s", name, dns.TypeToString[qtype], dns.RcodeToString[got], dns.RcodeToString[want])
		}
	}
	check("example.org.", dns.TypeMX, dns.RcodeServerFailure)
	check("example.org.", dns.TypeA, dns.RcodeSuccess)
	check("mx1.example.org.", dns.TypeA, dns.RcodeRefused)
	check("mx1.example.org.", dns.TypeAAAA, dns.RcodeRefused)
	s.SetRcode("example.org.", dns.TypeMX, dns.RcodeSuccess)
	check("example.org.", dns.TypeMX, dns.RcodeSuccess)
}

func TestTruncate(t *testing.T) {
	s := start(t)
	s.SetTruncate("example.org.", true)
	if r := ask(t, s, "udp", "example.org.", dns.TypeMX, true); !r.Truncated || len(r.Answer) != 0 {
		t.Errorf("UDP: TC %v, %d answers; want TC and none", r.Truncated, len(r.Answer))
	}
	if r := ask(t, s, "tcp", "example.org.", dns.TypeMX, true); r.Truncated || len(r.Answer) != 2 {
		t.Errorf("TCP: TC %v, %d answers; want 2", r.Truncated, len(r.Answer))
	}
	s.SetTruncate("example.org.", false)
	if r := ask(t, s, "udp", "example.org.", dns.TypeMX, true); r.Truncated || len(r.Answer) != 2 {
		t.Errorf("UDP after SetTruncate(false): TC %v, %d answers", r.Truncated, len(r.Answer))
	}
}

func TestTruncateBySize(t *testing.T) {
	s := start(t)
	for i := range 60 {
		if err := s.Add(fmt.Sprintf("big.example.org. 300 IN A 10.0.0.%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if r := ask(t, s, "udp", "big.example.org.", dns.TypeA, false); !r.Truncated {
		t.Errorf("60 A over UDP without EDNS0 (512 bytes): not truncated")
	}
	if r := ask(t, s, "udp", "big.example.org.", dns.TypeA, true); r.Truncated || len(r.Answer) != 60 {
		t.Errorf("60 A over UDP with EDNS0 1232: TC %v, %d answers", r.Truncated, len(r.Answer))
	}
	if r := ask(t, s, "tcp", "big.example.org.", dns.TypeA, false); r.Truncated || len(r.Answer) != 60 {
		t.Errorf("60 A over TCP: TC %v, %d answers", r.Truncated, len(r.Answer))
	}
}

func TestAD(t *testing.T) {
	s := start(t)
	if r := ask(t, s, "udp", "example.org.", dns.TypeMX, true); r.AuthenticatedData {
		t.Error("AD set before SetAD")
	}
	s.SetAD(true)
	if r := ask(t, s, "udp", "example.org.", dns.TypeMX, true); !r.AuthenticatedData {
		t.Error("AD not set with DO")
	}
	if r := ask(t, s, "udp", "nope.example.org.", dns.TypeMX, true); !r.AuthenticatedData {
		t.Error("AD not set on NXDOMAIN with DO")
	}
	if r := ask(t, s, "udp", "example.org.", dns.TypeMX, false); r.AuthenticatedData {
		t.Error("AD set for a query without DO (RFC 6840 section 5.7)")
	}
	s.SetRcode("example.org.", dns.TypeMX, dns.RcodeServerFailure)
	if r := ask(t, s, "udp", "example.org.", dns.TypeMX, true); r.AuthenticatedData {
		t.Error("AD set on SERVFAIL")
	}
}

func TestQueriesAndRemove(t *testing.T) {
	s := start(t)
	ask(t, s, "udp", "example.org.", dns.TypeMX, false)
	ask(t, s, "tcp", "Example.Org.", dns.TypeMX, false)
	ask(t, s, "udp", "example.org.", dns.TypeA, false)
	if n := s.Queries()[Query{"example.org.", dns.TypeMX}]; n != 2 {
		t.Errorf("Queries MX = %d, want 2", n)
	}
	if n := s.Count("example.org", dns.TypeA); n != 1 {
		t.Errorf("Count A = %d, want 1", n)
	}
	s.Remove("example.org.", dns.TypeMX)
	if r := ask(t, s, "udp", "example.org.", dns.TypeMX, false); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("after Remove MX: %v", r)
	}
	s.Remove("mx1.example.org.", dns.TypeANY)
	// _25._tcp.mx1.example.org. still exists below it: NODATA.
	if r := ask(t, s, "udp", "mx1.example.org.", dns.TypeA, false); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("after Remove ANY: %v", r)
	}
}

func TestAddInvalid(t *testing.T) {
	s := start(t)
	if err := s.Add("ok.example.org. 300 IN A 127.0.0.9", "bad.example.org. 300 IN A 999.1.1.1"); err == nil {
		t.Fatal("no error for an invalid record")
	}
	if r := ask(t, s, "udp", "ok.example.org.", dns.TypeA, false); len(r.Answer) != 0 {
		t.Error("records of a failed Add were added")
	}
}

func TestDelay(t *testing.T) {
	s := start(t)
	s.SetDelay(150 * time.Millisecond)
	t0 := time.Now()
	ask(t, s, "udp", "example.org.", dns.TypeMX, false)
	if d := time.Since(t0); d < 150*time.Millisecond {
		t.Errorf("answer after %v, want >= 150ms", d)
	}
}
