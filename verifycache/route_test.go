package verifycache

import (
	"context"
	"reflect"
	"testing"

	"github.com/mxedge/mxedge/resolver"
	"github.com/mxedge/mxedge/resolver/dnstest"
)

func TestMXRoutes(t *testing.T) {
	ns, err := dnstest.Start("127.0.0.53:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := ns.Add(
		"mx.test. 300 IN MX 20 b.mx.test.",
		"mx.test. 300 IN MX 10 a.mx.test.",
		"a.mx.test. 300 IN A 127.0.0.3",
		"b.mx.test. 300 IN A 127.0.0.4",
		"nullmx.test. 300 IN MX 0 .",
	); err != nil {
		t.Fatal(err)
	}
	r := MXRoutes{
		Static:   StaticRoutes{"fixed.test": "127.0.0.9:2525"},
		Resolver: resolver.New(resolver.Config{Servers: []string{ns.Addr()}}),
		Port:     "2526",
	}
	ctx := context.Background()
	for _, tc := range []struct {
		domain string
		want   []string
		err    bool
	}{
		{"fixed.test", []string{"127.0.0.9:2525"}, false},
		{"mx.test", []string{"127.0.0.3:2526", "127.0.0.4:2526"}, false},
		{"nullmx.test", nil, true},
		{"nxdomain.test", nil, true},
	} {
		got, err := r.Route(ctx, tc.domain)
		if (err != nil) != tc.err || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, %v; want %v (error %v)", tc.domain, got, err, tc.want, tc.err)
		}
	}
}
