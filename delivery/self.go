package delivery

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// SelfFunc returns the test of mxroute.Options.Self: a host is this relay
// if its name is hostname, or its address is one the relay receives mail
// on at port (the MX port): one of the listeners' addresses ("host:port"),
// or any address of this host for a listener on a wildcard address (RFC
// 5321 section 5.1: "any of the names or addresses by which it might be
// known in mail transactions").
//
// It fails if it cannot learn those addresses (this host's interface
// addresses for a wildcard listener, the addresses of a listener given by
// name) rather than leave them out: a relay that does not know an address
// it listens on takes an MX host with that address for another host and
// loops the mail back to itself. Treating every host as "might be self"
// instead would bounce all MX mail (5.4.6), so the caller refuses to
// start and says why. The addresses are learnt once, here.
func SelfFunc(ctx context.Context, hostname string, listeners []string, port int) (func(host string, ip net.IP) bool, error) {
	return selfFunc(ctx, hostname, listeners, port, sysAddrs{})
}

// hostAddrs are the system's address lookups of SelfFunc; tests replace
// them to make them fail.
type hostAddrs interface {
	InterfaceAddrs() ([]net.Addr, error)
	LookupIP(ctx context.Context, host string) ([]net.IP, error)
}

// sysAddrs is the host's network stack; LookupIP resolves like Listen
// does (hosts file, then DNS).
type sysAddrs struct{}

func (sysAddrs) InterfaceAddrs() ([]net.Addr, error) { return net.InterfaceAddrs() }

func (sysAddrs) LookupIP(ctx context.Context, host string) ([]net.IP, error) {
	return net.DefaultResolver.LookupIP(ctx, "ip", host)
}

func selfFunc(ctx context.Context, hostname string, listeners []string, port int, sys hostAddrs) (func(host string, ip net.IP) bool, error) {
	var ips []net.IP
	wildcard := ""
	for _, l := range listeners {
		h, p, err := net.SplitHostPort(l)
		if err != nil || p != strconv.Itoa(port) {
			continue
		}
		ip := net.ParseIP(h)
		switch {
		case h == "" || ip != nil && ip.IsUnspecified():
			wildcard = l
		case ip != nil:
			ips = append(ips, ip)
		default:
			addrs, err := sys.LookupIP(ctx, h)
			if err != nil {
				return nil, fmt.Errorf("delivery: addresses of listener %s, to recognise this relay among MX hosts: %w", l, err)
			}
			ips = append(ips, addrs...)
		}
	}
	if wildcard != "" {
		addrs, err := sys.InterfaceAddrs()
		if err != nil {
			return nil, fmt.Errorf("delivery: this host's addresses, for listener %s, to recognise this relay among MX hosts: %w", wildcard, err)
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				ips = append(ips, n.IP)
			}
		}
	}
	return matchSelf(hostname, ips), nil
}

// matchSelf is the test of a host named hostname with addresses ips.
func matchSelf(hostname string, ips []net.IP) func(host string, ip net.IP) bool {
	hostname = strings.ToLower(hostname)
	return func(host string, ip net.IP) bool {
		if ip == nil {
			return host == hostname
		}
		for _, x := range ips {
			if x.Equal(ip) {
				return true
			}
		}
		return false
	}
}
