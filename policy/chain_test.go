package policy

import (
	"context"
	"errors"
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
