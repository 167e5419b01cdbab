package submission

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"sync/atomic"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/mxedge/mxedge/policy"
	"github.com/mxedge/mxedge/queue"
)

// Signer is DKIM signing in the queue's delivery path (queue.Signer: once
// per message before its first attempt, the signatures stored with the
// message so retries send identical bytes). Signed are:
//
//   - mail from the submission listeners (Origin.Kind submission or
//     submissions), with the keys of its From: domain;
//   - the relay's own reports (bounces, delay notices: no Origin), with
//     the keys of their From: domain (MAILER-DAEMON@hostname).
//
// Keys are looked up for the From: domain and then for its parent domains
// (d= may be a parent: relaxed DMARC alignment). With an RSA and an
// Ed25519 key for one domain the message gets both signatures (RFC 8463
// section 5: verifiers that do not know Ed25519 use the RSA one). Mail
// from MX listeners and mail whose domain has no key pass unsigned.
//
// Signatures are relaxed/relaxed over the fields in SignedFields, From
// listed twice (oversigned: a second From added later breaks the
// signature). The message is read once and streamed through every
// signer (go-msgauth's dkim.NewSigner): a 25 MiB message is not buffered.
type Signer struct {
	keys atomic.Pointer[map[string][]*Key] // by domain; SetKeys swaps it

	signed, failed atomic.Uint64 // messages, since the start (Counts)
}

// SignerCounts are a Signer's totals, for the metrics.
type SignerCounts struct {
	Signed uint64 // messages that got their DKIM-Signature fields
	Failed uint64 // messages whose signing failed (the queue retries them)
}

// Counts returns the totals; no lock is taken.
func (s *Signer) Counts() SignerCounts {
	return SignerCounts{Signed: s.signed.Load(), Failed: s.failed.Load()}
}

// SignedFields are the header fields signed (h=): those a reader sees and
// those that change how the body is read, From oversigned.
var SignedFields = []string{
	"From", "From", "Reply-To", "Sender", "To", "Cc", "Subject", "Date", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
}

// NewSigner returns a signer with keys (none: it signs nothing until
// SetKeys).
func NewSigner(keys []*Key) *Signer {
	s := &Signer{}
	s.SetKeys(keys)
	return s
}

// SetKeys replaces the keys (a configuration reload): a message signed
// from now on gets the new keys' signatures; one being signed finishes
// with the old. The counts go on.
func (s *Signer) SetKeys(keys []*Key) {
	m := map[string][]*Key{}
	for _, k := range keys {
		m[k.Domain] = append(m[k.Domain], k)
	}
	s.keys.Store(&m)
}

// KeysFor returns the keys that sign mail from domain (its own, else its
// closest parent's).
func (s *Signer) KeysFor(domain string) []*Key {
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	keys := *s.keys.Load()
	for d != "" {
		if ks := keys[d]; len(ks) > 0 {
			return ks
		}
		_, d, _ = strings.Cut(d, ".")
		if !strings.Contains(d, ".") {
			break // never a key of a TLD
		}
	}
	return nil
}

// Sign implements queue.Signer.
func (s *Signer) Sign(ctx context.Context, m *queue.Message) ([]byte, error) {
	switch policy.Kind(m.Origin.Kind) {
	case policy.KindSubmission, policy.KindSubmissions:
	case "":
		if m.Origin.Listener != "" {
			return nil, nil
		}
	default:
		return nil, nil
	}
	if len(*s.keys.Load()) == 0 {
		return nil, nil // no keys at all (none configured yet): not worth reading the message
	}
	domain, err := fromDomain(m)
	if err != nil || domain == "" {
		return nil, nil // nothing to sign as; the message goes as it is
	}
	keys := s.KeysFor(domain)
	if len(keys) == 0 {
		return nil, nil
	}
	out, err := signWith(ctx, m, keys)
	if err != nil {
		s.failed.Add(1)
	} else {
		s.signed.Add(1)
	}
	return out, err
}

// fromDomain reads the message's first From: address's domain.
func fromDomain(m *queue.Message) (string, error) {
	r, err := m.Open()
	if err != nil {
		return "", err
	}
	defer r.Close()
	msg, err := mail.ReadMessage(bufio.NewReaderSize(io.LimitReader(r, maxHeader), 4096))
	if err != nil {
		return "", err
	}
	list, err := msg.Header.AddressList("From")
	if err != nil || len(list) == 0 {
		return "", err
	}
	a := list[0].Address
	return a[strings.LastIndexByte(a, '@')+1:], nil
}

// signWith signs m with every key in one pass and returns the
// DKIM-Signature fields, the first key's on top.
func signWith(ctx context.Context, m *queue.Message, keys []*Key) ([]byte, error) {
	signers := make([]*dkim.Signer, len(keys))
	ws := make([]io.Writer, len(keys))
	for i, k := range keys {
		ds, err := dkim.NewSigner(&dkim.SignOptions{
			Domain: k.Domain, Selector: k.Selector, Signer: k.Signer,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             SignedFields,
		})
		if err != nil {
			for _, s := range signers[:i] {
				s.Close()
			}
			return nil, fmt.Errorf("dkim %s: %w", k.TXTName(), err)
		}
		signers[i], ws[i] = ds, ds
	}
	r, err := m.Open()
	if err == nil {
		_, err = io.Copy(io.MultiWriter(ws...), ctxReader{ctx, r})
		r.Close()
	}
	var out []byte
	for i, ds := range signers {
		cerr := ds.Close()
		if err == nil && cerr != nil {
			err = fmt.Errorf("dkim %s: %w", keys[i].TXTName(), cerr)
		}
		if err == nil {
			out = append(out, ds.Signature()...)
		}
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ctxReader stops a read when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

var _ queue.Signer = (*Signer)(nil)
