package queue

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The origin given to NewMessage is stored, logged, handed to delivery and
// survives a restart.
func TestOriginIsStored(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	q, err := Open(dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	o := Origin{Listener: "mx-public", Kind: "mx", ClientIP: "192.0.2.7", ClientName: "mail.src.test",
		Helo: "mail.src.test", TLS: "TLSv1.3 TLS_AES_128_GCM_SHA256"}
	id := receiveEnv(t, q, Envelope{From: "s@src.test", Origin: o, Rcpts: []Rcpt{{Addr: "a@x.test"}}}, origBody)
	for _, want := range []string{"msg=accepted", "queue_id=" + id, "listener=mx-public", "client_ip=192.0.2.7",
		"helo=mail.src.test", `tls="TLSv1.3 TLS_AES_128_GCM_SHA256"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("accepted line lacks %s:\n%s", want, logs.String())
		}
	}
	q.Close()
	q = openTest(t, dir, Options{})
	defer q.Close()
	env, err := q.Get(id)
	if err != nil || env.Origin != o {
		t.Fatalf("origin after restart: %+v, %v; want %+v", env.Origin, err, o)
	}
	if m, err := q.Message(id); err != nil || m.Origin != o {
		t.Errorf("delivery's view: %+v, %v", m, err)
	}
}

// A record written before Origin existed keeps its client IP and HELO
// (then top-level keys), has no heads entry, and is delivered as before.
func TestRecordWithoutOrigin(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	const id = "0G3Q8Z9V1B2C3D4E"
	const body = "Received: from old.src.test\r\nSubject: old\r\n\r\nqueued before the upgrade\r\n"
	arrival := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	old := `{"id":"` + id + `","from":"s@src.test","rcpts":[{"addr":"a@x.test","status":"pending"}],` +
		`"arrival":"2026-03-04T10:00:00Z","size":72,"inline":true,"client_ip":"192.0.2.9",` +
		`"helo":"old.src.test","body":"8BITMIME","attempts":1,"next_attempt":"2026-03-04T10:05:00Z"}`
	err := q.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketMsgs).Put([]byte(id), []byte(old)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketBodies).Put([]byte(id), []byte(body)); err != nil {
			return err
		}
		return tx.Bucket(bucketSched).Put(schedKey(arrival.Add(5*time.Minute), id), nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	q.Close()

	q = openTest(t, dir, Options{})
	defer q.Close()
	env, err := q.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Origin{ClientIP: "192.0.2.9", Helo: "old.src.test"}); env.Origin != want || env.Body != "8BITMIME" || env.Size != int64(len(body)) {
		t.Errorf("old record read as %+v", env)
	}
	if got := storedMessage(t, q, id); got != body {
		t.Errorf("old message reads %q", got)
	}
	var listed *Envelope
	q.List(Filter{}, func(e *Envelope) error { listed = e; return nil })
	if listed == nil || listed.Origin.ClientIP != "192.0.2.9" {
		t.Errorf("listed: %+v", listed)
	}

	// The next write of the record uses the new form and keeps the facts.
	if err := q.Hold(id); err != nil {
		t.Fatal(err)
	}
	var raw string
	q.db.View(func(tx *bolt.Tx) error { raw = string(tx.Bucket(bucketMsgs).Get([]byte(id))); return nil })
	if !strings.Contains(raw, `"origin":{"client_ip":"192.0.2.9","helo":"old.src.test"}`) || strings.Count(raw, "client_ip") != 1 {
		t.Errorf("rewritten record: %s", raw)
	}

	// And it is delivered, all of it.
	if err := q.Release(id); err != nil {
		t.Fatal(err)
	}
	d := newRecorder(nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- q.Run(ctx, d, time.Second) }()
	calls := d.waitCalls(t, 1)
	cancel()
	<-done
	if calls[0].body != body {
		t.Errorf("delivered %q", calls[0].body)
	}
}
