// Command authload is the load generator of bench/auth.sh: smtp-source
// cannot send DKIM-signed mail, so this sends N messages of a given size
// over S parallel plain SMTP sessions (as an MTA on port 25 does: EHLO
// once, then MAIL, RCPT, DATA per message), each signed with rsa-sha256
// and ed25519-sha256 by d=<domain>. A small corpus (one message per
// session) is signed before the clock starts, so the generator's own
// signing is not measured. It prints the accepted rate.
//
//	authload -records -key rsa.pem -domain src.test   # zone lines for dnsserve
//	authload -addr 127.0.0.1:2700 -n 5000 -size 10240 -sessions 20 -key rsa.pem
package main

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"fmt"
	"net/smtp"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:2700", "MX listener")
	n := flag.Int("n", 5000, "messages")
	size := flag.Int("size", 10240, "message size in bytes")
	sessions := flag.Int("sessions", 20, "parallel sessions")
	from := flag.String("from", "sender@src.test", "envelope sender and From:")
	to := flag.String("to", "user@bench.test", "recipient")
	keyFile := flag.String("key", "", "RSA private key (PEM) of selector rsa1")
	records := flag.Bool("records", false, "print the DKIM key records (zone-file lines) and exit")
	flag.Parse()
	domain := (*from)[strings.LastIndexByte(*from, '@')+1:]
	rk, err := readRSA(*keyFile)
	if err != nil {
		fail(err)
	}
	// A fixed ed25519 key: a benchmark key, never a secret.
	ek := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{42}, 32))
	if *records {
		der, _ := x509.MarshalPKIXPublicKey(&rk.PublicKey)
		fmt.Println(txt("rsa1._domainkey."+domain+".", "v=DKIM1; k=rsa; p="+base64.StdEncoding.EncodeToString(der)))
		fmt.Println(txt("ed1._domainkey."+domain+".", "v=DKIM1; k=ed25519; p="+base64.StdEncoding.EncodeToString(ek.Public().(ed25519.PublicKey))))
		return
	}
	corpus := make([][]byte, *sessions)
	for i := range corpus {
		m := message(*from, *to, *size, i)
		for _, k := range []struct {
			sel string
			key crypto.Signer
		}{{"ed1", ek}, {"rsa1", rk}} {
			var b bytes.Buffer
			if err := dkim.Sign(&b, bytes.NewReader(m), &dkim.SignOptions{Domain: domain, Selector: k.sel, Signer: k.key,
				HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID"}}); err != nil {
				fail(err)
			}
			m = b.Bytes()
		}
		corpus[i] = m
	}
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for s := range *sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := smtp.Dial(*addr)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				failed.Add(1)
				return
			}
			defer c.Close()
			if err := c.Hello("client.bench.test"); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return
			}
			for next.Add(1) <= int64(*n) {
				if err := send(c, *from, *to, corpus[s]); err != nil {
					fmt.Fprintln(os.Stderr, err)
					failed.Add(1)
					c.Reset()
				}
			}
			c.Quit()
		}()
	}
	wg.Wait()
	d := time.Since(t0)
	fmt.Printf("accept_msgs_per_s=%.0f accept_s=%.2f failed=%d\n", float64(*n)/d.Seconds(), d.Seconds(), failed.Load())
	if failed.Load() > 0 {
		os.Exit(1)
	}
}

func send(c *smtp.Client, from, to string, msg []byte) error {
	// Not c.Mail: it adds SMTPUTF8 when the server offers it, and a
	// message that asks for it cannot go to a next hop without it.
	id, err := c.Text.Cmd("MAIL FROM:<%s>", from)
	if err != nil {
		return err
	}
	c.Text.StartResponse(id)
	_, _, err = c.Text.ReadResponse(250)
	c.Text.EndResponse(id)
	if err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	return w.Close()
}

// message is a plain text message of about size bytes, CRLF lines.
func message(from, to string, size, i int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: bench %d\r\nDate: %s\r\nMessage-ID: <bench-%d@src.test>\r\n\r\n",
		from, to, i, time.Now().Format(time.RFC1123Z), i)
	line := strings.Repeat("abcdefghij", 7) + "\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return b.Bytes()
}

func readRSA(path string) (*rsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(data)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an RSA key", path)
	}
	return rk, nil
}

// txt is a TXT record line, split into 255-byte strings.
func txt(name, value string) string {
	var parts []string
	for len(value) > 255 {
		parts = append(parts, `"`+value[:255]+`"`)
		value = value[255:]
	}
	return name + " 3600 IN TXT " + strings.Join(append(parts, `"`+value+`"`), " ")
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "authload:", err)
	os.Exit(2)
}
