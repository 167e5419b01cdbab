package dkim

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

// mxedge fork: tests of KeyCache.

// verifyWith verifies m with a cache and the key records in records, and
// returns the error of each signature (nil: pass), by domain.
func verifyWith(t *testing.T, m []byte, keys *KeyCache, records map[string]string) map[string]error {
	t.Helper()
	lookup := func(name string) ([]string, error) { return []string{records[name]}, nil }
	vs, err := VerifyWithOptions(bytes.NewReader(m), &VerifyOptions{LookupTXT: lookup, KeyCache: keys})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(map[string]error)
	for _, v := range vs {
		errs[v.Domain] = v.Err
	}
	return errs
}

// TestKeyCacheVerify: with a cache, verification passes as without; a key
// record that changes in the DNS (revoked, replaced) is never answered
// from the cache; records that fail to parse are not kept.
func TestKeyCacheVerify(t *testing.T) {
	useDNSTXT(t)
	m := signedBenchMessage(t, CanonicalizationRelaxed)
	records := map[string]string{
		"brisbane._domainkey.example.org":          dnsPublicKey,
		"brisbane._domainkey.football.example.com": dnsEd25519PublicKey,
	}
	keys := NewKeyCache(8)
	for i := 0; i < 2; i++ {
		for d, err := range verifyWith(t, m, keys, records) {
			if err != nil {
				t.Fatalf("run %d: %s: %v", i, d, err)
			}
		}
	}
	if n := keys.Len(); n != 2 {
		t.Errorf("cache holds %d records, want 2", n)
	}

	records["brisbane._domainkey.example.org"] = "v=DKIM1; p="
	if err := verifyWith(t, m, keys, records)["example.org"]; err == nil || !IsPermFail(err) || !strings.Contains(err.Error(), "key revoked") {
		t.Errorf("revoked key: got %v, want permanent failure: key revoked", err)
	}
	if n := keys.Len(); n != 2 {
		t.Errorf("after a revoked key the cache holds %d records, want 2", n)
	}
	records["brisbane._domainkey.example.org"] = dnsRawRSAPublicKey // another key
	if err := verifyWith(t, m, keys, records)["example.org"]; err == nil || !strings.Contains(err.Error(), "signature did not verify") {
		t.Errorf("replaced key: got %v, want signature did not verify", err)
	}
	records["brisbane._domainkey.example.org"] = dnsPublicKey
	if err := verifyWith(t, m, keys, records)["example.org"]; err != nil {
		t.Errorf("key back: got %v, want pass", err)
	}
}

// TestKeyCacheBound: the cache keeps at most its size, and a kept record
// is not parsed again.
func TestKeyCacheBound(t *testing.T) {
	keys := NewKeyCache(2)
	first, err := keys.parse(dnsPublicKey)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := keys.parse(dnsPublicKey)
	if again != first {
		t.Error("a kept record was parsed again")
	}
	for _, r := range []string{dnsEd25519PublicKey, dnsRawRSAPublicKey, dnsPublicKey + "; n=note"} {
		if _, err := keys.parse(r); err != nil {
			t.Fatal(err)
		}
		if n := keys.Len(); n > 2 {
			t.Fatalf("cache of 2 holds %d records", n)
		}
	}
	if _, err := keys.parse("v=DKIM1; k=rsa; p=bm90IGEga2V5"); err == nil {
		t.Error("a record that is not a key parsed")
	}
}

// TestKeyCacheConcurrent: one cache shared by concurrent verifications
// (run with -race).
func TestKeyCacheConcurrent(t *testing.T) {
	useDNSTXT(t)
	m := signedBenchMessage(t, CanonicalizationSimple)
	keys := NewKeyCache(1) // the two keys evict each other
	var wg sync.WaitGroup
	errs := make(chan error, 8*10*2)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				vs, err := VerifyWithOptions(bytes.NewReader(m), &VerifyOptions{LookupTXT: benchLookupTXT, KeyCache: keys})
				if err != nil {
					errs <- err
					return
				}
				for _, v := range vs {
					errs <- v.Err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 8*10*2 {
		t.Errorf("%d verifications, want %d", n, 8*10*2)
	}
}
