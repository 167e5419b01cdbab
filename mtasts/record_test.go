package mtasts

import (
	"errors"
	"testing"

	"github.com/miekg/dns"
)

func TestParseRecord(t *testing.T) {
	good := map[string]string{
		"v=STSv1; id=20160831085700Z;":                 "20160831085700Z", // RFC 8461 section 3.1
		"v=STSv1;id=1":                                 "1",
		"v=STSv1 ;\tid=abc ; ":                         "abc",
		"v=STSv1; ext=x_y-z; id=A1":                    "A1",
		"v=STSv1; id=12345678901234567890123456789012": "12345678901234567890123456789012",
	}
	for in, want := range good {
		id, err := parseRecord(in)
		if err != nil || id != want {
			t.Errorf("parseRecord(%q) = %q, %v; want %q", in, id, err, want)
		}
	}
	bad := []string{
		"",
		"v=STSv1",
		"v=STSv1;",
		"v=STSv1; id=",
		"v=STSv1; id=a-b",
		"v=STSv1; id=123456789012345678901234567890123", // 33
		"v=STSv1; id=1; id=2",
		"v=STSv1; id=1;; x=y",
		"v=STSv1; id=1; x=",
		"v=STSv1; id=1; x=a b",
		"v=STSv1; id=1; x=a=b",
		"v=STSv1; id=1; =y",
		"v=STSv1; id=1; _x=y",
		"v=STSv1; id 1",
		"v=stsv1; id=1",
		" v=STSv1; id=1",
		"v=STSv2; id=1",
		"id=1; v=STSv1",
	}
	for _, in := range bad {
		if id, err := parseRecord(in); !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("parseRecord(%q) = %q, %v; want an error", in, id, err)
		}
	}
}

func TestSelectRecord(t *testing.T) {
	txt := func(s ...string) dns.RR {
		return &dns.TXT{Hdr: dns.RR_Header{Name: "_mta-sts.example.org.", Rrtype: dns.TypeTXT, Class: dns.ClassINET}, Txt: s}
	}
	tests := []struct {
		name string
		rrs  []dns.RR
		id   string
		err  error
	}{
		{"one", []dns.RR{txt("v=STSv1; id=1")}, "1", nil},
		{"joined", []dns.RR{txt("v=STS", "v1; id=", "42")}, "42", nil},
		{"others discarded", []dns.RR{txt("v=spf1 -all"), txt("v=STSv1; id=1"), txt("v=STSv10; id=2")}, "1", nil},
		{"none", []dns.RR{txt("v=spf1 -all")}, "", ErrNoRecord},
		{"empty", nil, "", ErrNoRecord},
		{"two", []dns.RR{txt("v=STSv1; id=1"), txt("v=STSv1; id=2")}, "", ErrInvalidRecord},
		{"invalid", []dns.RR{txt("v=STSv1; id=!")}, "", ErrInvalidRecord},
		{"not TXT", []dns.RR{&dns.CNAME{Target: "x."}}, "", ErrNoRecord},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, rec, err := selectRecord(tt.rrs)
			if id != tt.id || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("got %q, %v; want %q, %v", id, err, tt.id, tt.err)
			}
			if err == nil && rec != "v=STSv1; id="+id {
				t.Errorf("record %q, want the joined text", rec)
			}
		})
	}
}
