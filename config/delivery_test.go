package config

import (
	"reflect"
	"strings"
	"testing"
)

// TestDeliveryKeys: [dns], [delivery] and [tls_policy] are read, normalized
// and validated.
func TestDeliveryKeys(t *testing.T) {
	c := mustParse(t, valid+`
[dns]
servers = ["127.0.0.53:5353", "192.0.2.53", "[2001:db8::53]:53"]
timeout = "2s"
[delivery]
source_address = "192.0.2.25"
mx_port = 2525
smarthost = "[smart.example.net]:587"
smarthost_auth_file = "/etc/mxedge/smarthost.auth"
smarthost_tls = "encrypt"
max_rcpts_per_transaction = 10
destination_concurrency = 8
initial_destination_concurrency = 2
concurrency = 50
default_tls_policy = "verify"
mta_sts = false
dane = false
[tls_policy]
"Partner.Example" = "dane"
"legacy.example" = "none"
`)
	want := Delivery{SourceAddress: "192.0.2.25", MXPort: 2525, Smarthost: "[smart.example.net]:587",
		SmarthostAuthFile: "/etc/mxedge/smarthost.auth", SmarthostTLS: "encrypt", MaxRcptsPerTransaction: 10,
		DestinationConcurrency: 8, InitialDestinationConcurrency: 2, Concurrency: 50, DefaultTLSPolicy: "verify"}
	// mta_sts and dane default to true; the file turned them off.
	if c.Delivery != want {
		t.Errorf("delivery = %+v\nwant %+v", c.Delivery, want)
	}
	if !reflect.DeepEqual(c.DNS.Servers, []string{"127.0.0.53:5353", "192.0.2.53", "[2001:db8::53]:53"}) || c.DNS.Timeout != dur(t, "2s") {
		t.Errorf("dns = %+v", c.DNS)
	}
	if !reflect.DeepEqual(c.TLSPolicy, map[string]string{"partner.example": "dane", "legacy.example": "none"}) {
		t.Errorf("tls_policy = %v", c.TLSPolicy)
	}

	d := mustParse(t, valid)
	if d.Delivery.MXPort != 25 || d.Delivery.MaxRcptsPerTransaction != 50 || d.Delivery.DestinationConcurrency != 20 ||
		d.Delivery.InitialDestinationConcurrency != 5 || d.Delivery.DefaultTLSPolicy != "may" || len(d.DNS.Servers) != 0 ||
		!d.Delivery.MTASTS || !d.Delivery.DANE {
		t.Errorf("defaults: %+v %+v", d.Delivery, d.DNS)
	}
}

func TestDeliveryValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(c *Config)
		want   string
	}{
		{"dns server name", func(c *Config) { c.DNS.Servers = []string{"ns.example"} }, `dns.servers[0] "ns.example": must be an IP address`},
		{"dns server port", func(c *Config) { c.DNS.Servers = []string{"192.0.2.1:0"} }, `dns.servers[0] "192.0.2.1:0": port "0"`},
		{"dns timeout", func(c *Config) { c.DNS.Timeout = 0 }, `dns.timeout "0s": must be greater than 0`},
		{"source name", func(c *Config) { c.Delivery.SourceAddress = "mx.example" }, `delivery.source_address "mx.example": must be an IP address`},
		{"mx port", func(c *Config) { c.Delivery.MXPort = 0 }, `delivery.mx_port 0: must be a number from 1 to 65535`},
		{"smarthost", func(c *Config) { c.Delivery.Smarthost = "smart.example" }, `delivery.smarthost "smart.example": not "host:port"`},
		{"auth without smarthost", func(c *Config) { c.Delivery.SmarthostAuthFile = "/x" }, `delivery.smarthost_auth_file "/x": only with delivery.smarthost`},
		{"smarthost tls", func(c *Config) { c.Delivery.SmarthostTLS = "may" }, `delivery.smarthost_tls "may": must be "verify" or "encrypt"`},
		{"rcpts", func(c *Config) { c.Delivery.MaxRcptsPerTransaction = 0 }, `delivery.max_rcpts_per_transaction 0: must be at least 1`},
		{"dest conc", func(c *Config) { c.Delivery.DestinationConcurrency = 0 }, `delivery.destination_concurrency 0: must be at least 1`},
		{"initial above", func(c *Config) { c.Delivery.InitialDestinationConcurrency = 21 }, `delivery.initial_destination_concurrency 21: must be from 1 to delivery.destination_concurrency (20)`},
		{"concurrency", func(c *Config) { c.Delivery.Concurrency = 0 }, `delivery.concurrency 0: must be at least 1`},
		{"default policy", func(c *Config) { c.Delivery.DefaultTLSPolicy = "secure" }, `delivery.default_tls_policy "secure": must be "none", "may", "encrypt", "verify" or "dane"`},
		{"policy value", func(c *Config) { c.TLSPolicy["x.example"] = "must" }, `tls_policy."x.example" = "must": must be`},
		{"policy key", func(c *Config) { c.TLSPolicy["X.example"] = "may" }, `tls_policy."X.example": must be written as "x.example"`},
		{"all fine", func(c *Config) {
			c.DNS.Servers = []string{"127.0.0.1", "[::1]:53"}
			c.Delivery.Smarthost = "smart.example:25"
			c.Delivery.SmarthostAuthFile = "/x"
			c.TLSPolicy["x.example"] = "dane"
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.change(c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case tc.want == "":
			case err == nil:
				t.Errorf("Validate accepted the change, want %s", tc.want)
			case strings.Contains(err.Error(), "\n"):
				t.Errorf("Validate reported more than one problem:\n%v", err)
			case !strings.Contains(err.Error(), tc.want):
				t.Errorf("Validate = %v\nwant it to contain %s", err, tc.want)
			}
		})
	}
}
