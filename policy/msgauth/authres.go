package msgauth

import (
	"bytes"
	"context"
	"strings"

	"github.com/emersion/go-msgauth/authres"

	"github.com/mxedge/mxedge/policy"
)

// AuthResults is the DATA check, last in the chain, that adds the one
// Authentication-Results field (RFC 8601) with the verdicts of the checks
// before it: iprev (the listener's reverse lookup, section 2.7.3), spf,
// dkim (one per signature), dmarc. It is also the policy.HeaderDropper
// that removes incoming Authentication-Results fields carrying ServID
// (section 5: a forgery, or an earlier pass of ours that must not be
// trusted); ARC-Authentication-Results fields are left alone.
type AuthResults struct {
	// ServID is the authserv-id, the relay's hostname unless configured
	// (an MX pair may share one).
	ServID string
}

// Name implements policy.Check.
func (*AuthResults) Name() string { return "auth_results" }

// DropNames implements policy.HeaderDropper.
func (*AuthResults) DropNames() []string { return []string{"Authentication-Results"} }

// DropField implements policy.HeaderDropper: true when the field's
// authserv-id is ours (compared without case, RFC 8601 section 2.5), or
// when it cannot be parsed far enough to tell.
func (a *AuthResults) DropField(c *policy.Conn, t *policy.Txn, field []byte) bool {
	_, v, ok := bytes.Cut(field, []byte(":"))
	if !ok {
		return false
	}
	id := ServIDOf(string(v))
	return id == "" || strings.EqualFold(id, a.ServID)
}

// ServIDOf returns the authserv-id of an Authentication-Results field
// value: the first token, comments (RFC 5322 CFWS) skipped; "" if none.
func ServIDOf(v string) string {
	v = unfold(v)
	for {
		v = strings.TrimLeft(v, " \t")
		if !strings.HasPrefix(v, "(") {
			break
		}
		depth, i := 0, 0
		for ; i < len(v); i++ {
			switch v[i] {
			case '\\':
				i++
			case '(':
				depth++
			case ')':
				depth--
			}
			if depth == 0 {
				break
			}
		}
		if i >= len(v) {
			return ""
		}
		v = v[i+1:]
	}
	end := strings.IndexAny(v, "; \t(")
	if end < 0 {
		end = len(v)
	}
	return strings.Trim(v[:end], "\"")
}

func unfold(v string) string {
	return strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(v)
}

// CheckData implements policy.DataCheck: the field, never a refusal.
func (a *AuthResults) CheckData(ctx context.Context, c *policy.Conn, t *policy.Txn, m policy.Message) policy.Result {
	return policy.Result{Headers: []string{a.Field(c, t)}}
}

// Field formats the Authentication-Results field of the transaction, one
// method per line, CRLF-terminated.
func (a *AuthResults) Field(c *policy.Conn, t *policy.Txn) string {
	var rs []authres.Result
	if c.Reverse.Status != policy.ReverseUnknown && c.IP.IsValid() {
		v := authres.ResultValue(c.Reverse.Status)
		if c.Reverse.Status == policy.ReverseMismatch || c.Reverse.Status == policy.ReverseNone {
			v = authres.ResultFail // RFC 8601 section 2.7.3: no PTR or no match
		}
		if c.Reverse.Status == policy.ReverseNone {
			v = authres.ResultPermError
		}
		rs = append(rs, &authres.IPRevResult{Value: v, IP: c.IP.String()})
	}
	if s := SPFOf(t); s != nil {
		if s.Helo.Result != "" {
			rs = append(rs, &authres.SPFResult{Value: authres.ResultValue(s.Helo.Result), Helo: s.Helo.Domain})
		}
		if s.Mail.Result != "" {
			rs = append(rs, &authres.SPFResult{Value: authres.ResultValue(s.Mail.Result), From: s.Mail.Sender})
		}
	}
	if k := DKIMOf(t); k != nil {
		if len(k.Sigs) == 0 {
			rs = append(rs, &authres.DKIMResult{Value: authres.ResultNone})
		}
		for _, s := range k.Sigs {
			rs = append(rs, &authres.DKIMResult{Value: authres.ResultValue(s.Result), Domain: s.Domain, Identifier: s.Identifier})
		}
	}
	if d := DMARCOf(t); d != nil {
		rs = append(rs, &authres.DMARCResult{Value: authres.ResultValue(d.Result), From: d.From})
	}
	if len(rs) == 0 {
		return "Authentication-Results: " + authres.Format(a.ServID, nil) + "\r\n"
	}
	var b strings.Builder
	b.WriteString("Authentication-Results: ")
	b.WriteString(a.ServID)
	for _, r := range rs {
		// One result at a time, so each gets a line of its own; Format
		// leaves a space after a result without properties.
		one := strings.TrimSpace(strings.TrimPrefix(authres.Format(a.ServID, []authres.Result{r}), a.ServID+"; "))
		b.WriteString(";\r\n\t")
		b.WriteString(one)
	}
	b.WriteString("\r\n")
	return b.String()
}
