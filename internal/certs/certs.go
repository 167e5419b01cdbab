// Package certs holds the server certificates of a TLS listener (RFC 3207
// STARTTLS, RFC 8314 implicit TLS): one or more key pairs (PEM, chain
// allowed, e.g. RSA and ECDSA side by side), the one a client gets chosen
// by its hello (tls.ClientHelloInfo.SupportsCertificate), re-read without
// a restart when the files change (certbot/ACME renewals) or on Reload
// (SIGHUP). A broken new pair never replaces a working one: the old pairs
// stay in use and the error is logged and returned.
//
// crypto/tls has no such store and x/crypto/acme/autocert solves another
// problem (getting certificates), so this small one is written here.
package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Pair is a certificate chain file and its private key file, PEM.
type Pair struct{ Cert, Key string }

// Store is the current certificates of a listener; safe for concurrent
// use.
type Store struct {
	pairs []Pair
	log   *slog.Logger
	cur   atomic.Pointer[loaded]
	mu    sync.Mutex // serializes loads
}

// loaded is one successful load: the certificates and the state of the
// files they came from.
type loaded struct {
	certs []tls.Certificate
	files []fileStamp
}

// fileStamp tells whether a file changed since it was read.
type fileStamp struct {
	path string
	info os.FileInfo // of the file, symlinks followed
}

// Open loads pairs; every pair must load. log gets reload errors.
func Open(pairs []Pair, log *slog.Logger) (*Store, error) {
	if len(pairs) == 0 {
		return nil, errors.New("certs: no certificate")
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Store{pairs: pairs, log: log}
	l, err := load(pairs)
	if err != nil {
		return nil, err
	}
	s.cur.Store(l)
	return s, nil
}

// load reads every pair, with the files' stamps taken before reading (a
// file replaced while it is read is read again at the next check).
func load(pairs []Pair) (*loaded, error) {
	l := &loaded{}
	for _, p := range pairs {
		for _, f := range []string{p.Cert, p.Key} {
			st, err := stamp(f)
			if err != nil {
				return nil, err
			}
			l.files = append(l.files, st)
		}
		c, err := tls.LoadX509KeyPair(p.Cert, p.Key)
		if err != nil {
			return nil, fmt.Errorf("certs: %s with key %s: %w", p.Cert, p.Key, err)
		}
		if c.Leaf == nil && len(c.Certificate) > 0 {
			if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
				return nil, fmt.Errorf("certs: %s: %w", p.Cert, err)
			}
		}
		l.certs = append(l.certs, c)
	}
	return l, nil
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, fmt.Errorf("certs: %w", err)
	}
	return fileStamp{path: path, info: fi}, nil
}

// changed reports whether any file differs from when l was loaded.
func (l *loaded) changed() bool {
	for _, f := range l.files {
		st, err := stamp(f.path)
		// A renewal writes new files (another inode, which file time
		// stamps, coarse as the kernel's clock tick, may not show) or
		// rewrites them in place (time or size).
		if err != nil || !os.SameFile(st.info, f.info) || !st.info.ModTime().Equal(f.info.ModTime()) || st.info.Size() != f.info.Size() {
			return true
		}
	}
	return false
}

// Reload reads the files again. On success the new certificates serve
// every handshake from now on; on error the old ones stay and the error
// is logged and returned.
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reload()
}

func (s *Store) reload() error {
	l, err := load(s.pairs)
	if err != nil {
		s.log.Error("TLS certificates not reloaded, keeping the current ones", "err", err)
		return err
	}
	s.cur.Store(l)
	for _, c := range l.certs {
		s.log.Info("TLS certificate loaded", "subject", c.Leaf.Subject.String(), "dns", c.Leaf.DNSNames,
			"not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// ReloadIfChanged reloads when a file changed since the last load
// attempt's files; it reports whether it tried.
func (s *Store) ReloadIfChanged() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.cur.Load().changed() {
		return false, nil
	}
	err := s.reload()
	if err != nil {
		// Do not retry the same broken files at every check: remember
		// them as seen, with the old certificates.
		old := s.cur.Load()
		seen := &loaded{certs: old.certs}
		for _, f := range old.files {
			st, serr := stamp(f.path)
			if serr != nil {
				st = f
			}
			seen.files = append(seen.files, st)
		}
		s.cur.Store(seen)
	}
	return true, err
}

// Watch checks the files every interval until ctx ends and reloads them
// when they changed.
func (s *Store) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = s.ReloadIfChanged()
		}
	}
}

// GetCertificate implements tls.Config.GetCertificate: the first pair the
// client supports (key type, signature schemes, name), else the first.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	certs := s.cur.Load().certs
	for i := range certs {
		if hello.SupportsCertificate(&certs[i]) == nil {
			return &certs[i], nil
		}
	}
	return &certs[0], nil
}

// Leaves returns the leaf certificate of every pair in use.
func (s *Store) Leaves() []*x509.Certificate {
	certs := s.cur.Load().certs
	out := make([]*x509.Certificate, len(certs))
	for i := range certs {
		out[i] = certs[i].Leaf
	}
	return out
}

// Config returns a server TLS configuration serving the store's
// certificates, with minVersion (tls.VersionTLS12, ...).
func (s *Store) Config(minVersion uint16) *tls.Config {
	return &tls.Config{GetCertificate: s.GetCertificate, MinVersion: minVersion}
}
