package queue

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"sync"
	"time"
)

// idEncoding is Crockford's base32 alphabet, in ascending ASCII order so that
// the text form sorts like the bytes it encodes.
var idEncoding = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

// idGen makes queue IDs: 16 characters of base32 over 10 bytes, the first
// 8 the arrival time in microseconds since the epoch (strictly increasing
// within one process) and 2 random bytes against a clock that went back
// across a restart. IDs sort by arrival and are safe in file names and logs.
type idGen struct {
	mu   sync.Mutex
	last int64
}

func (g *idGen) next(now time.Time) string {
	us := now.UnixMicro()
	g.mu.Lock()
	if us <= g.last {
		us = g.last + 1
	}
	g.last = us
	g.mu.Unlock()
	var b [10]byte
	binary.BigEndian.PutUint64(b[:8], uint64(us))
	_, _ = rand.Read(b[8:]) // crypto/rand.Read never fails (Go 1.24+)
	return idEncoding.EncodeToString(b[:])
}

// validID reports whether s looks like a queue ID, so that a name read from
// the spool directory or given by an admin command cannot escape it.
func validID(s string) bool {
	if len(s) != 16 {
		return false
	}
	_, err := idEncoding.DecodeString(s)
	return err == nil
}
