package resolver

import (
	"fmt"
	"testing"

	"github.com/miekg/dns"
)

func rrs(t testing.TB, lines ...string) []dns.RR {
	t.Helper()
	var out []dns.RR
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rr)
	}
	return out
}

func TestNewAnswer(t *testing.T) {
	soa := "example.org. 600 IN SOA ns. host. 1 2 3 4 120"
	tests := []struct {
		name   string
		rcode  int
		answer []string
		ns     []string
		status Status
		canon  string
		ttl    uint32
	}{
		{"records", dns.RcodeSuccess, []string{"a.example.org. 300 IN MX 10 mx.", "a.example.org. 200 IN MX 20 mx2."}, nil,
			StatusAnswer, "a.example.org.", 200},
		{"case-insensitive owner", dns.RcodeSuccess, []string{"A.Example.ORG. 300 IN MX 10 mx."}, nil,
			StatusAnswer, "a.example.org.", 300},
		{"chain ttl", dns.RcodeSuccess, []string{"a.example.org. 50 IN CNAME B.example.org.", "b.example.org. 300 IN MX 10 mx."}, nil,
			StatusAnswer, "b.example.org.", 50},
		{"ttl capped at a day", dns.RcodeSuccess, []string{"a.example.org. 999999 IN MX 10 mx."}, nil,
			StatusAnswer, "a.example.org.", maxTTL},
		{"records of other names ignored", dns.RcodeSuccess, []string{"x.example.org. 300 IN MX 10 mx."}, []string{soa},
			StatusNODATA, "a.example.org.", 120},
		{"nodata: min(SOA TTL, MINIMUM)", dns.RcodeSuccess, nil, []string{soa}, StatusNODATA, "a.example.org.", 120},
		{"nodata SOA TTL smaller", dns.RcodeSuccess, nil, []string{"example.org. 10 IN SOA ns. host. 1 2 3 4 120"},
			StatusNODATA, "a.example.org.", 10},
		{"nodata without SOA: not cached", dns.RcodeSuccess, nil, nil, StatusNODATA, "a.example.org.", 0},
		{"nxdomain", dns.RcodeNameError, nil, []string{soa}, StatusNXDOMAIN, "a.example.org.", 120},
		{"nxdomain capped at 3h", dns.RcodeNameError, nil, []string{"example.org. 99999 IN SOA ns. host. 1 2 3 4 99999"},
			StatusNXDOMAIN, "a.example.org.", maxNegTTL},
		{"nxdomain after chain", dns.RcodeNameError, []string{"a.example.org. 50 IN CNAME b.example.org."}, []string{soa},
			StatusNXDOMAIN, "b.example.org.", 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion("a.example.org.", dns.TypeMX)
			m.Rcode = tt.rcode
			m.Answer = rrs(t, tt.answer...)
			m.Ns = rrs(t, tt.ns...)
			a, err := newAnswer("a.example.org.", dns.TypeMX, m, "s")
			if err != nil {
				t.Fatal(err)
			}
			if a.status != tt.status || a.name != tt.canon || a.ttl != tt.ttl {
				t.Errorf("status %v name %s ttl %d, want %v %s %d", a.status, a.name, a.ttl, tt.status, tt.canon, tt.ttl)
			}
		})
	}
}

func TestFollowCNAMEsLimit(t *testing.T) {
	chain := func(n int) []dns.RR {
		var lines []string
		for i := range n {
			lines = append(lines, fmt.Sprintf("n%d.example. 60 IN CNAME n%d.example.", i, i+1))
		}
		lines = append(lines, fmt.Sprintf("n%d.example. 60 IN A 192.0.2.1", n))
		return rrs(t, lines...)
	}
	name, cnames, got, err := followCNAMEs("n0.example.", dns.TypeA, chain(maxCNAMEs))
	if err != nil || name != "n8.example." || len(cnames) != maxCNAMEs || len(got) != 1 {
		t.Errorf("8 aliases: %s %d %v %v", name, len(cnames), got, err)
	}
	if _, _, _, err := followCNAMEs("n0.example.", dns.TypeA, chain(maxCNAMEs+1)); err == nil {
		t.Error("9 aliases accepted")
	}
	loop := rrs(t, "a.example. 60 IN CNAME b.example.", "b.example. 60 IN CNAME a.example.")
	if _, _, _, err := followCNAMEs("a.example.", dns.TypeA, loop); err == nil {
		t.Error("loop accepted")
	}
	// Asking for the CNAME itself does not follow it.
	name, _, got, err = followCNAMEs("n0.example.", dns.TypeCNAME, chain(2))
	if err != nil || name != "n0.example." || len(got) != 1 {
		t.Errorf("CNAME asked: %s %v %v", name, got, err)
	}
}

// FuzzAnswer feeds arbitrary responses (untrusted network input, as
// unpacked by miekg/dns) to the answer classification: it must not panic,
// and what it returns must be consistent.
func FuzzAnswer(f *testing.F) {
	seed := func(rcode int, lines ...string) {
		m := new(dns.Msg)
		m.SetQuestion("a.example.", dns.TypeMX)
		m.Response = true
		m.Rcode = rcode
		m.Answer = rrs(f, lines...)
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(dns.RcodeSuccess, "a.example. 60 IN MX 10 mx.example.")
	seed(dns.RcodeSuccess, "a.example. 60 IN CNAME b.example.", "b.example. 60 IN MX 0 .")
	seed(dns.RcodeSuccess, "a.example. 60 IN CNAME a.example.")
	seed(dns.RcodeNameError)
	f.Fuzz(func(t *testing.T, b []byte) {
		m := new(dns.Msg)
		if err := m.Unpack(b); err != nil || len(m.Question) != 1 {
			return
		}
		q := m.Question[0]
		if _, ok := dns.IsDomainName(q.Name); !ok {
			return
		}
		a, err := newAnswer(q.Name, q.Qtype, m, "s")
		if err != nil {
			return
		}
		switch {
		case a.status == StatusAnswer && len(a.rrs) == 0,
			a.status != StatusAnswer && a.err(q.Name, q.Qtype) == nil,
			a.status == StatusAnswer && a.err(q.Name, q.Qtype) != nil,
			len(a.cnames) > maxCNAMEs:
			t.Fatalf("inconsistent answer %+v", a)
		}
		if a.status == StatusAnswer && a.ttl > maxTTL || a.status != StatusAnswer && a.ttl > maxNegTTL {
			t.Fatalf("ttl %d for %v", a.ttl, a.status)
		}
		for _, rr := range a.rrs {
			if rr.Header().Rrtype != q.Qtype {
				t.Fatalf("record of type %d for a query of type %d", rr.Header().Rrtype, q.Qtype)
			}
		}
		a.result()
	})
}

// An RR of the asked type with RDLENGTH 0 (seen in the wild from broken
// servers; miekg/dns unpacks it as a bare header) is a temporary error,
// neither an answer without records nor NODATA (which would make an MX
// lookup fall back to the implicit MX).
func TestEmptyRdataIsError(t *testing.T) {
	m := new(dns.Msg)
	m.SetQuestion("a.example.", dns.TypeMX)
	m.Response = true
	m.Answer = []dns.RR{&dns.RR_Header{Name: "a.example.", Rrtype: dns.TypeMX, Class: dns.ClassINET, Ttl: 60}}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	var got dns.Msg
	if err := got.Unpack(b); err != nil {
		t.Fatal(err)
	}
	if len(got.Answer) != 1 || got.Answer[0].Header().Rdlength != 0 {
		t.Fatalf("fixture: %v", got.Answer)
	}
	a, err := newAnswer("a.example.", dns.TypeMX, &got, "s")
	if err == nil {
		t.Fatalf("RDLENGTH 0 MX: answer %+v (status %v), want an error", a, a.status)
	}
}
