package msgauth

import (
	"context"
	"net"
	"strings"
	"time"

	"blitiri.com.ar/go/spf"

	"github.com/mxedge/mxedge/policy"
	"github.com/mxedge/mxedge/resolver"
)

// SPFResult is one SPF evaluation: the RFC 7208 section 2.6 result and the
// identity it was evaluated for.
type SPFResult struct {
	Result spf.Result
	Domain string // the domain evaluated ("" when not evaluated)
	Sender string // the MAIL FROM identity (postmaster@helo for <>)
	Err    string // the library's explanation, for the log
}

// SPFResults are both identities' results, kept in the Txn at MAIL FROM.
type SPFResults struct {
	Helo SPFResult
	Mail SPFResult
}

type spfKey struct{}

// SPFOf returns the SPF results the SPF check kept in t, or nil.
func SPFOf(t *policy.Txn) *SPFResults {
	r, _ := t.Value(spfKey{}).(*SPFResults)
	return r
}

// SPF is the MAIL check. Fail and TempError are its actions:
//   - Fail: policy.ActionLog (default: the result feeds DMARC and
//     Authentication-Results only) or policy.ActionReject (550 5.7.23).
//   - TempError: policy.ActionOff (default: accepted, reported),
//     policy.ActionLog, or policy.ActionDefer (451 4.7.24; ActionReject
//     is taken as ActionDefer: a temporary error is never a 5xx).
//
// Helo also evaluates the HELO identity (RFC 7208 section 2.3); with the
// reject action a HELO fail refuses like a MAIL FROM fail.
type SPF struct {
	DNS       policy.DNS
	Timeout   time.Duration // per evaluation (all its lookups); default 10 s
	Fail      policy.Action
	TempError policy.Action
	Helo      bool
}

// Name implements policy.Check.
func (*SPF) Name() string { return "spf" }

// CheckMail implements policy.MailCheck.
func (s *SPF) CheckMail(ctx context.Context, c *policy.Conn, t *policy.Txn) policy.Result {
	res := &SPFResults{}
	t.SetValue(spfKey{}, res)
	if c.Trusted || !c.IP.IsValid() {
		return policy.Result{}
	}
	helo := strings.TrimSuffix(strings.ToLower(c.Helo), ".")
	heloName := helo != "" && !strings.HasPrefix(helo, "[") && strings.Contains(helo, ".")
	if s.Helo && heloName {
		res.Helo = s.eval(ctx, c.IP.AsSlice(), helo, "postmaster@"+helo)
		res.Helo.Sender = ""
	}
	sender := t.From
	if sender == "" {
		if !heloName {
			res.Mail = SPFResult{Result: spf.None}
			return policy.Result{}
		}
		sender = "postmaster@" + helo // RFC 7208 section 2.4
	}
	if at := strings.LastIndexByte(sender, '@'); at < 0 || at == len(sender)-1 {
		res.Mail = SPFResult{Result: spf.None, Sender: sender}
	} else {
		res.Mail = s.eval(ctx, c.IP.AsSlice(), helo, sender)
	}
	return s.decide(res)
}

func (s *SPF) eval(ctx context.Context, ip net.IP, helo, sender string) SPFResult {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, domain, _ := strings.Cut(sender, "@")
	r, err := spf.CheckHostWithSender(ip, helo, sender,
		spf.WithContext(ctx), spf.WithResolver(resolver.NetStyle{DNS: s.DNS}))
	out := SPFResult{Result: r, Domain: strings.ToLower(domain), Sender: sender}
	if err != nil {
		out.Err = err.Error()
	}
	return out
}

// decide turns the results into the action configured.
func (s *SPF) decide(res *SPFResults) policy.Result {
	for _, r := range []SPFResult{res.Helo, res.Mail} {
		switch r.Result {
		case spf.Fail:
			reply := &policy.Reply{Code: 550, Enhanced: [3]int{5, 7, 23},
				Text: "SPF validation failed for " + printable(r.Domain)}
			switch s.Fail {
			case policy.ActionReject:
				return policy.Result{Reply: reply, Reason: "spf fail " + r.Domain + ": " + r.Err}
			case policy.ActionLog:
				return policy.Result{Logged: reply, Reason: "spf fail " + r.Domain}
			}
		case spf.TempError:
			reply := &policy.Reply{Code: 451, Enhanced: [3]int{4, 7, 24},
				Text: "SPF temporary error for " + printable(r.Domain)}
			switch s.TempError {
			case policy.ActionDefer, policy.ActionReject:
				return policy.Result{Reply: reply, Reason: "spf temperror " + r.Domain + ": " + r.Err}
			case policy.ActionLog:
				return policy.Result{Logged: reply, Reason: "spf temperror " + r.Domain}
			}
		}
	}
	return policy.Result{}
}

// printable keeps a domain for a reply: printable ASCII, 200 bytes.
func printable(s string) string {
	if len(s) > 200 {
		s = s[:200]
	}
	b := []byte(s)
	for i, c := range b {
		if c <= ' ' || c > '~' {
			b[i] = '?'
		}
	}
	return string(b)
}
