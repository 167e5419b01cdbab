package msgauth

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/authres"
	"github.com/miekg/dns"

	"github.com/mxedge/mxedge/policy"
	"github.com/mxedge/mxedge/resolver"
)

// noDNS answers every query "no such domain" at once.
type noDNS struct{}

func (noDNS) Lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, resolver.Result, error) {
	return nil, resolver.Result{}, &resolver.Error{Name: name, Type: qtype, Kind: resolver.ErrNotExist}
}

func (noDNS) LookupIP(ctx context.Context, host string) ([]net.IP, resolver.Result, error) {
	return nil, resolver.Result{}, &resolver.Error{Name: host, Kind: resolver.ErrNotExist}
}

// FuzzDKIMHeaders: random header sections with DKIM-Signature and
// Authentication-Results fields go through the DKIM verifier, the
// forged-field filter, DMARC's From parsing and our own field: no panic,
// no hang, the filter never adds bytes and keeps the body, and our field
// always parses back.
func FuzzDKIMHeaders(f *testing.F) {
	f.Add("DKIM-Signature: v=1; a=rsa-sha256; d=x.test; s=s; h=from; bh=; b=\r\nFrom: a@x.test\r\n", "body\r\n")
	f.Add(strings.SplitN(rfc8463Msg, "\r\n\r\n", 2)[0]+"\r\n", "Hi.\r\n")
	f.Add("Authentication-Results: mx.relay.test; spf=pass\r\nAuthentication-Results:\r\n (x) other; dkim=pass\r\n", "")
	f.Add("DKIM-Signature: v=1; a=ed25519-sha256; c=simple/relaxed; d=\xff; s=\x00; h=; bh=AAAA; b=AAAA; l=-1\r\n", "x")
	f.Add("From: a@b, c@d\r\nFrom:\r\n", "\r\n")
	f.Fuzz(func(t *testing.T, hdr, body string) {
		msg := hdr + "\r\n" + body
		d := &DKIM{DNS: noDNS{}}
		tx := &policy.Txn{}
		c := &policy.Conn{}
		w := d.Stream(context.Background(), c, tx)
		w.Write([]byte(msg))
		w.Close()
		d.CheckData(context.Background(), c, tx, nil)

		a := &AuthResults{ServID: "mx.relay.test"}
		var out bytes.Buffer
		fw := (&policy.Chain{}).Add(a).HeaderFilter(c, tx, &out)
		if n, err := fw.Write([]byte(msg)); n != len(msg) || err != nil {
			t.Fatalf("filter wrote %d, %v", n, err)
		}
		fw.(interface{ Flush() error }).Flush()
		if out.Len() > len(msg) {
			t.Fatalf("filter grew the message: %d > %d", out.Len(), len(msg))
		}
		if i := strings.Index(msg, "\r\n\r\n"); i >= 0 && !strings.Contains(hdr, "\n\n") && !strings.Contains(hdr, "\n\r\n") && !bytes.HasSuffix(out.Bytes(), []byte(msg[i+4:])) {
			t.Fatalf("body changed")
		}

		(&DMARC{DNS: noDNS{}, Reject: policy.ActionReject}).CheckData(context.Background(), c, tx, message(msg))
		field := a.Field(c, tx)
		_, v, _ := strings.Cut(strings.TrimSuffix(field, "\r\n"), ":")
		if _, _, err := authresParse(v); err != nil {
			t.Fatalf("our field %q does not parse: %v", field, err)
		}
	})
}

func authresParse(v string) (string, int, error) {
	id, rs, err := authres.Parse(strings.ReplaceAll(v, "\r\n", ""))
	return id, len(rs), err
}
