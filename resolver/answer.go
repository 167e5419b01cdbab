package resolver

import (
	"reflect"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Status is what a server said about a name and type.
type Status int

const (
	// StatusUnknown: no answer (the lookup failed temporarily).
	StatusUnknown Status = iota
	// StatusAnswer: records of the type asked exist.
	StatusAnswer
	// StatusNXDOMAIN: the name does not exist.
	StatusNXDOMAIN
	// StatusNODATA: the name exists without records of the type asked.
	StatusNODATA
)

func (s Status) String() string {
	switch s {
	case StatusAnswer:
		return "answer"
	case StatusNXDOMAIN:
		return "NXDOMAIN"
	case StatusNODATA:
		return "NODATA"
	}
	return "unknown"
}

// Result describes the answer behind a lookup's records.
type Result struct {
	Status Status
	// Authentic is the AD bit of the response(s) the records came from
	// (RFC 4035 section 3.2.3): the upstream validated them with DNSSEC.
	// Only meaningful with a trusted, validating upstream.
	Authentic bool
	// Name is the canonical name the records belong to: the name asked,
	// or the end of the CNAME chain followed.
	Name string
	// CNAMEs are the aliases followed, in order, starting with the name
	// asked if it was one; empty when the name was not an alias.
	CNAMEs []string
	// TTL is how long the answer stays valid, in seconds: the smallest
	// TTL of the records used, or the negative TTL (RFC 2308 section 5);
	// from the cache, what remains of it.
	TTL uint32
	// Server is the server that answered ("ip:port").
	Server string
}

// Limits of answers.
const (
	maxCNAMEs = 8 // aliases followed in one lookup
	// maxTTL caps how long an answer is cached.
	maxTTL = 24 * 60 * 60
	// maxNegTTL caps how long a negative answer is cached (RFC 2308
	// section 5: "values of one to three hours have been found to work
	// well").
	maxNegTTL = 3 * 60 * 60
)

// answer is a response reduced to what lookups need. Answers are shared
// by the cache and by coalesced callers: never modify one; copy records
// before handing them out.
type answer struct {
	msg       *dns.Msg
	status    Status
	name      string   // canonical name (lowercase FQDN)
	cnames    []string // aliases followed
	rrs       []dns.RR // records of the type asked at name
	authentic bool
	ttl       uint32 // seconds; 0 = do not cache
	server    string
}

// newAnswer classifies resp, the response for (qname, qtype): records, or
// NXDOMAIN, or NODATA (RFC 2308 section 2). resp's rcode must be NOERROR
// or NXDOMAIN. A CNAME chain longer than maxCNAMEs is an error.
func newAnswer(qname string, qtype uint16, resp *dns.Msg, server string) (*answer, error) {
	name, chain, rrs, err := followCNAMEs(qname, qtype, resp.Answer)
	if err != nil {
		return nil, err
	}
	a := &answer{msg: resp, name: name, rrs: rrs, authentic: resp.AuthenticatedData, server: server}
	for _, c := range chain {
		a.cnames = append(a.cnames, strings.ToLower(c.Hdr.Name))
	}
	// RFC 6604 section 2.1: after a CNAME chain the rcode is about the
	// last name.
	switch {
	case resp.Rcode == dns.RcodeNameError:
		a.status = StatusNXDOMAIN
		a.ttl = min(negativeTTL(resp), minTTL(chain), maxNegTTL)
	case len(rrs) == 0:
		a.status = StatusNODATA
		a.ttl = min(negativeTTL(resp), minTTL(chain), maxNegTTL)
	default:
		a.status = StatusAnswer
		a.ttl = min(minTTL(chain), minTTL(rrs), maxTTL)
	}
	return a, nil
}

// errCNAMEChain: the answer's CNAME chain is longer than maxCNAMEs or
// loops.
type errCNAMEChain struct{}

func (errCNAMEChain) Error() string { return "CNAME chain longer than 8" }

// emptyRdata reports whether rr carries no RDATA: every field besides the
// header has its zero value (a real record has at least a root name, an
// address or a string).
func emptyRdata(rr dns.RR) bool {
	if h, ok := rr.(*dns.RR_Header); ok {
		return h.Rrtype != dns.TypeANY
	}
	v := reflect.ValueOf(rr)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return false
	}
	e := v.Elem()
	for i := 0; i < e.NumField(); i++ {
		if e.Type().Field(i).Name == "Hdr" {
			continue
		}
		if !e.Field(i).IsZero() {
			return false
		}
	}
	return true
}

// errEmptyRdata: a record of the type asked for had no RDATA.
type errEmptyRdata struct{ rrtype uint16 }

func (e errEmptyRdata) Error() string {
	return dns.TypeToString[e.rrtype] + " record with RDLENGTH 0 in the answer"
}

// followCNAMEs finds the records of type qtype for qname in an answer
// section, following CNAME records (RFC 1034 section 3.6.2, RFC 2181
// section 10.1) unless CNAME itself is asked. It returns the canonical
// name, the CNAMEs followed and the records.
func followCNAMEs(qname string, qtype uint16, answer []dns.RR) (name string, chain []*dns.CNAME, rrs []dns.RR, err error) {
	name = strings.ToLower(qname)
	for {
		var next *dns.CNAME
		for _, rr := range answer {
			h := rr.Header()
			if !strings.EqualFold(h.Name, name) || h.Class != dns.ClassINET {
				continue
			}
			if h.Rrtype == qtype {
				if emptyRdata(rr) {
					// RDLENGTH 0 (miekg/dns unpacks it as a record with
					// zero fields, or a bare header): no data of the type asked for. Neither a record
					// nor NODATA: a temporary error, so that no caller
					// takes it for "no MX" (implicit MX) or "no TLSA".
					return "", nil, nil, errEmptyRdata{h.Rrtype}
				}
				rrs = append(rrs, rr)
			} else if c, ok := rr.(*dns.CNAME); ok && next == nil {
				next = c
			}
		}
		if len(rrs) > 0 || next == nil {
			return name, chain, rrs, nil
		}
		if len(chain) == maxCNAMEs {
			return "", nil, nil, errCNAMEChain{}
		}
		chain = append(chain, next)
		name = strings.ToLower(dns.Fqdn(next.Target))
	}
}

// negativeTTL is how long a negative answer may be cached: the smaller of
// the TTL and the MINIMUM field of the SOA in the authority section (RFC
// 2308 section 5), 0 (not cached) without an SOA.
func negativeTTL(resp *dns.Msg) uint32 {
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return min(soa.Hdr.Ttl, soa.Minttl)
		}
	}
	return 0
}

// minTTL is the smallest TTL of rrs, the maximum uint32 if rrs is empty.
func minTTL[R dns.RR](rrs []R) uint32 {
	ttl := ^uint32(0)
	for _, rr := range rrs {
		ttl = min(ttl, rr.Header().Ttl)
	}
	return ttl
}

// result is the Result of a.
func (a *answer) result() Result {
	return Result{
		Status:    a.status,
		Authentic: a.authentic,
		Name:      a.name,
		CNAMEs:    append([]string(nil), a.cnames...),
		TTL:       a.ttl,
		Server:    a.server,
	}
}

// err is the error for a negative answer, nil for records.
func (a *answer) err(name string, qtype uint16) error {
	var kind error
	switch a.status {
	case StatusAnswer:
		return nil
	case StatusNXDOMAIN:
		kind = ErrNotExist
	default:
		kind = ErrNoRecords
	}
	return &Error{Name: name, Type: qtype, Kind: kind, Rcode: a.msg.Rcode, Server: a.server}
}

// remaining returns a copy of a whose TTL is what is left at now of an
// answer that expires at expires.
func (a *answer) remaining(now, expires time.Time) *answer {
	c := *a
	left := expires.Sub(now)
	c.ttl = uint32((left + time.Second - 1) / time.Second)
	return &c
}
