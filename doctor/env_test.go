package doctor

import (
	"crypto/x509"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxedge/mxedge/internal/smtptest"
	"github.com/mxedge/mxedge/mtasts"
	"github.com/mxedge/mxedge/mtasts/ststest"
	"github.com/mxedge/mxedge/resolver"
	"github.com/mxedge/mxedge/resolver/dnstest"
)

// greenPolicy is the MTA-STS policy of the all-green setup.
const greenPolicy = "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.org\r\nmx: mx2.example.org\r\nmax_age: 604800\r\n"

// closedRelay is relay control as mxedge's MX listener does it, for the
// test's one relay domain: only postmaster@example.org.
func closedRelay(_, rcpt string) bool { return rcpt == "postmaster@example.org" }

// startMX is a fake MX listener on 127.0.0.26 that accepts the recipients
// accept(from, rcpt) allows (addresses without <>) and refuses the
// others with 554 5.7.1, as Postfix's reject_unauth_destination does.
func startMX(t *testing.T, accept func(from, rcpt string) bool) *smtptest.Server {
	t.Helper()
	s, err := smtptest.Start("127.0.0.26:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	var mu sync.Mutex
	var from string
	path := func(line, verb string) string { return strings.Trim(line[len(verb):], "<>") }
	s.On(smtptest.Mail, func(_ *smtptest.Session, line string) string {
		mu.Lock()
		defer mu.Unlock()
		from = path(line, "MAIL FROM:")
		return ""
	})
	s.On(smtptest.Rcpt, func(_ *smtptest.Session, line string) string {
		mu.Lock()
		defer mu.Unlock()
		if rcpt := path(line, "RCPT TO:"); !accept(from, rcpt) {
			return "554 5.7.1 <" + rcpt + ">: Relay access denied"
		}
		return ""
	})
	return s
}

// world is one test's network: the DNS server with the all-green zone,
// the MTA-STS policy server, the fake MX listener, and the Input that
// points at them.
type world struct {
	dns        *dnstest.Server
	res        *resolver.Resolver
	policyPort string
	mx         *smtptest.Server
	in         Input
}

// newWorld starts the servers; zone are the DNS records, resp the
// policy server's answer, accept the MX listener's relay rule.
func newWorld(t *testing.T, zone []string, resp ststest.Response, accept func(from, rcpt string) bool, in Input) *world {
	t.Helper()
	w := &world{dns: dnstest.StartTB(t, zone...)}
	w.dns.SetAD(true) // a validating resolver: the TLSA records are secure
	w.res = resolver.New(resolver.Config{Servers: []string{w.dns.Addr()}, Timeout: 2 * time.Second, CacheSize: -1})
	// https://mta-sts.example.org/ on 127.0.0.54, its certificate its own
	// root: trusted by this test's client only.
	pair := keyPair(t, newKey(t), "mta-sts.example.org", time.Now().Add(24*time.Hour))
	policy := ststest.Start(t, "127.0.0.54:0", pair)
	policy.Set("example.org", resp)
	w.policyPort = policy.Port()
	roots := x509.NewCertPool()
	roots.AddCert(pair.Leaf)
	w.mx = startMX(t, accept)
	in.HTTPS = mtasts.NewClient(mtasts.ClientOptions{Resolver: w.res, RootCAs: roots, Port: w.policyPort})
	in.RelayTests = []RelayTest{{Addr: w.mx.Addr(), Timeout: 5 * time.Second}}
	w.in = in
	return w
}
