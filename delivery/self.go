package delivery

import (
	"net"
	"strconv"
	"strings"
)

// SelfFunc returns the test of mxroute.Options.Self: a host is this relay
// if its name is hostname, or its address is one the relay receives mail
// on at port (the MX port): one of the listeners' addresses ("host:port"),
// or any address of this host for a listener on a wildcard address (RFC 5321 section 5.1: "any of the names or addresses by which
// it might be known in mail transactions").
func SelfFunc(hostname string, listeners []string, port int) func(host string, ip net.IP) bool {
	hostname = strings.ToLower(hostname)
	var ips []net.IP
	wildcard := false
	for _, l := range listeners {
		h, p, err := net.SplitHostPort(l)
		if err != nil || p != strconv.Itoa(port) {
			continue
		}
		ip := net.ParseIP(h)
		switch {
		case h == "" || ip != nil && ip.IsUnspecified():
			wildcard = true
		case ip != nil:
			ips = append(ips, ip)
		default:
			if addrs, err := net.LookupIP(h); err == nil { // a listener given by name, resolved like Listen does
				ips = append(ips, addrs...)
			}
		}
	}
	if wildcard {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok {
					ips = append(ips, n.IP)
				}
			}
		}
	}
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
