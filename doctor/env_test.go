package doctor

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxedge/mxedge/internal/smtptest"
	"github.com/mxedge/mxedge/mtasts"
	"github.com/mxedge/mxedge/resolver"
	"github.com/mxedge/mxedge/resolver/dnstest"
)

// policyResp is what the test's mta-sts.example.org answers.
type policyResp struct {
	status   int    // default 200
	ctype    string // default "text/plain"
	body     string
	location string
}

// greenPolicy is the MTA-STS policy of the all-green setup.
const greenPolicy = "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.org\r\nmx: mx2.example.org\r\nmax_age: 604800\r\n"

// startPolicyServer serves resp as https://mta-sts.example.org/.well-known/mta-sts.txt
// on 127.0.0.54 (a free port) with a certificate trusted by the pool
// returned (and by nothing else).
func startPolicyServer(t *testing.T, resp policyResp) (port string, roots *x509.CertPool) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.54:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/mta-sts.txt" || !strings.HasPrefix(r.Host, "mta-sts.example.org") {
			http.NotFound(w, r)
			return
		}
		if resp.ctype == "" {
			resp.ctype = "text/plain"
		}
		w.Header().Set("Content-Type", resp.ctype)
		if resp.location != "" {
			w.Header().Set("Location", resp.location)
		}
		if resp.status == 0 {
			resp.status = http.StatusOK
		}
		w.WriteHeader(resp.status)
		w.Write([]byte(resp.body))
	}))
	srv.Listener.Close()
	srv.Listener = l
	pair := keyPair(t, newKey(t), "mta-sts.example.org", time.Now().Add(24*time.Hour))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.Config.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, port, _ = net.SplitHostPort(l.Addr().String())
	roots = x509.NewCertPool()
	roots.AddCert(pair.Leaf)
	return port, roots
}

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
// the policy server, the fake MX listener, and the Input that points at
// them.
type world struct {
	dns        *dnstest.Server
	res        *resolver.Resolver
	policyPort string
	mx         *smtptest.Server
	in         Input
}

// newWorld starts the servers; zone are the DNS records, resp the
// policy server's answer, accept the MX listener's relay rule.
func newWorld(t *testing.T, zone []string, resp policyResp, accept func(from, rcpt string) bool, in Input) *world {
	t.Helper()
	w := &world{dns: dnstest.StartTB(t, zone...)}
	w.dns.SetAD(true) // a validating resolver: the TLSA records are secure
	w.res = resolver.New(resolver.Config{Servers: []string{w.dns.Addr()}, Timeout: 2 * time.Second, CacheSize: -1})
	var roots *x509.CertPool
	w.policyPort, roots = startPolicyServer(t, resp)
	w.mx = startMX(t, accept)
	in.HTTPS = mtasts.NewClient(mtasts.ClientOptions{Resolver: w.res, RootCAs: roots, Port: w.policyPort})
	in.RelayTest = RelayTest{Addr: w.mx.Addr(), Timeout: 5 * time.Second}
	w.in = in
	return w
}
