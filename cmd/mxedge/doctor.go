package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mxedge/mxedge/config"
	"github.com/mxedge/mxedge/doctor"
	"github.com/mxedge/mxedge/internal/certs"
)

// cmdDoctor is "mxedge doctor [-json] [-ip A,B] [-partner H,...] [-mx
// ADDR] [-relay-sender ADDR]": the deliverability checks of package
// doctor for the configured hostname and relay domains, through the
// configured resolver ([dns]), and the open-relay self-test against
// every MX listener (or the one -mx names). Exit status 1 when a check
// fails (warnings and skipped checks do not).
func cmdDoctor(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (default: $MXEDGE_CONFIG, "+defaultConfigPath+", the built-in demo)")
	asJSON := fs.Bool("json", false, "print the checks as JSON")
	ips := fs.String("ip", "", "outbound addresses, comma-separated (default: [delivery] source_address)")
	partners := fs.String("partner", "", "host names of the pair's other relays, comma-separated")
	mx := fs.String("mx", "", "MX listener for the open-relay self-test, host:port (default: every mx [[listener]], "+
		"a wildcard address as loopback; \"off\": no test)")
	relaySender := fs.String("relay-sender", "", "outside sender of the open-relay self-test (default mxedge-doctor@other.example, "+
		"the null sender if refused)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *mx != "" && *mx != "off" {
		// A typo is a usage error, not a relay that is not running.
		if _, _, err := net.SplitHostPort(*mx); err != nil {
			fmt.Fprintf(stderr, "doctor: -mx %q: %v (want host:port, or off)\n", *mx, err)
			return 2
		}
	}
	cfg, from, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if from == demoSource {
		demoCertificate(cfg)
	}
	in := doctor.Input{Hostname: cfg.Hostname, RelayDomains: cfg.RelayDomains, Now: time.Now()}
	list := *ips
	if list == "" {
		list = cfg.Delivery.SourceAddress
	}
	for _, s := range splitList(list) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			fmt.Fprintf(stderr, "doctor: -ip %q: %v\n", s, err)
			return 2
		}
		in.Outbound = append(in.Outbound, a)
	}
	if len(in.Outbound) == 0 {
		fmt.Fprintln(stderr, "doctor: no outbound address: give -ip or set [delivery] source_address (PTR, SPF and DNSBL checks skipped)")
	}
	in.Partners = splitList(*partners)
	for _, l := range cfg.Listeners {
		if l.Kind == config.KindMX {
			in.DNSBLs = append(in.DNSBLs, l.DNSBLSites...)
		}
	}
	in.Chains = servedChains(cfg.Listeners, stderr)
	switch *mx {
	case "off":
	case "":
		in.RelayTests = relayTests(cfg.Listeners)
	default:
		in.RelayTests = []doctor.RelayTest{{Addr: *mx}}
	}
	for i := range in.RelayTests {
		in.RelayTests[i].Sender = *relaySender
	}
	keys, keyErr := loadDKIMKeys(cfg)
	if err := keyErr; err != nil { // a weak or unreadable key: exit status 1
		fmt.Fprintf(stderr, "doctor: %v (DKIM checks of the keys that failed to load skipped)\n", err)
	}
	for _, k := range keys {
		in.DKIM = append(in.DKIM, doctor.DKIMKey{Domain: k.Domain, Selector: k.Selector,
			Public: k.Signer.Public(), Record: k.ZoneLine()})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	checks := doctor.Run(ctx, newResolver(cfg, nil), in)
	code := 0
	if keyErr != nil {
		code = 1
	}
	for _, c := range checks {
		if c.Status == "fail" {
			code = 1
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(checks); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return code
	}
	for _, c := range checks {
		mark := map[string]string{"ok": "✓", "fail": "✗", "warn": "!", "skip": "-"}[c.Status]
		fmt.Fprintf(stdout, "%s %s", mark, c.Name)
		if c.Subject != "" {
			fmt.Fprintf(stdout, ": %s", c.Subject)
		}
		if c.Found != "" {
			fmt.Fprintf(stdout, " (%s)", c.Found)
		}
		fmt.Fprintln(stdout)
		if c.Fix != "" {
			fmt.Fprintf(stdout, "    fix: %s\n", c.Fix)
		}
	}
	return code
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// servedChains are the certificate chains of every MX listener that
// offers STARTTLS (has a tls_cert), each distinct chain once with the
// listeners serving it (name and address): a sender may reach any of
// them, so the certificate and DANE checks cover them all. A file that
// cannot be read is reported on stderr and left out.
func servedChains(listeners []config.Listener, stderr io.Writer) []doctor.Chain {
	var chains []doctor.Chain
	index := map[string]int{} // the chain's DER bytes: its index in chains
	for _, l := range listeners {
		if l.Kind != config.KindMX {
			continue
		}
		for _, f := range l.TLSCert {
			certs, err := readChain(f)
			if err != nil {
				fmt.Fprintf(stderr, "doctor: listener %q: %v\n", l.Name, err)
				continue
			}
			var der strings.Builder
			for _, c := range certs {
				der.Write(c.Raw)
			}
			i, seen := index[der.String()]
			if !seen {
				i = len(chains)
				index[der.String()] = i
				chains = append(chains, doctor.Chain{Certs: certs})
			}
			if by := l.Name + " " + l.Address; !slices.Contains(chains[i].Listeners, by) {
				chains[i].Listeners = append(chains[i].Listeners, by)
			}
		}
	}
	return chains
}

// relayTests are the open-relay self-tests of every MX listener, at the
// address a client on this host dials (dialable), each address once with
// the listeners there: a sender may reach any of them.
func relayTests(listeners []config.Listener) []doctor.RelayTest {
	var tests []doctor.RelayTest
	for _, l := range listeners {
		if l.Kind != config.KindMX {
			continue
		}
		addr, by := dialable(l.Address), l.Name+" "+l.Address
		i := slices.IndexFunc(tests, func(t doctor.RelayTest) bool { return t.Addr == addr })
		if i < 0 {
			tests = append(tests, doctor.RelayTest{Addr: addr, Listener: by})
		} else {
			tests[i].Listener += ", " + by
		}
	}
	return tests
}

// readChain reads the certificates of a PEM file, leaf first: the chain
// the listener serves.
func readChain(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var chain []*x509.Certificate
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return chain, nil
}

// dialable is a listener address as a client on this host dials it: a
// wildcard host ("0.0.0.0:25", "[::]:25", ":25") becomes loopback.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

// demoCertificate gives the demo's listeners the self-signed pair that
// serve made at its first start (cmd/mxedge/serve.go), if it did: the
// certificate the running demo serves, for doctor to check.
func demoCertificate(cfg *config.Config) {
	pair := certs.SelfSignedPair(filepath.Join(cfg.DataDir, "tls"))
	if _, err := os.Stat(pair.Cert); err != nil {
		return
	}
	for i := range cfg.Listeners {
		cfg.Listeners[i].TLSCert, cfg.Listeners[i].TLSKey = []string{pair.Cert}, []string{pair.Key}
	}
}
