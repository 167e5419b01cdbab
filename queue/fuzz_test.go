package queue

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"
	"time"
)

// FuzzDecodeRecord feeds corrupt bbolt records (a flipped byte, a
// truncated value, hostile JSON) to the decoder every reader uses: no
// panic, and what it accepts is usable by list, stats and delivery.
func FuzzDecodeRecord(f *testing.F) {
	env := &Envelope{ID: "003639DBEC3Y5KCD", From: "s@src.test", Rcpts: []Rcpt{{Addr: "a@x.test", Status: StatusPending}},
		Arrival: time.Unix(1700000000, 0), Size: 10, Framed: true, SpoolData: 10}
	good, _ := encodeEnvelope(env)
	f.Add([]byte(env.ID), good)
	f.Add([]byte(env.ID), good[:len(good)/2])
	f.Add([]byte(env.ID), []byte(`{"id":"003639DBEC3Y5KCD","rcpts":[],"client_ip":"x"}`))
	f.Add([]byte("x"), []byte(`{"id":"x","rcpts":[{"addr":""}]}`))
	f.Fuzz(func(t *testing.T, k, v []byte) {
		e, err := checkRecord(k, v)
		if err != nil {
			return
		}
		if e.ID != string(k) || !validID(e.ID) || len(e.Rcpts) == 0 {
			t.Fatalf("accepted %+v for key %q", e, k)
		}
		_ = e.pending()
		if _, err := encodeEnvelope(e); err != nil {
			t.Fatalf("accepted record does not encode again: %v", err)
		}
	})
}

// FuzzSpoolTrailer feeds hostile spool file tails (what recover reads
// from a disk after a crash) to readTrailer: no panic, no huge
// allocation, and an accepted trailer matches the file.
func FuzzSpoolTrailer(f *testing.F) {
	env := &Envelope{ID: "003639DBEC3Y5KCD", From: "s@src.test", Rcpts: []Rcpt{{Addr: "a@x.test"}}, SpoolData: 5}
	data := []byte("hello")
	good := append(append([]byte(nil), data...), encodeTrailer(env, []byte("X-A: b\r\n"), crc32.Checksum(data, castagnoli))...)
	f.Add(good)
	f.Add(good[:len(good)-1])
	bad := append([]byte(nil), good...)
	binary.BigEndian.PutUint32(bad[len(bad)-8:], 1<<31)
	f.Add(bad)
	f.Add([]byte(trailerMagic + "\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := parseTrailer(bytes.NewReader(b), int64(len(b)), true)
		if err != nil {
			return
		}
		if tr.DataLen < 0 || tr.DataLen > int64(len(b)) || !validID(tr.Env.ID) || len(tr.Env.Rcpts) == 0 {
			t.Fatalf("accepted trailer %+v for %d bytes", tr, len(b))
		}
		if crc32.Checksum(b[:tr.DataLen], castagnoli) != tr.DataCRC {
			t.Fatalf("accepted data with a wrong checksum")
		}
	})
}
