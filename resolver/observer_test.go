package resolver

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

type recordObs struct {
	mu  sync.Mutex
	got []string
}

func (o *recordObs) DNSExchanged(result string, took time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, result)
}

// The Observer hears one result per exchange with a server: an answer,
// a SERVFAIL, and a server that does not answer (then the next one).
func TestObserver(t *testing.T) {
	s := startDNS(t)
	s.SetRcode("broken.example.org.", dns.TypeMX, dns.RcodeServerFailure)
	obs := &recordObs{}
	r := New(Config{Servers: []string{"127.0.0.1:9", s.Addr()}, Timeout: 300 * time.Millisecond, Attempts: 1,
		CacheSize: -1, Observer: obs})
	ctx := context.Background()
	if _, _, err := r.LookupMX(ctx, "example.org"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.LookupMX(ctx, "broken.example.org"); err == nil {
		t.Fatal("SERVFAIL: no error")
	}
	want := []string{"error", "ok", "error", "rcode"}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.got) != len(want) {
		t.Fatalf("observed %v, want %v", obs.got, want)
	}
	for i := range want {
		if obs.got[i] != want[i] {
			t.Fatalf("observed %v, want %v", obs.got, want)
		}
	}
}
