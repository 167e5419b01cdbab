package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/config"
	"github.com/mxedge/mxedge/doctor"
	"github.com/mxedge/mxedge/resolver"
)

// cmdDoctor is "mxedge doctor [-json] [-ip A,B] [-partner H,...]": the
// deliverability checks of package doctor for the configured hostname
// and relay domains, through the configured resolver ([dns]). Exit
// status 1 when a check fails.
func cmdDoctor(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (default: $MXEDGE_CONFIG, "+defaultConfigPath+", the built-in demo)")
	asJSON := fs.Bool("json", false, "print the checks as JSON")
	ips := fs.String("ip", "", "outbound addresses, comma-separated (default: [delivery] source_address)")
	partners := fs.String("partner", "", "host names of the pair's other relays, comma-separated")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, _, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
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
		if l.Kind != config.KindMX {
			continue
		}
		in.DNSBLs = append(in.DNSBLs, l.DNSBLSites...)
		if len(in.Cert) == 0 && len(l.TLSCert) > 0 {
			if c, err := readLeaf(l.TLSCert[0]); err == nil {
				in.Cert = []*x509.Certificate{c}
			} else {
				fmt.Fprintf(stderr, "doctor: listener %q: %v\n", l.Name, err)
			}
		}
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
	checks := doctor.Run(ctx, resolverDNS{newResolver(cfg, nil)}, in)
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
		mark := map[string]string{"ok": "✓", "fail": "✗", "warn": "!"}[c.Status]
		fmt.Fprintf(stdout, "%s %s: %s", mark, c.Name, c.Subject)
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

// resolverDNS adapts the relay's resolver to doctor.DNS.
type resolverDNS struct{ r *resolver.Resolver }

func (d resolverDNS) Lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	rrs, _, err := d.r.Lookup(ctx, name, qtype)
	return rrs, err
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

// readLeaf reads the first certificate of a PEM file.
func readLeaf(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return x509.ParseCertificate(b.Bytes)
}
