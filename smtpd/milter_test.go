package smtpd

import (
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-milter"

	"github.com/mxedge/mxedge/internal/milterclient"
	"github.com/mxedge/mxedge/internal/miltertest"
	"github.com/mxedge/mxedge/internal/testlog"
	"github.com/mxedge/mxedge/policy"
)

// rcptMilter adds the recipients of the message's X-Add fields and
// deletes those of its X-Del fields (SMFIR_ADDRCPT, SMFIR_DELRCPT).
type rcptMilter struct {
	milter.NoOpMilter
	add, del []string
}

func (r *rcptMilter) Headers(h textproto.MIMEHeader, _ *milter.Modifier) (milter.Response, error) {
	r.add, r.del = h.Values("X-Add"), h.Values("X-Del")
	return milter.RespContinue, nil
}

func (r *rcptMilter) Body(m *milter.Modifier) (milter.Response, error) {
	for _, a := range r.add {
		m.AddRecipient(a)
	}
	for _, a := range r.del {
		m.DeleteRecipient(a)
	}
	return milter.RespAccept, nil
}

// A pre-queue milter's recipient changes compare addresses as a repeated
// RCPT does: adding a case variant of a recipient adds nothing (the
// message goes to the backend once), deleting one deletes the recipient,
// except in a relay domain configured case-sensitive, where the variant
// is another mailbox. An added domain is normalised as at RCPT; an
// address RCPT would refuse is never queued, it is logged.
func TestMilterRecipientEditsSameMailbox(t *testing.T) {
	ln := miltertest.Start(t, "127.0.0.1:0", func() milter.Milter { return &rcptMilter{} },
		milter.OptAddRcpt|milter.OptRemoveRcpt)
	var logs testlog.Buffer
	m := &policy.Milter{Config: milterclient.Config{Name: "rcpts", Network: "tcp", Address: ln.Addr().String(),
		Hostname: "mx.example.test", ConnectTimeout: 2 * time.Second, CommandTimeout: 2 * time.Second},
		Logger: logs.Logger()}
	addr, q, _ := startListener(t, func(o *Options) { o.CaseSensitive = map[string]bool{"strict.test": true} },
		relayFor("relay.test", "strict.test"), m)
	for _, tc := range []struct {
		name     string
		rcpts    []string
		add, del []string
		want     string
	}{
		{"add a case variant", []string{"user@relay.test"}, []string{"User@relay.test"}, nil, "user@relay.test"},
		{"add with the domain in capitals", []string{"user@relay.test"}, []string{"user@Relay.TEST"}, nil, "user@relay.test"},
		{"add a case variant, case-sensitive domain", []string{"user@strict.test"}, []string{"User@strict.test"}, nil,
			"user@strict.test,User@strict.test"},
		{"add a quoted local part", []string{"user@relay.test"}, []string{`"john doe"@relay.test`}, nil,
			`user@relay.test,"john doe"@relay.test`},
		{"add a malformed address", []string{"user@relay.test"}, []string{"nobody@", "nobody"}, nil, "user@relay.test"},
		{"delete a case variant", []string{"user@relay.test", "other@relay.test"}, nil, []string{"USER@relay.test"},
			"other@relay.test"},
		{"delete a case variant, case-sensitive domain", []string{"user@strict.test", "other@strict.test"}, nil,
			[]string{"USER@strict.test"}, "user@strict.test,other@strict.test"},
		{"delete exactly, case-sensitive domain", []string{"user@strict.test", "other@strict.test"}, nil,
			[]string{"user@strict.test"}, "other@strict.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			c.envelope(tc.rcpts...)
			var hdr strings.Builder
			for _, a := range tc.add {
				hdr.WriteString("X-Add: " + a + "\r\n")
			}
			for _, a := range tc.del {
				hdr.WriteString("X-Del: " + a + "\r\n")
			}
			c.send(hdr.String() + "Subject: x\r\n\r\nhi\r\n.\r\n")
			id := queuedID(t, c.reply())
			env, err := q.Get(id)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, rc := range env.Rcpts {
				got = append(got, rc.Addr)
			}
			if strings.Join(got, ",") != tc.want {
				t.Errorf("queued recipients %v, want %s", got, tc.want)
			}
		})
	}
	for _, bad := range []string{"<nobody@>", "<nobody>"} {
		if !strings.Contains(logs.String(), "milter=rcpts action=add rcpt="+bad+` err="smtpd: recipient: bad address syntax"`) {
			t.Errorf("no log line for the refused %s:\n%s", bad, logs.String())
		}
	}
}
