// Package miltertest runs an in-process mail filter for tests: a
// go-milter server (the Sendmail milter protocol, as rspamd and
// clamav-milter speak it) on a listener the test chooses.
package miltertest

import (
	"net"
	"testing"

	"github.com/emersion/go-milter"
)

// Start serves the filters newMilter makes (one per connection), which
// may take the given actions, on a TCP listener at addr (an address with
// port 0, such as "127.0.0.1:0"), until the test ends. It returns the
// listener; its Addr is where the relay connects.
func Start(tb testing.TB, addr string, newMilter func() milter.Milter, actions milter.OptAction) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	srv := &milter.Server{NewMilter: newMilter, Actions: actions}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return ln
}
