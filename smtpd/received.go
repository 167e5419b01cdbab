package smtpd

import (
	"crypto/tls"
	"strconv"
	"strings"
	"time"

	"github.com/mxedge/mxedge/internal/tlsname"
	"github.com/mxedge/mxedge/policy"
)

// receivedHeader builds the trace header this relay prepends (RFC 5321
// section 4.4, RFC 5322 section 3.6.7), folded as Postfix folds it:
//
//	Received: from helo.example (unknown [192.0.2.1])
//		(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits))
//		by mx.example.net (mxedge) with ESMTP id 0ABCDEF123456789
//		for <user@example.org>; Mon, 23 Nov 2026 11:03:32 +0000 (UTC)
//
// The client's name is its reverse DNS name when that is forward-confirmed
// (policy.ReversePass), else "unknown", as Postfix writes it. "for" is
// given only for a single recipient, so a message to many does not reveal
// the other recipients to each. The protocol keyword follows
// RFC 3848 (ESMTPS with TLS, ESMTPSA authenticated) and RFC 6531 section
// 3.7.3 (UTF8SMTP, UTF8SMTPS, UTF8SMTPA, UTF8SMTPSA for a message with
// SMTPUTF8: the registry's keywords, not "UTF8ESMTP"). With hide
// (submission's hide_client_ip) the client's HELO, name and address are
// left out: "from submission-client".
func receivedHeader(pc *policy.Conn, host, id, rcpt string, utf8, hide bool, t time.Time) string {
	proto := withKeyword(pc.TLS != nil, pc.AuthUser != "", utf8)
	var b strings.Builder
	b.Grow(200)
	b.WriteString("Received: from ")
	if hide {
		b.WriteString("submission-client\r\n")
	} else {
		b.WriteString(sanitizeHelo(pc.Helo))
		b.WriteString(" (")
		if pc.Reverse.Status == policy.ReversePass {
			b.WriteString(pc.Reverse.Name)
		} else {
			b.WriteString("unknown")
		}
		b.WriteString(" [")
		b.WriteString(pc.IP.String())
		b.WriteString("])\r\n")
	}
	if cs := pc.TLS; cs != nil {
		b.WriteString("\t(using ")
		b.WriteString(tlsname.Version(cs.Version))
		b.WriteString(" with cipher ")
		b.WriteString(tls.CipherSuiteName(cs.CipherSuite))
		if bits := cipherBits(cs.CipherSuite); bits > 0 {
			b.WriteString(" (" + strconv.Itoa(bits) + "/" + strconv.Itoa(bits) + " bits)")
		}
		b.WriteString(")\r\n")
	}
	b.WriteString("\tby ")
	b.WriteString(host)
	b.WriteString(" (mxedge) with ")
	b.WriteString(proto)
	b.WriteString(" id ")
	b.WriteString(id)
	if rcpt != "" {
		b.WriteString("\r\n\tfor <")
		b.WriteString(rcpt)
		b.WriteString(">")
	}
	b.WriteString("; ")
	b.WriteString(t.Format("Mon, 02 Jan 2006 15:04:05 -0700 (MST)"))
	b.WriteString("\r\n")
	return b.String()
}

// sanitizeHelo keeps the client's HELO argument from breaking the header:
// anything but printable ASCII without parentheses becomes '?'.
func sanitizeHelo(s string) string {
	if s == "" {
		return "unknown"
	}
	if len(s) > 255 {
		s = s[:255]
	}
	b := []byte(s)
	for i, c := range b {
		if c <= ' ' || c >= 0x7f || c == '(' || c == ')' || c == '\\' {
			b[i] = '?'
		}
	}
	return string(b)
}

// cipherBits is the symmetric key size of a cipher suite, for the
// Received header ("(256/256 bits)", as Postfix writes it); 0 if unknown.
func cipherBits(id uint16) int {
	name := tls.CipherSuiteName(id)
	switch {
	case strings.Contains(name, "AES_256"), strings.Contains(name, "CHACHA20"):
		return 256
	case strings.Contains(name, "AES_128"):
		return 128
	}
	return 0
}

// withKeyword is the Received "with" protocol keyword (the IANA Mail
// Transmission Types registry: RFC 3848, RFC 6531 section 3.7.3).
func withKeyword(tls, auth, utf8 bool) string {
	proto := "ESMTP"
	if utf8 {
		proto = "UTF8SMTP"
	}
	if tls {
		proto += "S"
	}
	if auth {
		proto += "A"
	}
	return proto
}
