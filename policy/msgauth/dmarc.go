package msgauth

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/mail"
	"net/textproto"
	"strings"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"

	"github.com/mxedge/mxedge/policy"
	"github.com/mxedge/mxedge/resolver"
)

// DMARCResult is the message's DMARC evaluation.
type DMARCResult struct {
	Result string // pass, fail, none, temperror, permerror (RFC 8601 section 2.7.7)
	From   string // the RFC 5322.From domain
	Policy dmarc.Policy
	Reason string
}

type dmarcKey struct{}

// DMARCOf returns the DMARC evaluation kept in t, or nil.
func DMARCOf(t *policy.Txn) *DMARCResult {
	r, _ := t.Value(dmarcKey{}).(*DMARCResult)
	return r
}

// DMARC is the DATA check after DKIM. Reject is the action of a failed
// evaluation under p=reject (ActionReject: 550 5.7.1 in the session,
// nothing queued; ActionLog: accepted, logged); Quarantine that under
// p=quarantine (ActionLog, the default: accepted with the verdict in
// Authentication-Results; ActionReject: refused like p=reject). Exempt
// lists From domains whose failures are never refused (mailing lists
// that break signatures); a domain's subdomains are exempt too.
type DMARC struct {
	DNS        policy.DNS
	Timeout    time.Duration // all lookups of one message; default 10 s
	Reject     policy.Action
	Quarantine policy.Action
	Exempt     map[string]bool
	// Sample decides pct (RFC 7489 section 6.6.4): it returns true with
	// probability pct/100. Nil: math/rand.
	Sample func(pct int) bool
}

// Name implements policy.Check.
func (*DMARC) Name() string { return "dmarc" }

var (
	replyFromCount = &policy.Reply{Code: 550, Enhanced: [3]int{5, 7, 1},
		Text: "Message must have exactly one From address (RFC 7489 section 6.6.1)"}
)

// CheckData implements policy.DataCheck.
func (d *DMARC) CheckData(ctx context.Context, c *policy.Conn, t *policy.Txn, m policy.Message) policy.Result {
	from, err := fromDomain(m)
	if err != nil {
		if errors.Is(err, errFromCount) {
			t.SetValue(dmarcKey{}, &DMARCResult{Result: "permerror", Reason: err.Error()})
			return policy.Result{Reply: replyFromCount, Reason: err.Error()}
		}
		return policy.Result{Err: fmt.Errorf("dmarc: read header: %w", err)}
	}
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	lctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res := d.evaluate(lctx, from, SPFOf(t), DKIMOf(t))
	t.SetValue(dmarcKey{}, res)
	if res.Result != "fail" {
		return policy.Result{}
	}
	action := policy.ActionLog
	switch res.Policy {
	case dmarc.PolicyReject:
		action = d.Reject
	case dmarc.PolicyQuarantine:
		action = d.Quarantine
	}
	if action != policy.ActionReject {
		return policy.Result{Reason: "dmarc fail " + from + " p=" + string(res.Policy)}
	}
	reply := &policy.Reply{Code: 550, Enhanced: [3]int{5, 7, 1},
		Text: "Rejected by DMARC policy for " + printable(from)}
	if d.exempt(from) {
		return policy.Result{Logged: reply, Reason: "dmarc fail " + from + " (exempt)"}
	}
	return policy.Result{Reply: reply, Reason: "dmarc fail " + from + " p=" + string(res.Policy) + ": " + res.Reason}
}

func (d *DMARC) exempt(domain string) bool {
	for dom := domain; dom != ""; {
		if d.Exempt[dom] {
			return true
		}
		_, rest, ok := strings.Cut(dom, ".")
		if !ok {
			break
		}
		dom = rest
	}
	return false
}

// evaluate is RFC 7489 section 6.6.2 and 6.6.3 for From domain from.
func (d *DMARC) evaluate(ctx context.Context, from string, s *SPFResults, k *DKIMResults) *DMARCResult {
	res := &DMARCResult{From: from}
	rec, sub, err := d.lookup(ctx, from)
	switch {
	case err != nil && dmarc.IsTempFail(err):
		res.Result, res.Reason = "temperror", err.Error()
		return res
	case err != nil:
		res.Result, res.Reason = "permerror", err.Error()
		return res
	case rec == nil:
		res.Result = "none"
		return res
	}
	res.Policy = rec.Policy
	if sub && rec.SubdomainPolicy != "" {
		res.Policy = rec.SubdomainPolicy
	}
	if aligned := d.aligned(from, rec, s, k); aligned != "" {
		res.Result, res.Reason = "pass", aligned
		return res
	}
	res.Result, res.Reason = "fail", "no aligned pass"
	if rec.Percent != nil && *rec.Percent < 100 {
		sample := d.Sample
		if sample == nil {
			sample = func(pct int) bool { return rand.IntN(100) < pct }
		}
		if !sample(*rec.Percent) {
			// Not sampled: the next lower policy (section 6.6.4).
			switch res.Policy {
			case dmarc.PolicyReject:
				res.Policy = dmarc.PolicyQuarantine
			case dmarc.PolicyQuarantine:
				res.Policy = dmarc.PolicyNone
			}
			res.Reason += fmt.Sprintf(", not sampled (pct=%d)", *rec.Percent)
		}
	}
	return res
}

// lookup finds the record of from, else of its organisational domain
// (section 6.6.3); sub reports the latter. A lookup failure is
// dmarc.IsTempFail; no record is (nil, false, nil).
func (d *DMARC) lookup(ctx context.Context, from string) (rec *dmarc.Record, sub bool, err error) {
	opts := &dmarc.LookupOptions{LookupTXT: func(name string) ([]string, error) {
		return resolver.NetStyle{DNS: d.DNS}.LookupTXT(ctx, name)
	}}
	rec, err = dmarc.LookupWithOptions(from, opts)
	if !errors.Is(err, dmarc.ErrNoPolicy) {
		return rec, false, err
	}
	org := OrgDomain(from)
	if org == from || org == "" {
		return nil, false, nil
	}
	rec, err = dmarc.LookupWithOptions(org, opts)
	if errors.Is(err, dmarc.ErrNoPolicy) {
		return nil, true, nil
	}
	return rec, true, err
}

// OrgDomain is the organisational domain of domain (RFC 7489 section 3.2),
// from the public suffix list: "mail.example.co.uk" -> "example.co.uk".
func OrgDomain(domain string) string {
	org, err := publicsuffix.EffectiveTLDPlusOne(domain)
	if err != nil {
		return domain
	}
	return org
}

// aligned returns what passed aligned ("spf", "dkim example.org"), or "".
func (d *DMARC) aligned(from string, rec *dmarc.Record, s *SPFResults, k *DKIMResults) string {
	if k != nil {
		for _, sig := range k.Sigs {
			if sig.Result == "pass" && align(sig.Domain, from, rec.DKIMAlignment) {
				return "dkim " + sig.Domain
			}
		}
	}
	if s != nil && s.Mail.Result == spf.Pass && align(s.Mail.Domain, from, rec.SPFAlignment) {
		return "spf " + s.Mail.Domain
	}
	return ""
}

// align is section 3.1.1 and 3.1.2: strict is equality, relaxed the same
// organisational domain.
func align(id, from string, mode dmarc.AlignmentMode) bool {
	id = strings.TrimSuffix(strings.ToLower(id), ".")
	if id == "" {
		return false
	}
	if id == from {
		return true
	}
	if mode == dmarc.AlignmentStrict {
		return false
	}
	return OrgDomain(id) == OrgDomain(from)
}

var errFromCount = errors.New("not exactly one From address")

// fromDomain reads the header section of m and returns the domain of its
// one From address, lowercase.
func fromDomain(m policy.Message) (string, error) {
	rc, err := m.Open()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h, err := textproto.NewReader(bufio.NewReader(io.LimitReader(rc, 1<<20))).ReadMIMEHeader()
	if err != nil && len(h) == 0 {
		return "", fmt.Errorf("%w: %v", errFromCount, err)
	}
	froms := h.Values("From")
	if len(froms) != 1 {
		return "", fmt.Errorf("%w: %d From fields", errFromCount, len(froms))
	}
	list, err := mail.ParseAddressList(froms[0])
	if err != nil {
		return "", fmt.Errorf("%w: From: %v", errFromCount, err)
	}
	if len(list) != 1 {
		return "", fmt.Errorf("%w: %d addresses", errFromCount, len(list))
	}
	at := strings.LastIndexByte(list[0].Address, '@')
	if at < 0 {
		return "", fmt.Errorf("%w: no domain", errFromCount)
	}
	return strings.TrimSuffix(strings.ToLower(list[0].Address[at+1:]), "."), nil
}
