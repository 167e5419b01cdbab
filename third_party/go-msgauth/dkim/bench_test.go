package dkim

import (
	"bufio"
	"bytes"
	"crypto"
	"fmt"
	"io"
	"strings"
	"testing"
)

// mxedge fork: benchmarks of what mxedge's relay does per message
// (bench/auth.sh: 10 KiB messages with an rsa-sha256 and an ed25519-sha256
// signature, verified from a 32 KiB bufio.Reader, the key records looked
// up through VerifyOptions.LookupTXT). See FORK.md for the numbers.

// benchBody is a 10 KiB body of 72-byte lines ending in CRLF, as mail is.
func benchBody() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 10<<10; i++ {
		fmt.Fprintf(&b, "%04d The quick brown fox jumps over the lazy dog, again and  again.\r\n", i)
	}
	return b.Bytes()
}

// benchRecords are the key records of the test keys, by DNS name.
var benchRecords = map[string][]string{
	"brisbane._domainkey.example.org":          {dnsPublicKey},
	"brisbane._domainkey.football.example.com": {dnsEd25519PublicKey},
}

func benchLookupTXT(name string) ([]string, error) {
	if txts, ok := benchRecords[name]; ok {
		return txts, nil
	}
	return nil, fmt.Errorf("no record for %v", name)
}

// signedBenchMessage is a message signed twice (ed25519 first, then rsa on
// top, as bench/authload signs), both with can.
func signedBenchMessage(tb testing.TB, can Canonicalization) []byte {
	tb.Helper()
	m := []byte(mailHeaderString + "\r\n" + string(benchBody()))
	for _, k := range []struct {
		domain string
		signer crypto.Signer
	}{{"football.example.com", testEd25519PrivateKey}, {"example.org", testPrivateKey}} {
		var b bytes.Buffer
		err := Sign(&b, bytes.NewReader(m), &SignOptions{
			Domain: k.domain, Selector: "brisbane", Signer: k.signer,
			HeaderCanonicalization: can, BodyCanonicalization: can,
			HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID"},
		})
		if err != nil {
			tb.Fatal(err)
		}
		m = b.Bytes()
	}
	return m
}

// useDNSTXT makes the "dns/txt" query method the real one (query_test.go
// replaces it by a table for upstream's tests) until the test ends, so
// that the key records go through LookupTXT and parsePublicKey as in
// mxedge.
func useDNSTXT(tb testing.TB) {
	saved := queryMethods[QueryMethodDNSTXT]
	queryMethods[QueryMethodDNSTXT] = queryDNSTXT
	tb.Cleanup(func() { queryMethods[QueryMethodDNSTXT] = saved })
}

// verifyBoth verifies m read through br (with keys, which may be nil) and
// fails unless both signatures pass.
func verifyBoth(tb testing.TB, br *bufio.Reader, m []byte, keys *KeyCache) {
	br.Reset(bytes.NewReader(m))
	vs, err := VerifyWithOptions(br, &VerifyOptions{LookupTXT: benchLookupTXT, MaxVerifications: 5, KeyCache: keys})
	if err != nil {
		tb.Fatal(err)
	}
	if len(vs) != 2 || vs[0].Err != nil || vs[1].Err != nil {
		tb.Fatalf("want 2 passing signatures, got %d: %+v", len(vs), vs)
	}
}

// BenchmarkVerify: simple and relaxed without a KeyCache (as v0.7.0, which
// has none), and with one (as mxedge verifies).
func BenchmarkVerify(b *testing.B) {
	useDNSTXT(b)
	for _, can := range []Canonicalization{CanonicalizationSimple, CanonicalizationRelaxed} {
		for _, cached := range []bool{false, true} {
			name := string(can)
			var keys *KeyCache
			if cached {
				name += "-keycache"
				keys = NewKeyCache(16)
			}
			b.Run(name, func(b *testing.B) {
				m := signedBenchMessage(b, can)
				br := bufio.NewReaderSize(nil, 32<<10) // mxedge's pipeBuffer
				b.SetBytes(int64(len(m)))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					verifyBoth(b, br, m, keys)
				}
			})
		}
	}
}

func BenchmarkCanonicalizeBody(b *testing.B) {
	body := benchBody()
	for _, can := range []Canonicalization{CanonicalizationSimple, CanonicalizationRelaxed} {
		b.Run(string(can), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				wc := canonicalizers[can].CanonicalizeBody(io.Discard)
				if _, err := wc.Write(body); err != nil {
					b.Fatal(err)
				}
				if err := wc.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRemoveSignature(b *testing.B) {
	m := signedBenchMessage(b, CanonicalizationSimple)
	field, _, _ := strings.Cut(string(m), "\r\nDKIM-Signature:")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if s := removeSignature(field); !strings.Contains(s, "b=;") && !strings.HasSuffix(s, "b=") {
			b.Fatalf("b= not removed: %q", s)
		}
	}
}

// TestVerifyTwoSignatures: the benchmark's message verifies (both
// signatures, simple and relaxed, through LookupTXT and the real key
// parsing), and a changed body fails both, so the benchmarks measure the
// work of a passing verification.
func TestVerifyTwoSignatures(t *testing.T) {
	useDNSTXT(t)
	for _, can := range []Canonicalization{CanonicalizationSimple, CanonicalizationRelaxed} {
		m := signedBenchMessage(t, can)
		br := bufio.NewReaderSize(nil, 32<<10)
		verifyBoth(t, br, m, nil)

		bad := bytes.Replace(m, []byte("lazy dog"), []byte("lazy cat"), 1)
		vs, err := VerifyWithOptions(bytes.NewReader(bad), &VerifyOptions{LookupTXT: benchLookupTXT})
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) != 2 {
			t.Fatalf("%s: want 2 verifications, got %d", can, len(vs))
		}
		for _, v := range vs {
			if v.Err == nil || !strings.Contains(v.Err.Error(), "body hash did not verify") {
				t.Errorf("%s: changed body of %s: got %v, want body hash failure", can, v.Domain, v.Err)
			}
		}
	}
}
