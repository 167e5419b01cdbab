package dkim

import (
	"bufio"
	"bytes"
	"io"
	"math/rand"
	"runtime"
	"strings"
	"testing"
)

// mxedge fork: differential tests of the fork's code against v0.7.0's
// (ref_test.go), on random input cut into random writes, and exhaustively
// on every two- and three-piece split of tricky inputs.

// trickyBodies are bodies around the CR/LF and whitespace rules of the
// canonicalizers (RFC 6376 section 3.4.3, 3.4.4) and the CRLF fixing.
var trickyBodies = []string{
	"", "\r", "\n", "\r\n", "\n\r", "\r\r", "\n\n", "\r\r\n", "\r\n\r", "\r\n\n",
	"\r\n\r\n", "\r\n\r\n\r\n", "a", "a\r", "a\n", "a\r\n", "a\r\n\r\n", "a\n\n",
	"a\r\n\r", "a\r\n\r\r\n", "a\r\rb\n", "\na", "\r\na", "a\nb\r\nc\rd\n",
	" ", "\t", " \r\n", "a \r\n", "a\t \r\n b", "a  b\t\tc \t", " \t\r\n \t", "a \n b \r\n",
	"What about\nLF endings?\n\n", "Hey\r\n\r\nHow r u?", "line\r\n \r\n\t\r\n",
	"x\r\n\r\n\r\ny\r\n\r\n", "\r\n\r\nz",
}

// splitAt cuts data into writes: every byte of cuts is the length of the
// next piece (modulo 17; 0 is an empty write); the rest is the last piece.
func splitAt(data, cuts []byte) [][]byte {
	var pieces [][]byte
	for _, c := range cuts {
		n := int(c) % 17
		if n > len(data) {
			n = len(data)
		}
		pieces = append(pieces, data[:n])
		data = data[n:]
	}
	return append(pieces, data)
}

// everySplit calls f with every cut of s into three pieces (two of them
// possibly empty).
func everySplit(s string, f func(pieces [][]byte)) {
	b := []byte(s)
	for i := 0; i <= len(b); i++ {
		for j := i; j <= len(b); j++ {
			f([][]byte{b[:i], b[i:j], b[j:]})
		}
	}
}

// writeScribbled writes the pieces to w, each from one scratch buffer
// that is overwritten after the write, so that a writer that keeps the
// caller's bytes beyond Write gives different output.
func writeScribbled(tb testing.TB, w interface{ Write([]byte) (int, error) }, pieces [][]byte) {
	tb.Helper()
	scratch := make([]byte, 0, 64)
	for _, p := range pieces {
		scratch = append(scratch[:0], p...)
		n, err := w.Write(scratch)
		if err != nil || n != len(p) {
			tb.Fatalf("Write(%q) = %d, %v", p, n, err)
		}
		for i := range scratch {
			scratch[i] = "\n\r x"[i%4]
		}
	}
}

// checkFixer requires the fork's and v0.7.0's crlfFixer to return the
// same bytes for every piece and to end in the same state.
func checkFixer(t *testing.T, pieces [][]byte) {
	t.Helper()
	var fork crlfFixer
	var ref refCrlfFixer
	for i, p := range pieces {
		got := fork.Fix(append([]byte(nil), p...))
		want := ref.Fix(p)
		if !bytes.Equal(got, want) || fork.cr != ref.cr {
			t.Fatalf("pieces %q: Fix of piece %d: got %q (cr %v), want %q (cr %v)", pieces, i, got, fork.cr, want, ref.cr)
		}
	}
}

func TestCRLFFixerBoundaries(t *testing.T) {
	for _, s := range trickyBodies {
		everySplit(s, func(pieces [][]byte) { checkFixer(t, pieces) })
	}
}

func FuzzCRLFFixer(f *testing.F) {
	for _, s := range trickyBodies {
		f.Add([]byte(s), []byte{1, 2, 3})
	}
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		checkFixer(t, splitAt(data, cuts))
	})
}

// TestCRLFFixerNoCopy: input whose every LF follows a CR (across calls
// too) comes back as it is, without an allocation; a bare LF is fixed.
func TestCRLFFixerNoCopy(t *testing.T) {
	var cf crlfFixer
	in := []byte("a\r\nb\r\n\r")
	var out []byte
	if allocs := testing.AllocsPerRun(100, func() { out = cf.Fix(in) }); allocs != 0 {
		t.Errorf("Fix of CRLF-only input: %v allocations, want 0", allocs)
	}
	if &out[0] != &in[0] {
		t.Errorf("Fix of CRLF-only input returned a copy")
	}
	cf = crlfFixer{cr: true}
	if got := cf.Fix([]byte("\nx\n")); string(got) != "\nx\r\n" {
		t.Errorf("Fix after CR: got %q, want %q", got, "\nx\r\n")
	}
}

// checkBody requires the fork's and v0.7.0's body canonicalizers can to
// write the same bytes for the pieces, given from a buffer overwritten
// after each write.
func checkBody(t *testing.T, can Canonicalization, pieces [][]byte) {
	t.Helper()
	var got, want bytes.Buffer
	fork := canonicalizers[can].CanonicalizeBody(&got)
	ref := refBodyCanonicalizers[can](&want)
	writeScribbled(t, fork, pieces)
	writeScribbled(t, ref, pieces)
	if err := fork.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ref.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("%s body %q: got %q, want %q", can, pieces, got.Bytes(), want.Bytes())
	}
}

func TestCanonicalizeBodyBoundaries(t *testing.T) {
	for can := range refBodyCanonicalizers {
		for _, s := range trickyBodies {
			everySplit(s, func(pieces [][]byte) { checkBody(t, can, pieces) })
		}
	}
}

func FuzzCanonicalizeBody(f *testing.F) {
	for _, s := range trickyBodies {
		f.Add([]byte(s), []byte{1, 2, 3})
	}
	f.Add([]byte(string(benchBody()[:300])), []byte{16, 0, 5, 1, 2})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		pieces := splitAt(data, cuts)
		for can := range refBodyCanonicalizers {
			checkBody(t, can, pieces)
		}
	})
}

// TestSimpleBodyNoCopy: writing mail with CRLF line ends to the simple
// body canonicalizer copies nothing but the held-back CRLFs.
func TestSimpleBodyNoCopy(t *testing.T) {
	body := benchBody()
	wc := canonicalizers[CanonicalizationSimple].CanonicalizeBody(io.Discard)
	if allocs := testing.AllocsPerRun(100, func() { wc.Write(body) }); allocs != 0 {
		t.Errorf("simple body Write of %d bytes: %v allocations, want 0", len(body), allocs)
	}
}

// TestVerifyBytesAllocated: verifying the benchmark's message (two
// signatures, so each body comes through a pipe) no longer allocates a
// copy buffer per signature (verifyBytesLimit).
func TestVerifyBytesAllocated(t *testing.T) {
	useDNSTXT(t)
	m := signedBenchMessage(t, CanonicalizationSimple)
	br := bufio.NewReaderSize(nil, 32<<10)
	verifyBoth(t, br, m, nil) // warm the pools
	const runs = 50
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < runs; i++ {
		verifyBoth(t, br, m, nil)
	}
	runtime.ReadMemStats(&after)
	if perRun := (after.TotalAlloc - before.TotalAlloc) / runs; perRun > verifyBytesLimit {
		t.Errorf("verifying a 10 KiB message with 2 signatures allocated %d bytes, want at most %d", perRun, verifyBytesLimit)
	}
}

// trickySignatures are DKIM-Signature fields and pieces of them around
// removeSignature's rules.
var trickySignatures = []string{
	"", "b", "b=", "b=;", "b=x", "b= ", "b =x", "b\t\r\n\f =x;y", "b\v=x", "bb=x", "b=b=x",
	"b=x;b=y", "b=x;;b=;b=z", "xb=1;bh=2;b=3", "B=x", "b=\xff\xfe;b=\u00e9", "b = ; b=",
	"b=;x", "ab=c", "b==", "=b=", "b\n=\n",
	"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=brisbane;\r\n" +
		" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=; h=From:To;\r\n b=dzdVyOfAKCdLXdJOc9G2q8LoXSlEniSb\r\n av+yuU4zGeeruD00lszZVoG4ZHRNiYzR\r\n",
	"DKIM-Signature: b=abc\r\n def; bh=xyz; v=1\r\n",
}

func checkRemoveSignature(t *testing.T, s string) {
	t.Helper()
	if got, want := removeSignature(s), refRemoveSignature(s); got != want {
		t.Fatalf("removeSignature(%q) = %q, want %q", s, got, want)
	}
}

func TestRemoveSignature(t *testing.T) {
	for _, s := range trickySignatures {
		checkRemoveSignature(t, s)
	}
	// Short random strings over the bytes that matter.
	rnd := rand.New(rand.NewSource(1))
	const alphabet = "b= ;\t\r\n\fxB\v"
	var sb strings.Builder
	for i := 0; i < 50000; i++ {
		sb.Reset()
		for n := rnd.Intn(16); n > 0; n-- {
			sb.WriteByte(alphabet[rnd.Intn(len(alphabet))])
		}
		checkRemoveSignature(t, sb.String())
	}
}

func FuzzRemoveSignature(f *testing.F) {
	for _, s := range trickySignatures {
		f.Add(s)
	}
	f.Fuzz(checkRemoveSignature)
}
