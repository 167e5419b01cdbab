package mtasts

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		mode   Mode
		maxAge time.Duration
		mx     []string
	}{
		{"RFC 8461 appendix A", "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n",
			ModeEnforce, 604800 * time.Second, []string{"mail.example.com", "*.example.net", "backupmx.example.com"}},
		{"LF, no final newline", "version: STSv1\nmode: testing\nmx: mx.example.org\nmax_age: 86400",
			ModeTesting, 86400 * time.Second, []string{"mx.example.org"}},
		{"any order, blanks", "max_age:0\n\nmx:\tMX.Example.ORG.  \nmode: enforce\t\nversion: STSv1 \n\n",
			ModeEnforce, 0, []string{"mx.example.org"}},
		{"none without mx", "version: STSv1\nmode: none\nmax_age: 31557600\n", ModeNone, MaxMaxAge * time.Second, nil},
		{"extensions ignored", "version: STSv1\nmode: enforce\nx-ext.1: anything at all: é\nmx: a.b\nmax_age: 1\n", ModeEnforce, time.Second, []string{"a.b"}},
		{"first of repeated keys", "version: STSv1\nmode: enforce\nmode: none\nmx: a.b\nmax_age: 1\nmax_age: 99999999999\n", ModeEnforce, time.Second, []string{"a.b"}},
		{"leading zeros", "version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 0000000060\n", ModeEnforce, time.Minute, []string{"a.b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parsePolicy([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if p.Mode != tt.mode || p.MaxAge != tt.maxAge || !slices.Equal(p.MX, tt.mx) {
				t.Fatalf("got %+v", p)
			}
		})
	}
}

func TestParsePolicyInvalid(t *testing.T) {
	ok := "version: STSv1\nmode: enforce\nmx: mx.example.org\nmax_age: 86400\n"
	tests := map[string]string{
		"empty":             "",
		"no version":        "mode: enforce\nmx: a.b\nmax_age: 1\n",
		"version":           strings.Replace(ok, "STSv1", "STSv2", 1),
		"version case":      strings.Replace(ok, "STSv1", "stsv1", 1),
		"key case":          strings.Replace(ok, "mode:", "Mode:", 1),
		"space before :":    strings.Replace(ok, "mode:", "mode :", 1),
		"mode":              strings.Replace(ok, "enforce", "report", 1),
		"no mode":           "version: STSv1\nmx: a.b\nmax_age: 1\n",
		"no max_age":        "version: STSv1\nmode: enforce\nmx: a.b\n",
		"max_age too large": strings.Replace(ok, "86400", "31557601", 1),
		"max_age 11 digits": strings.Replace(ok, "86400", "00000000001", 1),
		"max_age negative":  strings.Replace(ok, "86400", "-1", 1),
		"max_age plus":      strings.Replace(ok, "86400", "+1", 1),
		"max_age empty":     strings.Replace(ok, "86400", "", 1),
		"max_age unit":      strings.Replace(ok, "86400", "1d", 1),
		"enforce no mx":     "version: STSv1\nmode: enforce\nmax_age: 1\n",
		"testing no mx":     "version: STSv1\nmode: testing\nmax_age: 1\n",
		"mx two wildcards":  strings.Replace(ok, "mx.example.org", "*.*.example.org", 1),
		"mx inner wildcard": strings.Replace(ok, "mx.example.org", "mx.*.org", 1),
		"mx bare wildcard":  strings.Replace(ok, "mx.example.org", "*", 1),
		"mx two per line":   strings.Replace(ok, "mx.example.org", "a.org b.org", 1),
		"mx empty label":    strings.Replace(ok, "mx.example.org", "mx..org", 1),
		"mx hyphen":         strings.Replace(ok, "mx.example.org", "-mx.example.org", 1),
		"mx U-label":        strings.Replace(ok, "mx.example.org", "mx.exämple.org", 1),
		"mx empty":          strings.Replace(ok, "mx.example.org", "", 1),
		"no colon":          ok + "garbage\n",
		"bad key":           ok + "_x: y\n",
		"bare CR":           strings.Replace(ok, "enforce\n", "enforce\r\r\n", 1),
		"not UTF-8":         ok + "x: \xff\n",
		"html":              "<html><body>policy</body></html>",
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := parsePolicy([]byte(in))
			if !errors.Is(err, errPolicy) {
				t.Fatalf("got %+v, %v", p, err)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	p := &Policy{MX: []string{"mx1.example.com", "*.example.net", "MX.Upper.Example."}}
	tests := map[string]bool{
		"mx1.example.com":      true,
		"MX1.EXAMPLE.COM":      true,
		"mx1.example.com.":     true,
		"mx2.example.com":      false,
		"example.com":          false,
		"a.mx1.example.com":    false,
		"mail.example.net":     true,
		"Mail.Example.Net.":    true,
		"example.net":          false, // "*." needs a label
		".example.net":         false,
		"a.b.example.net":      false, // and only one
		"mailexample.net":      false,
		"mx.upper.example":     true,
		"":                     false,
		".":                    false,
		"*.example.net":        true, // a literal label "*" is one label
		"mx1.example.com.evil": false,
	}
	for host, want := range tests {
		if got := p.Match(host); got != want {
			t.Errorf("Match(%q) = %v, want %v", host, got, want)
		}
	}
	var nilPolicy *Policy
	if nilPolicy.Match("mx1.example.com") {
		t.Error("nil policy matched")
	}
}

// formatPolicy writes p as a policy file, for round trips.
func formatPolicy(p *Policy) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: STSv1\nmode: %s\n", p.Mode)
	for _, mx := range p.MX {
		fmt.Fprintf(&b, "mx: %s\n", mx)
	}
	fmt.Fprintf(&b, "max_age: %d\n", p.MaxAge/time.Second)
	return b.String()
}
