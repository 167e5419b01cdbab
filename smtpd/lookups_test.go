package smtpd

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mxedge/mxedge/internal/testlog"
	"github.com/mxedge/mxedge/policy"
	"github.com/mxedge/mxedge/queue"
	"github.com/mxedge/mxedge/resolver"
	"github.com/mxedge/mxedge/resolver/dnstest"
)

// lookupListener runs a listener whose connect stage asks the DNS server
// srv: the reverse lookup, iprev (no PTR rejected), a DNSBL with two lists.
func lookupListener(t *testing.T, srv *dnstest.Server, edit func(*Options)) (*Server, string, *queue.Queue, *testlog.Buffer) {
	t.Helper()
	res := resolver.New(resolver.Config{Servers: []string{srv.Addr()}, Timeout: 2 * time.Second, Attempts: 1})
	var sites []policy.DNSBLSite
	for _, spec := range []string{"bl1.test=127.0.0.[2..11]*2", "bl2.test*1"} {
		site, err := policy.ParseDNSBLSite(spec)
		if err != nil {
			t.Fatal(err)
		}
		sites = append(sites, site)
	}
	var logs testlog.Buffer
	s, addr, q, _ := startServer(t, func(o *Options) {
		o.Logger = logs.Logger()
		o.ReverseLookup = func(ctx context.Context, ip netip.Addr) policy.Reverse { return policy.LookupReverse(ctx, res, ip) }
		if edit != nil {
			edit(o)
		}
	}, queue.Options{},
		&policy.Iprev{NoPTR: policy.ActionReject, Mismatch: policy.ActionLog},
		&policy.DNSBL{Sites: sites, Threshold: 3, Timeout: 3 * time.Second, DNS: res})
	return s, addr, q, &logs
}

// Lookups start at connect and overlap the banner, HELO and MAIL: with
// every DNS answer 400 ms late the banner and the first replies come at
// once, and the DNSBL verdict is answered at the first RCPT, after the
// client's HELO, sender and recipient are known (and logged).
func TestConnectLookupsOverlap(t *testing.T) {
	const late = 400 * time.Millisecond
	srv, err := dnstest.Start("127.0.0.53:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.Add("11.0.0.127.in-addr.arpa. PTR client.src.test.", "client.src.test. A 127.0.0.11",
		"11.0.0.127.bl1.test. A 127.0.0.2", "11.0.0.127.bl2.test. A 127.0.0.2")
	srv.SetDelay(late)
	_, addr, q, logs := lookupListener(t, srv, nil)

	t0 := time.Now()
	nc, r, first := dialFrom(t, "127.0.0.11", addr)
	if first != "220 mx.example.test ESMTP Service Ready" {
		t.Fatal(first)
	}
	c := &client{t: t, c: nc, r: r}
	c.cmd("EHLO client.src.test", "250")
	c.cmd("MAIL FROM:<s@src.test>", "250")
	if d := time.Since(t0); d >= late {
		t.Errorf("banner, EHLO and MAIL took %v: the lookups (%v) added latency", d, late)
	}
	c.cmd("RCPT TO:<u@relay.test>", "554 5.7.1 Service unavailable; client [127.0.0.11] blocked using bl1.test")
	c.cmd("RCPT TO:<v@relay.test>", "554 5.7.1")
	c.cmd("DATA", "503")
	if st, _ := q.Stats(); st.Messages != 0 {
		t.Errorf("queued %+v", st)
	}
	want := `msg="recipient rejected" listener=mx stage=dnsbl client_ip=127.0.0.11 helo=client.src.test from=<s@src.test> to=<u@relay.test> action=reject reply="554 5.7.1 Service unavailable; client [127.0.0.11] blocked using bl1.test" reason="score=3 bl1.test=127.0.0.2*2 bl2.test=127.0.0.2*1"`
	if !strings.Contains(logs.String(), want) {
		t.Errorf("log lacks\n%s\n%s", want, logs.String())
	}
}

// The reverse DNS of the client: a forward-confirmed name goes into the
// Received header; no PTR is refused at RCPT (held: after HELO and MAIL);
// a mismatching one is only logged; a list hit below the threshold lets
// the mail through.
func TestIprevThroughListener(t *testing.T) {
	srv, err := dnstest.Start("127.0.0.53:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.Add("12.0.0.127.in-addr.arpa. PTR Good.Src.Test.", "good.src.test. A 127.0.0.12",
		"12.0.0.127.bl1.test. A 127.0.0.2", // 2 < 3
		"14.0.0.127.in-addr.arpa. PTR liar.src.test.", "liar.src.test. A 192.0.2.1")
	_, addr, q, logs := lookupListener(t, srv, nil)

	nc, r, _ := dialFrom(t, "127.0.0.12", addr)
	c := &client{t: t, c: nc, r: r}
	c.envelope("u@relay.test")
	c.send("Subject: x\r\n\r\nhi\r\n.\r\n")
	id := queuedID(t, c.reply())
	if body := stored(t, q, id); !strings.HasPrefix(string(body), "Received: from client.test (good.src.test [127.0.0.12])\r\n") {
		t.Errorf("Received: %q", body)
	}
	if env, _ := q.Get(id); env.Origin.ClientName != "good.src.test" {
		t.Errorf("origin %+v", env.Origin)
	}

	nc, r, _ = dialFrom(t, "127.0.0.13", addr) // no PTR at all
	c = &client{t: t, c: nc, r: r}
	c.cmd("EHLO client.test", "250")
	c.cmd("MAIL FROM:<s@src.test>", "250")
	c.cmd("RCPT TO:<u@relay.test>", "550 5.7.25 Client host rejected: cannot find your reverse hostname, [127.0.0.13]")

	nc, r, _ = dialFrom(t, "127.0.0.14", addr) // PTR not confirmed: log only
	c = &client{t: t, c: nc, r: r}
	c.envelope("u@relay.test")
	c.send("Subject: x\r\n\r\nhi\r\n.\r\n")
	id = queuedID(t, c.reply())
	if body := stored(t, q, id); !strings.HasPrefix(string(body), "Received: from client.test (unknown [127.0.0.14])\r\n") {
		t.Errorf("Received: %q", body)
	}
	want := `msg="check matched (log only)" listener=mx stage=iprev client_ip=127.0.0.14 helo=client.test from=<sender@src.test> to=<u@relay.test> action=log reply="550 5.7.25 Client host rejected: cannot find your hostname, [127.0.0.14]" reason="ptr=liar.src.test not forward-confirmed"`
	if !strings.Contains(logs.String(), want) {
		t.Errorf("log lacks\n%s\n%s", want, logs.String())
	}
}

// An IPv6 client: its reverse name and the DNSBL are asked by nibbles.
func TestLookupsIPv6Client(t *testing.T) {
	srv, err := dnstest.Start("127.0.0.53:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	const nibbles = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0"
	srv.Add(nibbles+".ip6.arpa. PTR v6.src.test.", "v6.src.test. AAAA ::1",
		nibbles+".bl1.test. A 127.0.0.3", nibbles+".bl2.test. A 127.0.0.4")
	_, addr, _, _ := lookupListener(t, srv, func(o *Options) { o.Address = "[::1]:0" })
	nc, r, first := dialFrom(t, "::1", addr)
	if !strings.HasPrefix(first, "220 ") {
		t.Fatal(first)
	}
	c := &client{t: t, c: nc, r: r}
	c.cmd("EHLO client.test", "250")
	c.cmd("MAIL FROM:<s@src.test>", "250")
	c.cmd("RCPT TO:<u@relay.test>", "554 5.7.1 Service unavailable; client [::1] blocked using bl1.test")
}
