package delivery

import (
	"context"
	"strings"
	"testing"

	"github.com/mxedge/mxedge/queue"
)

// Issue 16, section 3: RET, ENVID, NOTIFY and ORCPT reach a next hop that
// announces DSN (and the results say so), and are left out for one that
// does not.
func TestDSNParametersPassedOn(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ext       []string
		mail      string
		rcpt      string
		dsnPassed bool
	}{
		{"next hop with DSN", []string{"PIPELINING", "8BITMIME", "DSN", "SIZE 1000000"},
			"MAIL FROM:<s@src.test> BODY=7BIT SIZE=20 RET=HDRS ENVID=list+2Bid-7",
			"RCPT TO:<a@relay.test> NOTIFY=SUCCESS,FAILURE ORCPT=RFC822;old+2Ba@relay.test", true},
		{"next hop without DSN", []string{"PIPELINING", "8BITMIME", "SIZE 1000000"},
			"MAIL FROM:<s@src.test> BODY=7BIT SIZE=20", "RCPT TO:<a@relay.test>", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := startServer(t, "127.0.0.3:0")
			be.SetExtensions(tc.ext...)
			d := newDeliverer(t, map[string]string{"relay.test": be.Addr()})
			msg := spooled(t, "s@src.test", "Subject: x\r\n\r\nbody\r\n", "a@relay.test", "b@relay.test")
			msg.Ret, msg.EnvID = "HDRS", "list+id-7"
			msg.Params = map[string]queue.RcptParams{
				"a@relay.test": {Notify: []string{"SUCCESS", "FAILURE"}, ORcpt: "rfc822;old+a@relay.test"},
			}
			res := d.Deliver(context.Background(), msg)
			for _, r := range res {
				if r.Code != 250 || r.DSNPassed != tc.dsnPassed {
					t.Errorf("%s: %+v", r.Rcpt, r)
				}
			}
			cmds := strings.Join(be.Commands(), "\n")
			for _, want := range []string{tc.mail, tc.rcpt + "\n", "RCPT TO:<b@relay.test>\n"} {
				if !strings.Contains(cmds+"\n", want) {
					t.Errorf("no %q in\n%s", want, cmds)
				}
			}
		})
	}
}

// NOTIFY=NEVER goes alone; an ORCPT the client cannot encode is left
// out, not a failure of the recipient.
func TestRcptOptionsCleaned(t *testing.T) {
	msg := &queue.Message{Params: map[string]queue.RcptParams{
		"a@x.test": {Notify: []string{"NEVER", "SUCCESS"}},
		"b@x.test": {ORcpt: "rfc822;jörg@x.test"},
		"c@x.test": {Notify: []string{"success,delay"}, ORcpt: "utf-8;jörg@x.test"},
	}}
	if o := rcptOptions(msg, "a@x.test"); o == nil || len(o.Notify) != 1 || o.Notify[0] != "NEVER" {
		t.Errorf("a: %+v", o)
	}
	if o := rcptOptions(msg, "b@x.test"); o != nil {
		t.Errorf("b: %+v, want none", o)
	}
	if o := rcptOptions(msg, "c@x.test"); o == nil || len(o.Notify) != 2 || o.OriginalRecipientType != "UTF-8" {
		t.Errorf("c: %+v", o)
	}
	if o := rcptOptions(msg, "d@x.test"); o != nil {
		t.Errorf("d: %+v", o)
	}
}

// Issue 16, section 4: a message that announced SMTPUTF8 but whose
// envelope and header section are ASCII goes to a next hop without
// SMTPUTF8, without the parameter; one that needs it is returned (5.6.7).
func TestSMTPUTF8OnlyWhenNeeded(t *testing.T) {
	be := startServer(t, "127.0.0.3:0")
	be.SetExtensions("PIPELINING", "8BITMIME", "SIZE 1000000") // no SMTPUTF8
	d := newDeliverer(t, map[string]string{"relay.test": be.Addr()})
	for _, tc := range []struct {
		name, from, rcpt, body string
		code                   int
	}{
		{"ascii only", "s@src.test", "a@relay.test", "Subject: plain\r\n\r\nbody grüße in the body\r\n", 250},
		{"utf-8 header", "s@src.test", "a@relay.test", "Subject: grüße\r\n\r\nbody\r\n", 550},
		{"utf-8 sender", "jörg@src.test", "a@relay.test", "Subject: plain\r\n\r\nbody\r\n", 550},
		{"utf-8 recipient", "s@src.test", "jörg@relay.test", "Subject: plain\r\n\r\nbody\r\n", 550},
	} {
		msg := spooled(t, tc.from, tc.body, tc.rcpt)
		msg.UTF8 = true
		res := d.Deliver(context.Background(), msg)
		if len(res) != 1 || res[0].Code != tc.code || tc.code == 550 && res[0].Enhanced != "5.6.7" {
			t.Errorf("%s: %+v", tc.name, res)
		}
	}
	msgs := be.Messages()
	if len(msgs) != 1 || strings.Contains(msgs[0].From, "SMTPUTF8") {
		t.Errorf("delivered %+v, want one message without SMTPUTF8", msgs)
	}
}
