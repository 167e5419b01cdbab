package policy

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/resolver"
)

// SenderDomain refuses a MAIL FROM whose domain cannot receive mail
// (Postfix reject_unknown_sender_domain): no MX record and no A or AAAA
// record gives "550 5.1.8 Domain not found", a null MX (RFC 7505: "0 .")
// "550 5.7.27 Domain does not accept mail"; a temporary DNS failure is a
// "450 4.1.8". Only DNS is asked: the sender is never verified by SMTP
// (shared/PRINCIPLES.md: never verify senders toward the outside). The
// null sender, address literals and Trusted clients are not checked.
type SenderDomain struct {
	Action  Action
	DNS     DNS
	Timeout time.Duration // bounds the lookups
}

// Name implements Check.
func (*SenderDomain) Name() string { return "sender" }

// CheckMail implements MailCheck.
func (s *SenderDomain) CheckMail(ctx context.Context, c *Conn, t *Txn) Result {
	i := strings.LastIndexByte(t.From, '@')
	if s.Action == ActionOff || c.Trusted || i < 0 || strings.HasPrefix(t.From[i+1:], "[") {
		return Result{}
	}
	domain := t.From[i+1:]
	if s.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.Timeout)
		defer cancel()
	}
	notFound := func() Result {
		return s.Action.decide(false, replyUnknownSenderDomain(550, t.From), replyUnknownSenderDomain(450, t.From), "sender domain "+domain+" not found")
	}
	temp := func(what string) Result {
		return s.Action.decide(true, nil, replyUnknownSenderDomain(450, t.From), "sender domain "+domain+": "+what+" lookup failed")
	}
	rrs, _, err := s.DNS.Lookup(ctx, domain, dns.TypeMX)
	switch {
	case err == nil:
		var mxs []*dns.MX
		for _, rr := range rrs {
			if mx, ok := rr.(*dns.MX); ok {
				mxs = append(mxs, mx)
			}
		}
		if len(mxs) == 1 && mxs[0].Mx == "." {
			return s.Action.decide(false, replyNullMXSender(t.From), replyUnknownSenderDomain(450, t.From), "sender domain "+domain+" has a null MX")
		}
		if len(mxs) > 0 {
			return Result{}
		}
	case resolver.IsTemporary(err):
		return temp("MX")
	case errors.Is(err, resolver.ErrNotExist):
		return notFound()
	}
	// No MX records: the domain's own address is its implicit MX (RFC
	// 5321 section 5.1).
	ips, _, err := s.DNS.LookupIP(ctx, domain)
	switch {
	case len(ips) > 0:
		return Result{}
	case !resolver.IsTemporary(err):
		return notFound()
	}
	return temp("address")
}
