package dnstest

import (
	"strings"
	"time"

	"github.com/miekg/dns"
)

// maxChase is the number of CNAMEs followed before answering SERVFAIL.
const maxChase = 8

// serve answers one query.
func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	m.Authoritative = true
	m.RecursionAvailable = true
	q := req.Question[0]
	udp := w.LocalAddr().Network() == "udp"

	s.mu.Lock()
	s.queries[Query{key(q.Name), q.Qtype}]++
	delay := s.delay
	rcode, forced := s.rcodes[Query{key(q.Name), q.Qtype}]
	if !forced {
		rcode, forced = s.rcodes[Query{key(q.Name), dns.TypeANY}]
	}
	switch {
	case forced:
		m.Rcode = rcode
	case udp && s.trunc[key(q.Name)]:
		m.Truncated = true
	default:
		s.answer(m, q.Name, q.Qtype)
	}
	opt := req.IsEdns0()
	dnssecOK := opt != nil && opt.Do() || req.AuthenticatedData
	ok := m.Rcode == dns.RcodeSuccess || m.Rcode == dns.RcodeNameError
	m.AuthenticatedData = s.ad && dnssecOK && ok && !m.Truncated
	s.mu.Unlock()

	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.closed:
			return
		}
	}
	size := dns.MinMsgSize
	if opt != nil {
		m.SetEdns0(opt.UDPSize(), opt.Do())
		size = max(int(opt.UDPSize()), dns.MinMsgSize)
	}
	if udp {
		m.Truncate(size) // sets TC if the answer does not fit
	}
	w.WriteMsg(m)
}

// answer fills m with the answer for (qname, qtype) from the zone,
// following CNAMEs. s.mu is held.
func (s *Server) answer(m *dns.Msg, qname string, qtype uint16) {
	name := key(qname)
	for range maxChase + 1 {
		var match []dns.RR
		var cname dns.RR
		for _, rr := range s.rrs[name] {
			switch t := rr.Header().Rrtype; {
			case t == qtype || qtype == dns.TypeANY:
				match = append(match, dns.Copy(rr))
			case t == dns.TypeCNAME:
				cname = rr
			}
		}
		switch {
		case len(match) > 0:
			m.Answer = append(m.Answer, match...)
			return
		case cname != nil:
			m.Answer = append(m.Answer, dns.Copy(cname))
			name = key(cname.(*dns.CNAME).Target)
		default:
			if !s.exists(name) {
				m.Rcode = dns.RcodeNameError
			}
			m.Ns = []dns.RR{s.soa(name)}
			return
		}
	}
	m.Answer = nil
	m.Rcode = dns.RcodeServerFailure
}

// exists reports whether name has records or a name below it has (an
// empty non-terminal exists, RFC 8020). s.mu is held.
func (s *Server) exists(name string) bool {
	if name == "." {
		return true
	}
	for n := range s.rrs {
		if n == name || strings.HasSuffix(n, "."+name) {
			return true
		}
	}
	return false
}

// soa returns the SOA of the closest enclosing zone of name added, else a
// synthetic SOA for the root. s.mu is held.
func (s *Server) soa(name string) dns.RR {
	for n := name; ; {
		for _, rr := range s.rrs[n] {
			if rr.Header().Rrtype == dns.TypeSOA {
				return dns.Copy(rr)
			}
		}
		if n == "." {
			break
		}
		_, parent, _ := strings.Cut(n, ".")
		if parent == "" {
			parent = "."
		}
		n = parent
	}
	return &dns.SOA{
		Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
		Ns:  "ns.dnstest.", Mbox: "hostmaster.dnstest.",
		Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 60,
	}
}
