package delivery

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
)

// fakeAddrs answers SelfFunc's lookups: ifaces or ifaceErr for this
// host's interfaces, names (or nameErr) for listeners given by name.
type fakeAddrs struct {
	ifaces   []net.IP
	ifaceErr error
	names    map[string][]net.IP
	nameErr  error
}

func (f fakeAddrs) InterfaceAddrs() ([]net.Addr, error) {
	if f.ifaceErr != nil {
		return nil, f.ifaceErr
	}
	var addrs []net.Addr
	for _, ip := range f.ifaces {
		addrs = append(addrs, &net.IPNet{IP: ip, Mask: net.CIDRMask(24, 32)})
	}
	return addrs, nil
}

func (f fakeAddrs) LookupIP(_ context.Context, host string) ([]net.IP, error) {
	if f.nameErr != nil {
		return nil, f.nameErr
	}
	return f.names[host], nil
}

// The hostname, the listeners' addresses on the MX port and, for a
// wildcard listener, this host's addresses are this relay; if those
// addresses cannot be learnt SelfFunc fails instead of leaving them out
// (which would loop mail through the relay).
func TestSelfFunc(t *testing.T) {
	ip := net.ParseIP
	down := errors.New("netlink: permission denied")
	for _, tc := range []struct {
		name      string
		listeners []string
		sys       fakeAddrs
		self      []string // addresses that are this relay
		notSelf   []string
		err       string // wanted in the error; "" none
	}{
		{name: "listener address", listeners: []string{"192.0.2.1:25", "192.0.2.2:587"},
			self: []string{"192.0.2.1"}, notSelf: []string{"192.0.2.2", "192.0.2.3"}},
		{name: "wildcard", listeners: []string{":25"}, sys: fakeAddrs{ifaces: []net.IP{ip("198.51.100.7"), ip("127.0.0.1")}},
			self: []string{"198.51.100.7", "127.0.0.1"}, notSelf: []string{"198.51.100.8"}},
		{name: "wildcard address", listeners: []string{"[::]:25"}, sys: fakeAddrs{ifaces: []net.IP{ip("2001:db8::7")}},
			self: []string{"2001:db8::7"}, notSelf: []string{"2001:db8::8"}},
		{name: "wildcard, interfaces unknown", listeners: []string{"0.0.0.0:25"}, sys: fakeAddrs{ifaceErr: down},
			err: "this host's addresses, for listener 0.0.0.0:25"},
		{name: "wildcard on another port", listeners: []string{"192.0.2.1:25", ":587"}, sys: fakeAddrs{ifaceErr: down},
			self: []string{"192.0.2.1"}},
		{name: "listener by name", listeners: []string{"mx.relay.test:25"},
			sys:  fakeAddrs{names: map[string][]net.IP{"mx.relay.test": {ip("203.0.113.5")}}},
			self: []string{"203.0.113.5"}, notSelf: []string{"203.0.113.6"}},
		{name: "listener by name, lookup fails", listeners: []string{"mx.relay.test:25"}, sys: fakeAddrs{nameErr: down},
			err: "addresses of listener mx.relay.test:25"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			self, err := selfFunc(context.Background(), "MX.Relay.test", tc.listeners, 25, tc.sys)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, down) {
					t.Fatalf("err = %v, want %q wrapping %v", err, tc.err, down)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !self("mx.relay.test", nil) || self("other.test", nil) {
				t.Error("hostname: mx.relay.test not self or other.test self")
			}
			for _, a := range tc.self {
				if !self("mx.other.test", ip(a)) {
					t.Errorf("%s is not self", a)
				}
			}
			for _, a := range tc.notSelf {
				if self("mx.other.test", ip(a)) {
					t.Errorf("%s is self", a)
				}
			}
		})
	}
}
