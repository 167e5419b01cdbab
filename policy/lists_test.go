package policy

import (
	"context"
	"net/netip"
	"strings"
	"testing"
)

func TestCIDRList(t *testing.T) {
	l, err := ParseCIDRList("allow.cidr", strings.NewReader("# trusted\n192.0.2.0/24\n\n2001:db8::/32  # office\n198.51.100.7\n::ffff:203.0.113.1\n"))
	if err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]bool{"192.0.2.200": true, "192.0.3.1": false, "2001:db8:1::1": true, "2001:db9::1": false,
		"198.51.100.7": true, "198.51.100.8": false, "203.0.113.1": true, "::ffff:192.0.2.1": true} {
		if got := l.Contains(netip.MustParseAddr(ip)); got != want {
			t.Errorf("%s: %v", ip, got)
		}
	}
	for in, want := range map[string]string{
		"192.0.2.0/24\n192.0.2.1/24\n": "allow.cidr:2: \"192.0.2.1/24\" has bits set beyond its /24 (write 192.0.2.0/24)",
		"\n\nexample.org\n":            "allow.cidr:3: \"example.org\" is not an IP address or network",
		"192.0.2.1 OK\n":               "allow.cidr:1: one address or network per line",
		"fe80::1%eth0\n":               "allow.cidr:1:",
	} {
		_, err := ParseCIDRList("allow.cidr", strings.NewReader(in))
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: %v, want %s", in, err, want)
		}
	}
}

func TestAccessMaps(t *testing.T) {
	client, err := ParseAccessMap("client_access", strings.NewReader(`
192.0.2.0/24     REJECT spam source
192.0.2.7        OK
198.51.100.0/24  DEFER
mail.partner.test ok
.dyn.test        REJECT dynamic address space
`), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ip   string
		rev  Reverse
		want string
	}{
		{"192.0.2.7", Reverse{}, "554 5.7.1 Client host [192.0.2.7] rejected: spam source"}, // file order: the /24 first
		{"198.51.100.1", Reverse{}, "450 4.7.1 Client host [198.51.100.1] rejected: Access denied"},
		{"203.0.113.1", Reverse{"mail.partner.test", ReversePass}, "OK"},
		{"203.0.113.1", Reverse{"smtp.mail.partner.test", ReversePass}, "OK"},
		{"203.0.113.1", Reverse{"mail.partner.test", ReverseMismatch}, ""}, // not confirmed: "unknown"
		{"203.0.113.1", Reverse{"host1.dyn.test", ReversePass}, "554 5.7.1 Client host [203.0.113.1] rejected: dynamic address space"},
		{"203.0.113.1", Reverse{"dyn.test", ReversePass}, ""}, // ".dyn.test": only below it
	} {
		got := code(later(t, &ClientAccess{Map: client}, &Conn{IP: netip.MustParseAddr(tc.ip), Reverse: tc.rev}))
		if got != tc.want {
			t.Errorf("%s %+v: %q, want %q", tc.ip, tc.rev, got, tc.want)
		}
	}
	// Address entries decide before the banner, without a Later.
	if r := (&ClientAccess{Map: client}).CheckConnect(context.Background(), &Conn{IP: netip.MustParseAddr("192.0.2.1")}); r.Later != nil || r.Reply == nil {
		t.Errorf("address entry: %+v", r)
	}

	sender, err := ParseAccessMap("sender_access", strings.NewReader(`
spammer@example.test  REJECT
example.test          DEFER greylisted for now
.bulk.test            REJECT no bulk mail
postmaster@           OK
<>                    REJECT no bounces here
`), true)
	if err != nil {
		t.Fatal(err)
	}
	for from, want := range map[string]string{
		"Spammer@Example.test":      "554 5.7.1 <Spammer@Example.test>: Sender address rejected: Access denied",
		"other@example.test":        "450 4.7.1 <other@example.test>: Sender address rejected: greylisted for now",
		"a@sub.example.test":        "450 4.7.1",
		"a@x.bulk.test":             "554 5.7.1 <a@x.bulk.test>: Sender address rejected: no bulk mail",
		"a@bulk.test":               "",
		"postmaster@elsewhere.test": "OK",
		"postmaster@example.test":   "450 4.7.1", // the domain is looked up before the local part
		"":                          "554 5.7.1 <>: Sender address rejected: no bounces here",
		"a@fine.test":               "",
	} {
		got := code((&SenderAccess{Map: sender}).CheckMail(context.Background(), &Conn{}, &Txn{From: from}))
		if want == "" && got != "" || !strings.HasPrefix(got, want) {
			t.Errorf("%q: %q, want %q", from, got, want)
		}
	}

	for in, want := range map[string]string{
		"192.0.2.1\n":                  "x:1: \"192.0.2.1\": no action",
		"192.0.2.1 PERMIT\n":           "x:1: action \"PERMIT\": must be OK, REJECT or DEFER",
		"a.test OK\n\na.test REJECT\n": "x:3: \"a.test\" is already on line 1",
		"192.0.2.300 OK\n":             "x:1: \"192.0.2.300\" is not an IP address",
		"a.test OK thanks\n":           "x:1: OK takes no text",
		"a.test REJECT caf\xc3\xa9\n":  "x:1: reply text must be printable ASCII",
		"user@a.test OK\n":             "x:1: \"user@a.test\": a client access key",
		"bad_name.test REJECT\n":       "x:1: \"bad_name.test\":",
	} {
		if _, err := ParseAccessMap("x", strings.NewReader(in), false); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: %v, want %s", in, err, want)
		}
	}
}
