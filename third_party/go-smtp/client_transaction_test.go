package smtp

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// scriptServer is a scripted SMTP server for SendTransaction: it answers
// EHLO with ext, MAIL with mail, the i-th RCPT with rcpt(i), DATA with data
// and the final dot with dot. It batches its replies like a pipelining
// server (written when no more input is buffered) unless separate is set:
// then every reply is a write of its own.
type scriptServer struct {
	ext      []string
	mail     string
	rcpt     func(i int) string
	data     string
	dot      string
	rset     string // "" answers 250
	separate bool

	mu     sync.Mutex
	lines  []string // commands received
	body   string   // message received (still dot-stuffed), "" for a lone dot
	gotMsg bool
}

func (s *scriptServer) serve(t *testing.T, c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	reply := func(l string) {
		w.WriteString(l + "\r\n")
		if s.separate || r.Buffered() == 0 {
			w.Flush()
		}
	}
	reply("220 script.example ESMTP")
	nrcpt := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\r\n")
		s.mu.Lock()
		s.lines = append(s.lines, line)
		s.mu.Unlock()
		switch verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0]); verb {
		case "EHLO":
			lines := append([]string{"script.example"}, s.ext...)
			for i, l := range lines {
				sep := "-"
				if i == len(lines)-1 {
					sep = " "
				}
				w.WriteString("250" + sep + l + "\r\n")
			}
			w.Flush()
		case "MAIL":
			reply(s.mail)
		case "RCPT":
			reply(s.rcpt(nrcpt))
			nrcpt++
		case "DATA":
			reply(s.data)
			if !strings.HasPrefix(s.data, "354") {
				continue
			}
			var body strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				body.WriteString(l)
			}
			s.mu.Lock()
			s.body, s.gotMsg = body.String(), true
			s.mu.Unlock()
			reply(s.dot)
		case "RSET":
			if s.rset != "" {
				reply(s.rset)
				continue
			}
			reply("250 2.0.0 Ok")
		case "NOOP":
			reply("250 2.0.0 Ok")
		case "QUIT":
			reply("221 2.0.0 Bye")
			return
		default:
			reply("500 5.5.2 Error: command not recognized")
		}
	}
}

// writeLog records the client's writes.
type writeLog struct {
	net.Conn
	mu     sync.Mutex
	writes []string
}

func (w *writeLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.writes = append(w.writes, string(p))
	w.mu.Unlock()
	return w.Conn.Write(p)
}

func (w *writeLog) log() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.writes...)
}

func startScript(t *testing.T, s *scriptServer) (*Client, *writeLog) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		s.serve(t, c)
	}()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	wl := &writeLog{Conn: conn}
	c := NewClient(wl)
	c.CommandTimeout = 10 * time.Second
	c.SubmissionTimeout = 10 * time.Second
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	return c, wl
}

func code(err error) int {
	var smtpErr *SMTPError
	if errors.As(err, &smtpErr) {
		return smtpErr.Code
	}
	return 0
}

func rcptCodes(tx *Transaction) []int {
	var codes []int
	for _, err := range tx.RcptErrors {
		codes = append(codes, code(err))
	}
	return codes
}

func sameInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

var txRcpts = []string{"a@rcpt.example", "b@rcpt.example", "c@rcpt.example"}

// The middle recipient is refused; with PIPELINING, MAIL, the RCPTs and
// DATA go out in one write; options are sent as Mail/Rcpt send them.
func TestSendTransactionPipelined(t *testing.T) {
	for _, separate := range []bool{false, true} {
		s := &scriptServer{
			ext:  []string{"PIPELINING", "8BITMIME", "DSN", "SIZE 100000"},
			mail: "250 2.1.0 Ok",
			rcpt: func(i int) string {
				if i == 1 {
					return "550 5.1.1 <b@rcpt.example>: Recipient address rejected"
				}
				return "250 2.1.5 Ok"
			},
			data:     "354 End data with <CR><LF>.<CR><LF>",
			dot:      "250 2.0.0 Ok: queued as ABC",
			separate: separate,
		}
		c, wl := startScript(t, s)
		before := len(wl.log())
		mopts := &MailOptions{Size: 42, Return: DSNReturnHeaders, EnvelopeID: "env1"}
		ropts := []*RcptOptions{{Notify: []DSNNotify{DSNNotifyFailure}}, nil, {OriginalRecipientType: DSNAddressTypeRFC822, OriginalRecipient: "orig@rcpt.example"}}
		tx, err := c.SendTransaction("from@sender.example", mopts, txRcpts, ropts)
		if err != nil {
			t.Fatal(err)
		}
		if got := rcptCodes(tx); !sameInts(got, []int{0, 550, 0}) {
			t.Fatalf("separate %v: recipient codes %v", separate, got)
		}
		if tx.Data == nil || tx.DataError != nil {
			t.Fatalf("no message writer: %v", tx.DataError)
		}
		writes := wl.log()[before:]
		want := "MAIL FROM:<from@sender.example> BODY=8BITMIME SIZE=42 RET=HDRS ENVID=env1\r\n" +
			"RCPT TO:<a@rcpt.example> NOTIFY=FAILURE\r\n" +
			"RCPT TO:<b@rcpt.example>\r\n" +
			"RCPT TO:<c@rcpt.example> ORCPT=RFC822;orig@rcpt.example\r\n" +
			"DATA\r\n"
		if len(writes) != 1 || writes[0] != want {
			t.Fatalf("client writes %q, want one write %q", writes, want)
		}
		if _, err := io.WriteString(tx.Data, "Subject: hi\r\n\r\n.dot\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := tx.Data.CloseWithResponse()
		if err != nil || resp.StatusText != "2.0.0 Ok: queued as ABC" && resp.StatusText != "Ok: queued as ABC" {
			t.Fatalf("final dot: %+v, %v", resp, err)
		}
		s.mu.Lock()
		body := s.body
		s.mu.Unlock()
		if body != "Subject: hi\r\n\r\n..dot\r\n" {
			t.Fatalf("server got %q", body)
		}
		// The connection goes on.
		if err := c.Noop(); err != nil {
			t.Fatal(err)
		}
	}
}

// The server refuses DATA: no writer, the refusal in DataError.
func TestSendTransactionDataRefused(t *testing.T) {
	s := &scriptServer{
		ext:  []string{"PIPELINING"},
		mail: "250 2.1.0 Ok",
		rcpt: func(int) string { return "250 2.1.5 Ok" },
		data: "451 4.3.0 Try again later",
	}
	c, _ := startScript(t, s)
	tx, err := c.SendTransaction("from@sender.example", nil, txRcpts[:2], nil)
	if err != nil {
		t.Fatal(err)
	}
	if tx.Data != nil || code(tx.DataError) != 451 || !sameInts(rcptCodes(tx), []int{0, 0}) {
		t.Fatalf("got %+v", tx)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
}

// Every recipient is refused: the server refuses DATA too, or answers 354
// and gets the lone dot (RFC 2920 section 3.1).
func TestSendTransactionAllRcptsRefused(t *testing.T) {
	for _, data := range []string{"554 5.5.1 Error: no valid recipients", "354 Go ahead"} {
		s := &scriptServer{
			ext:  []string{"PIPELINING"},
			mail: "250 2.1.0 Ok",
			rcpt: func(int) string { return "550 5.1.1 Unknown user" },
			data: data,
			dot:  "554 5.5.1 Error: no valid recipients",
		}
		c, _ := startScript(t, s)
		tx, err := c.SendTransaction("from@sender.example", nil, txRcpts, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !sameInts(rcptCodes(tx), []int{550, 550, 550}) || tx.Data != nil {
			t.Fatalf("%q: got %+v", data, tx)
		}
		s.mu.Lock()
		gotMsg, body := s.gotMsg, s.body
		s.mu.Unlock()
		if strings.HasPrefix(data, "354") {
			if tx.DataError != ErrNoRecipients || !gotMsg || body != "" {
				t.Fatalf("354: DataError %v, lone dot sent %v (%q)", tx.DataError, gotMsg, body)
			}
		} else if code(tx.DataError) != 554 || gotMsg {
			t.Fatalf("554: DataError %v", tx.DataError)
		}
		if err := c.Noop(); err != nil { // in step with the server
			t.Fatal(err)
		}
	}
}

// MAIL refused: the error, and the pipelined replies are read (the
// connection stays in step).
func TestSendTransactionMailRefused(t *testing.T) {
	s := &scriptServer{
		ext:  []string{"PIPELINING"},
		mail: "553 5.7.1 Sender refused",
		rcpt: func(int) string { return "503 5.5.1 Error: need MAIL command" },
		data: "503 5.5.1 Error: need RCPT command",
	}
	c, _ := startScript(t, s)
	tx, err := c.SendTransaction("from@sender.example", nil, txRcpts, nil)
	if code(err) != 553 || tx != nil {
		t.Fatalf("got %+v, %v", tx, err)
	}
	if err := c.Noop(); err != nil {
		t.Fatal(err)
	}
}

// Without PIPELINING: lockstep, one command per write, same result.
func TestSendTransactionLockstep(t *testing.T) {
	s := &scriptServer{
		ext:  []string{"8BITMIME"},
		mail: "250 2.1.0 Ok",
		rcpt: func(i int) string {
			switch {
			case i == 1:
				return "450 4.1.1 Try later"
			case i >= 3: // the second transaction
				return "550 5.1.1 Unknown user"
			}
			return "250 2.1.5 Ok"
		},
		data: "354 Go ahead",
		dot:  "250 2.0.0 Ok: queued",
	}
	c, wl := startScript(t, s)
	before := len(wl.log())
	tx, err := c.SendTransaction("from@sender.example", nil, txRcpts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !sameInts(rcptCodes(tx), []int{0, 450, 0}) || tx.Data == nil {
		t.Fatalf("got %+v", tx)
	}
	writes := wl.log()[before:]
	if len(writes) != 5 || !strings.HasPrefix(writes[0], "MAIL FROM:") || writes[4] != "DATA\r\n" {
		t.Fatalf("client writes %q, want one command each", writes)
	}
	io.WriteString(tx.Data, "x\r\n")
	if err := tx.Data.Close(); err != nil {
		t.Fatal(err)
	}

	// No recipient accepted: DATA is not sent.
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	tx, err = c.SendTransaction("from@sender.example", nil, txRcpts[:1], nil)
	if err != nil || tx.DataError != ErrNoRecipients || tx.Data != nil {
		t.Fatalf("got %+v, %v", tx, err)
	}
	s.mu.Lock()
	last := s.lines[len(s.lines)-1]
	s.mu.Unlock()
	if !strings.HasPrefix(last, "RCPT") {
		t.Fatalf("last command %q, want no DATA", last)
	}
}

// A local error sends nothing.
func TestSendTransactionLocalError(t *testing.T) {
	s := &scriptServer{ext: []string{"PIPELINING"}, mail: "250 Ok", rcpt: func(int) string { return "250 Ok" }, data: "354 Go"}
	c, wl := startScript(t, s)
	before := len(wl.log())
	if _, err := c.SendTransaction("from@sender.example", nil, []string{"a@rcpt.example", "b@x\r\nDATA"}, nil); err == nil {
		t.Fatal("CR LF in an address accepted")
	}
	if _, err := c.SendTransaction("from@sender.example", &MailOptions{RequireTLS: true}, txRcpts, nil); err == nil {
		t.Fatal("REQUIRETLS without the extension accepted")
	}
	if n := len(wl.log()) - before; n != 0 {
		t.Fatalf("%d writes", n)
	}
}

// A reused connection: RSET goes in the same group as MAIL, RCPT and
// DATA with PIPELINING (one write), first in lockstep without; a refused
// RSET is a *ResetError carrying the reply.
func TestSendTransactionAfterReset(t *testing.T) {
	for _, pipelining := range []bool{true, false} {
		s := &scriptServer{
			mail: "250 2.1.0 Ok",
			rcpt: func(int) string { return "250 2.1.5 Ok" },
			data: "354 Go ahead",
			dot:  "250 2.0.0 Ok: queued",
		}
		if pipelining {
			s.ext = []string{"PIPELINING"}
		}
		c, wl := startScript(t, s)
		before := len(wl.log())
		tx, err := c.SendTransactionAfterReset("from@sender.example", nil, txRcpts[:1], nil)
		if err != nil || tx.Data == nil {
			t.Fatalf("pipelining %v: %+v, %v", pipelining, tx, err)
		}
		writes := wl.log()[before:]
		if pipelining {
			want := "RSET\r\nMAIL FROM:<from@sender.example>\r\nRCPT TO:<a@rcpt.example>\r\nDATA\r\n"
			if len(writes) != 1 || writes[0] != want {
				t.Fatalf("client writes %q, want one write %q", writes, want)
			}
		} else if len(writes) != 4 || writes[0] != "RSET\r\n" || !strings.HasPrefix(writes[1], "MAIL FROM:") {
			t.Fatalf("lockstep writes %q, want RSET first, one command each", writes)
		}
		io.WriteString(tx.Data, "x\r\n")
		if err := tx.Data.Close(); err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		s.rset = "421 4.4.2 Idle too long"
		s.mu.Unlock()
		tx, err = c.SendTransactionAfterReset("from@sender.example", nil, txRcpts[:1], nil)
		var re *ResetError
		if !errors.As(err, &re) || code(err) != 421 || tx != nil {
			t.Fatalf("pipelining %v, RSET refused: %+v, %v; want a *ResetError with the 421", pipelining, tx, err)
		}
	}
}

// The server dropped the idle connection: the failure is the RSET's.
func TestSendTransactionAfterResetClosed(t *testing.T) {
	s := &scriptServer{ext: []string{"PIPELINING"}, mail: "250 2.1.0 Ok", rcpt: func(int) string { return "250 2.1.5 Ok" }}
	c, _ := startScript(t, s)
	// QUIT behind the client's back: the script server answers and closes.
	id, err := c.text.Cmd("QUIT")
	if err != nil {
		t.Fatal(err)
	}
	c.text.StartResponse(id)
	if _, _, err := c.text.ReadResponse(221); err != nil {
		t.Fatal(err)
	}
	c.text.EndResponse(id)
	_, err = c.SendTransactionAfterReset("from@sender.example", nil, txRcpts[:1], nil)
	var re *ResetError
	if !errors.As(err, &re) {
		t.Fatalf("got %v, want a *ResetError", err)
	}
}

// The caller writes the message and its end itself (one write): Close
// only reads the reply, and the connection goes on.
func TestDataSentRaw(t *testing.T) {
	s := &scriptServer{ext: []string{"PIPELINING"}, mail: "250 2.1.0 Ok", rcpt: func(int) string { return "250 2.1.5 Ok" },
		data: "354 Go ahead", dot: "250 2.0.0 Ok: queued as RAW"}
	c, wl := startScript(t, s)
	tx, err := c.SendTransaction("from@sender.example", nil, txRcpts[:1], nil)
	if err != nil || tx.Data == nil {
		t.Fatalf("%+v, %v", tx, err)
	}
	before := len(wl.log())
	if _, err := wl.Write([]byte("Subject: raw\r\n\r\n..dot\r\n.\r\n")); err != nil {
		t.Fatal(err)
	}
	tx.Data.SentRaw()
	if _, err := tx.Data.Write([]byte("x")); err == nil {
		t.Error("Write after SentRaw did not fail")
	}
	resp, err := tx.Data.CloseWithResponse()
	if err != nil || !strings.HasSuffix(resp.StatusText, "queued as RAW") {
		t.Fatalf("reply %+v, %v", resp, err)
	}
	if n := len(wl.log()) - before; n != 1 {
		t.Errorf("%d writes for the message, want the caller's one", n)
	}
	s.mu.Lock()
	body := s.body
	s.mu.Unlock()
	if body != "Subject: raw\r\n\r\n..dot\r\n" {
		t.Errorf("server got %q", body)
	}
	if err := c.Noop(); err != nil {
		t.Fatal(err)
	}
}
