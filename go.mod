module github.com/mxedge/mxedge

go 1.26.8

require (
	blitiri.com.ar/go/spf v1.6.0
	github.com/emersion/go-message v0.18.2
	github.com/emersion/go-milter v0.5.0
	github.com/emersion/go-msgauth v0.7.0
	github.com/emersion/go-sasl v0.0.0-20241020182733-b788ff22d5a6
	github.com/emersion/go-smtp v0.25.1
	github.com/miekg/dns v1.1.73
	github.com/pelletier/go-toml/v2 v2.4.3
	github.com/prometheus/client_golang v1.23.2
	go.etcd.io/bbolt v1.5.0
	golang.org/x/crypto v0.54.0
	golang.org/x/net v0.57.0
	golang.org/x/sync v0.24.0
	golang.org/x/sys v0.47.0
	golang.org/x/time v0.16.0
)

require (
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/kr/text v0.2.0 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/prometheus/client_model v0.6.2 // indirect
	github.com/prometheus/common v0.66.1 // indirect
	github.com/prometheus/procfs v0.16.1 // indirect
	go.yaml.in/yaml/v2 v2.4.2 // indirect
	golang.org/x/text v0.40.0 // indirect
	google.golang.org/protobuf v1.36.8 // indirect
)

// A small pinned fork of go-smtp v0.25.1, carried in-tree: server and client
// changes that mxedge needs and upstream has not released (command/DATA line
// limits, partial lines never executed, fast DATA reader, reply batching,
// BDAT+RSET, postmaster-like reply codes, client PIPELINING, ...). Each change
// is listed in third_party/go-smtp/FORK.md with its upstream status; this
// replace goes when upstream has them all (or mxedge no longer needs them)
// and mxedge can require a released go-smtp again.
replace github.com/emersion/go-smtp => ./third_party/go-smtp

// A small pinned fork of go-msgauth v0.7.0, carried in-tree: DKIM
// verification without go-msgauth's avoidable per-message work (allocating
// CRLF fixing and body copies in the canonicalizers, a fresh copy buffer per
// signature, a regexp per signature, ...), with identical results. Each change
// is listed in third_party/go-msgauth/FORK.md with its upstream status; this
// replace goes when upstream has them all (or mxedge no longer needs them)
// and mxedge can require a released go-msgauth again.
replace github.com/emersion/go-msgauth => ./third_party/go-msgauth
