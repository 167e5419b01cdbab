package policy

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rcptFunc is an RCPT check from a function.
type rcptFunc struct {
	name string
	f    func(r Rcpt) Result
}

func (c rcptFunc) Name() string { return c.name }
func (c rcptFunc) CheckRcpt(_ context.Context, _ *Conn, _ *Txn, r Rcpt) Result {
	return c.f(r)
}

// dataFunc is a DATA check from a function.
type dataFunc struct {
	name string
	f    func() Result
}

func (c dataFunc) Name() string { return c.name }
func (c dataFunc) CheckData(context.Context, *Conn, *Txn, Message) Result {
	return c.f()
}

func fixed(name string, r Result) rcptFunc {
	return rcptFunc{name, func(Rcpt) Result { return r }}
}

func reject(code int) *Reply {
	return &Reply{Code: code, Enhanced: [3]int{code / 100, 7, 1}, Text: "no"}
}

func TestChainFirstDecisiveWins(t *testing.T) {
	var called []string
	track := func(name string, r Result) rcptFunc {
		return rcptFunc{name, func(Rcpt) Result { called = append(called, name); return r }}
	}
	for _, tc := range []struct {
		name   string
		checks []Check
		check  string // deciding check
		code   int    // 0: not refused
		ok     bool
		calls  string
	}{
		{"all dunno", []Check{track("a", Result{}), track("b", Result{})}, "", 0, false, "a,b"},
		{"reject stops", []Check{track("a", Result{Reply: reject(550)}), track("b", Result{})}, "a", 550, false, "a"},
		{"defer stops", []Check{track("a", Result{}), track("b", Result{Reply: reject(450)}), track("c", Result{})}, "b", 450, false, "a,b"},
		{"ok skips the rest", []Check{track("allow", Result{OK: true}), track("deny", Result{Reply: reject(554)})}, "allow", 0, true, "allow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			called = nil
			ch := &Chain{}
			for _, c := range tc.checks {
				ch.Add(c)
			}
			d := ch.Rcpt(context.Background(), &Conn{}, &Txn{}, Rcpt{Addr: "a@b.test"})
			code := 0
			if d.Reply != nil {
				code = d.Reply.Code
			}
			if d.Check != tc.check || code != tc.code || d.OK != tc.ok || strings.Join(called, ",") != tc.calls {
				t.Errorf("decision %+v (check %q, code %d), calls %v", d, d.Check, code, called)
			}
		})
	}
}

// The contract: a check's internal error is a 4xx, never a 5xx and never
// an acceptance; a "refusal" that is not 4xx/5xx is a check bug, answered
// like an internal error.
func TestChainEnforcesInternalErrorContract(t *testing.T) {
	boom := errors.New("DNS timeout")
	for _, tc := range []struct {
		name string
		r    Result
		want string
	}{
		{"error without reply", Result{Err: boom}, "451 4.3.0 Temporary local problem, try again later"},
		{"error with 5xx", Result{Err: boom, Reply: reject(550)}, "451 4.3.0 Temporary local problem, try again later"},
		{"error with OK", Result{Err: boom, OK: true}, "451 4.3.0 Temporary local problem, try again later"},
		{"error with own 4xx", Result{Err: boom, Reply: &Reply{Code: 450, Enhanced: [3]int{4, 7, 1}, Text: "later"}}, "450 4.7.1 later"},
		{"2xx reply", Result{Reply: &Reply{Code: 250, Text: "fine"}}, "451 4.3.0 Temporary local problem, try again later"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := (&Chain{}).Add(fixed("x", tc.r)).Add(fixed("after", Result{OK: true}))
			d := ch.Rcpt(context.Background(), &Conn{}, &Txn{}, Rcpt{})
			if d.Reply == nil || d.Reply.String() != tc.want || d.OK || d.Check != "x" || d.Err == nil {
				t.Errorf("decision %+v, reply %v; want %s from x with Err", d, d.Reply, tc.want)
			}
		})
	}
}

func TestChainDelaysHeadersAndCounters(t *testing.T) {
	ch := &Chain{}
	ch.Add(dataFunc{"one", func() Result { return Result{Delay: 20 * time.Second, Headers: []string{"X-One: 1\r\n"}} }})
	ch.Add(dataFunc{"two", func() Result { return Result{Delay: 20 * time.Second, Headers: []string{"X-Two: 2\r\n"}} }})
	d := ch.Data(context.Background(), &Conn{}, &Txn{}, nil)
	if d.Refused() || d.Delay != MaxDelay || strings.Join(d.Headers, "") != "X-One: 1\r\nX-Two: 2\r\n" {
		t.Errorf("decision %+v", d)
	}
	// A refusal drops the headers collected before it and is counted.
	ch.Add(dataFunc{"three", func() Result { return Result{Reply: reject(550)} }})
	for range 3 {
		d = ch.Data(context.Background(), &Conn{}, &Txn{}, nil)
	}
	if !d.Refused() || len(d.Headers) != 0 || d.Check != "three" {
		t.Errorf("decision %+v", d)
	}
	if n := ch.Refusals(); n["three"] != 3 || n["one"] != 0 || len(n) != 3 {
		t.Errorf("refusals %v", n)
	}
	if st := ch.Stages(); strings.Join(st["data"], ",") != "one,two,three" || len(st["rcpt"]) != 0 {
		t.Errorf("stages %v", st)
	}
}

func TestAddNeedsAStage(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("a check without a stage was accepted")
		}
	}()
	(&Chain{}).Add(nameOnly{})
}

type nameOnly struct{}

func (nameOnly) Name() string { return "nothing" }

func TestRelay(t *testing.T) {
	r := NewRelay([]string{"relay.test"})
	for _, tc := range []struct {
		rc   Rcpt
		code int
	}{
		{Rcpt{Raw: "u@relay.test", Local: "u", Domain: "relay.test"}, 0},
		{Rcpt{Raw: "u@Elsewhere.example", Local: "u", Domain: "elsewhere.example"}, 554},
		{Rcpt{Raw: "v%x@relay.test", Local: "v%x", Domain: "relay.test"}, 554},
		{Rcpt{Raw: "x!v@relay.test", Local: "x!v", Domain: "relay.test"}, 554},
		{Rcpt{Raw: "v@x@relay.test", Local: "v@x", Domain: "relay.test"}, 554},
		{Rcpt{Raw: "v@[192.0.2.1]", Local: "v", Domain: "[192.0.2.1]"}, 554},
	} {
		res := r.CheckRcpt(context.Background(), &Conn{}, &Txn{}, tc.rc)
		code := 0
		if res.Reply != nil {
			code = res.Reply.Code
			if want := "554 5.7.1 <" + tc.rc.Raw + ">: Relay access denied"; res.Reply.String() != want {
				t.Errorf("%s: %q", tc.rc.Raw, res.Reply.String())
			}
		}
		if code != tc.code {
			t.Errorf("%s: code %d, want %d", tc.rc.Raw, code, tc.code)
		}
	}
}

// connFunc is a connect check from a function.
type connFunc struct {
	name string
	f    func() Result
}

func (c connFunc) Name() string                               { return c.name }
func (c connFunc) CheckConnect(context.Context, *Conn) Result { return c.f() }

func laterCheck(name string, r Result, called *[]string) connFunc {
	return connFunc{name, func() Result {
		*called = append(*called, name)
		return Result{Later: func(context.Context) Result { *called = append(*called, name+".later"); return r }}
	}}
}

// The connect stage before the banner decides what it can at once; a
// Later leaves the rest to Pending, which keeps the chain's order.
func TestChainConnectLater(t *testing.T) {
	var called []string
	now := func(name string, r Result) connFunc {
		return connFunc{name, func() Result { called = append(called, name); return r }}
	}
	for _, tc := range []struct {
		name   string
		checks []Check
		before string // decision before the banner: "", "OK", code, "pending"
		after  string // after Pending
		check  string
		calls  string
	}{
		{"immediate OK ends it before any lookup", []Check{now("allow", Result{OK: true}), laterCheck("dnsbl", Result{Reply: reject(554)}, &called)}, "OK", "", "allow", "allow"},
		{"immediate refusal", []Check{now("limit", Result{Reply: reject(421), Disconnect: true}), laterCheck("dnsbl", Result{}, &called)}, "421", "", "limit", "limit"},
		{"later refuses", []Check{now("limit", Result{}), laterCheck("iprev", Result{}, &called), laterCheck("dnsbl", Result{Reply: reject(554)}, &called)}, "pending", "554", "dnsbl", "limit,iprev,dnsbl,iprev.later,dnsbl.later"},
		{"earlier later wins over a later immediate refusal", []Check{laterCheck("iprev", Result{Reply: reject(450)}, &called), now("access", Result{Reply: reject(554)}), now("never", Result{})}, "pending", "450", "iprev", "iprev,access,iprev.later"},
		{"immediate refusal after a harmless later", []Check{laterCheck("iprev", Result{}, &called), now("access", Result{Reply: reject(554)})}, "pending", "554", "access", "iprev,access,iprev.later"},
		{"all harmless", []Check{laterCheck("iprev", Result{}, &called), laterCheck("dnsbl", Result{}, &called)}, "pending", "", "", "iprev,dnsbl,iprev.later,dnsbl.later"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			called = nil
			ch := &Chain{}
			for _, c := range tc.checks {
				ch.Add(c)
			}
			d := ch.Connect(context.Background(), &Conn{})
			got := ""
			switch {
			case d.Pending != nil:
				got = "pending"
				if d.Refused() || d.OK {
					t.Errorf("pending decision also decided: %+v", d)
				}
			case d.OK:
				got = "OK"
			case d.Refused():
				got = strconv.Itoa(d.Reply.Code)
			}
			if got != tc.before {
				t.Errorf("before banner: %s, want %s", got, tc.before)
			}
			if d.Pending != nil {
				d = d.Pending(context.Background())
				got = ""
				if d.Refused() {
					got = strconv.Itoa(d.Reply.Code)
				}
				if got != tc.after {
					t.Errorf("after: %q, want %q", got, tc.after)
				}
			}
			if d.Check != tc.check {
				t.Errorf("check %q, want %q", d.Check, tc.check)
			}
			if strings.Join(called, ",") != tc.calls {
				t.Errorf("calls %v, want %s", called, tc.calls)
			}
		})
	}
	// A Later's internal error is a 4xx like any other; refusals by a
	// Later are counted.
	ch := (&Chain{}).Add(laterCheck("dnsbl", Result{Err: errors.New("down"), Reply: reject(554)}, &called))
	d := ch.Connect(context.Background(), &Conn{}).Pending(context.Background())
	if d.Reply == nil || d.Reply.Code != 451 || ch.Refusals()["dnsbl"] != 1 {
		t.Errorf("later error: %+v, refusals %v", d, ch.Refusals())
	}
}

// Log-only matches are collected for the log and decide nothing.
func TestChainLogged(t *testing.T) {
	ch := (&Chain{}).Add(fixed("helo", Result{Logged: reject(550), Reason: "would"})).Add(fixed("relay", Result{Reply: reject(554)}))
	d := ch.Rcpt(context.Background(), &Conn{}, &Txn{}, Rcpt{})
	if d.Check != "relay" || len(d.Logged) != 1 || d.Logged[0].Check != "helo" || d.Logged[0].Reason != "would" {
		t.Errorf("%+v", d)
	}
	if ch.Refusals()["helo"] != 0 {
		t.Error("a log-only match counted as a refusal")
	}
}
