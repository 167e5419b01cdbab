package msgauth

import (
	"bufio"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/mxedge/mxedge/policy"
	"github.com/mxedge/mxedge/resolver"
)

// DKIMResult is one signature's verdict (RFC 8601 section 2.7.1 values:
// pass, fail, policy, neutral, temperror, permerror).
type DKIMResult struct {
	Result     string
	Domain     string // d=, lowercase
	Identifier string // i=
	Reason     string
}

// DKIMResults are a message's signatures' verdicts, kept in the Txn; none
// if the message has no signature.
type DKIMResults struct {
	Sigs []DKIMResult
	Err  error // the verifier could not run (malformed header section)
}

type dkimKey struct{}

// DKIMOf returns the DKIM verdicts the DKIM check kept in t, or nil.
func DKIMOf(t *policy.Txn) *DKIMResults {
	if v, ok := t.Value(dkimKey{}).(*dkimRun); ok {
		return v.res
	}
	return nil
}

// DKIM is the DATA check that verifies DKIM signatures while the message
// streams in (policy.Streamer): the data goes through an io.Pipe into
// go-msgauth's verifier in a goroutine, so nothing is buffered beyond the
// verifier's own header section; CheckData waits for its verdicts. It
// never refuses: its verdicts feed DMARC and Authentication-Results.
type DKIM struct {
	DNS policy.DNS
	// Timeout bounds each key lookup (one per signature); default 10 s.
	Timeout time.Duration
	// MaxSignatures verified per message (default 5); more are neutral.
	MaxSignatures int

	readers  sync.Pool // of *bufio.Reader (pipeBuffer bytes)
	keysOnce sync.Once
	keys     *dkim.KeyCache // parsed key records, by their text
}

// keyCacheSize bounds the parsed key records a DKIM check keeps (about
// 1 KB each for RSA 2048): the senders' keys seen recently. The records are
// still looked up for every signature; only their parsing is saved.
const keyCacheSize = 1024

// pipeBuffer is the size of the reader the verifier reads the pipe
// through. go-msgauth wraps the reader it is given in a bufio.Reader of
// its own unless it is one already big enough, and copies the body to
// each signature's goroutine in that reader's chunks: with its default
// 4 KiB, a 10 KiB message took a dozen goroutine handoffs per
// signature; with 32 KiB (the listener's copy buffer) it takes one per
// chunk the listener writes.
const pipeBuffer = 32 << 10

// Name implements policy.Check.
func (*DKIM) Name() string { return "dkim" }

// dkimRun is one message's verification in flight.
type dkimRun struct {
	pw   *io.PipeWriter
	done chan struct{}
	res  *DKIMResults
}

func (w *dkimRun) Write(p []byte) (int, error) { return w.pw.Write(p) }
func (w *dkimRun) Close() error                { return w.pw.Close() }

// Stream implements policy.Streamer.
func (d *DKIM) Stream(ctx context.Context, c *policy.Conn, t *policy.Txn) io.WriteCloser {
	pr, pw := io.Pipe()
	run := &dkimRun{pw: pw, done: make(chan struct{})}
	t.SetValue(dkimKey{}, run)
	max := d.MaxSignatures
	if max <= 0 {
		max = 5
	}
	go func() {
		defer close(run.done)
		br, _ := d.readers.Get().(*bufio.Reader)
		if br == nil {
			br = bufio.NewReaderSize(pr, pipeBuffer)
		} else {
			br.Reset(pr)
		}
		res := d.verify(ctx, br, max)
		// The verifier need not read everything: drain, so that the
		// listener's writes never block.
		_, _ = io.Copy(io.Discard, br)
		br.Reset(nil)
		d.readers.Put(br)
		run.res = res
	}()
	return run
}

func (d *DKIM) verify(ctx context.Context, r io.Reader, max int) *DKIMResults {
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	lookup := func(name string) ([]string, error) {
		lctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return resolver.NetStyle{DNS: d.DNS}.LookupTXT(lctx, name)
	}
	d.keysOnce.Do(func() { d.keys = dkim.NewKeyCache(keyCacheSize) })
	vs, err := dkim.VerifyWithOptions(r, &dkim.VerifyOptions{LookupTXT: lookup, MaxVerifications: max, KeyCache: d.keys})
	res := &DKIMResults{}
	for _, v := range vs {
		if v == nil {
			continue
		}
		res.Sigs = append(res.Sigs, verdict(v))
	}
	switch {
	case errors.Is(err, dkim.ErrTooManySignatures):
		res.Sigs = append(res.Sigs, DKIMResult{Result: "neutral", Reason: "more than the signatures verified"})
	case err != nil:
		res.Err = err
	}
	return res
}

// verdict maps go-msgauth's verification to the RFC 8601 result.
func verdict(v *dkim.Verification) DKIMResult {
	r := DKIMResult{Result: "pass", Domain: strings.ToLower(v.Domain), Identifier: v.Identifier}
	if v.Err == nil {
		return r
	}
	r.Reason = v.Err.Error()
	switch {
	case dkim.IsTempFail(v.Err):
		r.Result = "temperror"
	case strings.Contains(v.Err.Error(), "key is too short"):
		r.Result = "policy" // RFC 8301 section 3.2
	case dkim.IsPermFail(v.Err):
		r.Result = "permerror"
	default:
		r.Result = "fail"
	}
	return r
}

// CheckData implements policy.DataCheck: it waits for the verdicts.
func (d *DKIM) CheckData(ctx context.Context, c *policy.Conn, t *policy.Txn, m policy.Message) policy.Result {
	run, ok := t.Value(dkimKey{}).(*dkimRun)
	if !ok {
		return policy.Result{}
	}
	_ = run.pw.Close()
	select {
	case <-run.done:
	case <-ctx.Done():
		_ = run.pw.CloseWithError(ctx.Err())
		<-run.done
		run.res = &DKIMResults{Err: ctx.Err()}
	}
	if run.res != nil && run.res.Err != nil {
		return policy.Result{Reason: "dkim: " + run.res.Err.Error()}
	}
	return policy.Result{}
}
