package policy

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/resolver"
)

// Action is what a configurable check does when it matches (the
// listener keys client_no_ptr, helo_invalid, sender_unknown_domain, ...).
type Action string

const (
	// ActionOff: the check does not run.
	ActionOff Action = "off"
	// ActionLog: a match is logged with the reply the check would have
	// sent (Result.Logged); nothing is refused. For trying a check out.
	ActionLog Action = "log"
	// ActionDefer: a match is refused with a 4xx; the client retries.
	ActionDefer Action = "defer"
	// ActionReject: a match is refused with a 5xx; a temporary DNS error
	// is still only deferred (4xx), never rejected.
	ActionReject Action = "reject"
)

// ParseAction returns the action named s.
func ParseAction(s string) (Action, error) {
	switch a := Action(s); a {
	case ActionOff, ActionLog, ActionDefer, ActionReject:
		return a, nil
	}
	return "", fmt.Errorf("%q: must be \"off\", \"log\", \"defer\" or \"reject\"", s)
}

// decide turns a match into a check's result under action a: rej is the
// refusal of a permanent match, def of a temporary one (a DNS temporary
// error) or of a match under ActionDefer. temp says the match is
// temporary: it is never a 5xx.
func (a Action) decide(temp bool, rej, def *Reply, reason string) Result {
	switch {
	case a == ActionOff || a == "":
		return Result{}
	case a == ActionLog && temp:
		return Result{Logged: def, Reason: reason}
	case a == ActionLog:
		return Result{Logged: rej, Reason: reason}
	case a == ActionDefer || temp:
		return Result{Reply: def, Reason: reason}
	}
	return Result{Reply: rej, Reason: reason}
}

// stricter returns the stricter of two actions (off < log < defer <
// reject).
func stricter(a, b Action) Action {
	rank := map[Action]int{ActionLog: 1, ActionDefer: 2, ActionReject: 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// DNS is what the checks ask DNS through: *resolver.Resolver, the relay's
// one resolver (tests point one at resolver/dnstest). Errors follow
// package resolver's contract (resolver.IsNotFound, resolver.IsTemporary).
type DNS interface {
	Lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, resolver.Result, error)
	LookupIP(ctx context.Context, host string) ([]net.IP, resolver.Result, error)
}

var _ DNS = (*resolver.Resolver)(nil)

// ClientKey is the unit the per-client limits, the pregreet memory and
// the log rate limit count a client in: its IPv4 address, or the /64 of an
// IPv6 address (one customer's network, RFC 6177).
func ClientKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p
	}
	return netip.PrefixFrom(ip, ip.BitLen())
}

// printable returns s for a reply or log text: printable ASCII, at most n
// bytes, anything else '?'.
func printable(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	b := []byte(s)
	for i, c := range b {
		if c < ' ' || c > '~' {
			b[i] = '?'
		}
	}
	return string(b)
}
