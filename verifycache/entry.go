package verifycache

import (
	"encoding/binary"
	"errors"
	"time"
)

// State is what the cache knows about an address.
type State string

const (
	StateExists   State = "exists"   // the next hop accepted RCPT TO
	StateUnknown  State = "unknown"  // the next hop refused it with a 5xx
	StateTempfail State = "tempfail" // the last probe failed temporarily (memory only)
)

// Entry is one cached verification result.
type Entry struct {
	Addr  string `json:"addr"`
	State State  `json:"state"`
	// Reply is the next hop's reply that decided State, e.g.
	// "550 5.1.1 <x@example.org>: Recipient address rejected: User unknown".
	Reply string `json:"reply"`
	// Route is the next hop that gave Reply.
	Route string `json:"route"`
	// Verified is when a probe last gave State.
	Verified time.Time `json:"verified"`
	// Expires is when the entry stops being used (Verified plus the TTL
	// of State).
	Expires time.Time `json:"expires"`
	// LastProbe is the most recent probe of the address, whatever its
	// outcome; LastResult describes it when it did not confirm State
	// (a failed refresh: "tempfail: ..." or "unknown: ...").
	LastProbe  time.Time `json:"last_probe"`
	LastResult string    `json:"last_result,omitempty"`
}

// Valid reports whether e is still used at now.
func (e *Entry) Valid(now time.Time) bool { return now.Before(e.Expires) }

// Encoding of an entry in bbolt (the key is the address): a version byte,
// the state, three times as Unix nanoseconds (verified, expires, last
// probe), then reply, route and last result, each a uvarint length and
// the bytes. Compact and cheap to decode, since a lookup decodes one entry
// per RCPT.
const entryVersion = 1

var errBadEntry = errors.New("verifycache: corrupt cache entry")

func stateByte(s State) byte {
	switch s {
	case StateExists:
		return 1
	case StateUnknown:
		return 2
	}
	return 3
}

func byteState(b byte) (State, bool) {
	switch b {
	case 1:
		return StateExists, true
	case 2:
		return StateUnknown, true
	case 3:
		return StateTempfail, true
	}
	return "", false
}

func (e *Entry) encode() []byte {
	b := make([]byte, 0, 2+3*8+3*binary.MaxVarintLen16+len(e.Reply)+len(e.Route)+len(e.LastResult))
	b = append(b, entryVersion, stateByte(e.State))
	for _, t := range []time.Time{e.Verified, e.Expires, e.LastProbe} {
		b = binary.BigEndian.AppendUint64(b, uint64(unixNano(t)))
	}
	for _, s := range []string{e.Reply, e.Route, e.LastResult} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// decodeEntry decodes v, the value stored for addr.
func decodeEntry(addr string, v []byte) (Entry, error) {
	if len(v) < 2+3*8 || v[0] != entryVersion {
		return Entry{}, errBadEntry
	}
	st, ok := byteState(v[1])
	if !ok {
		return Entry{}, errBadEntry
	}
	e := Entry{Addr: addr, State: st}
	v = v[2:]
	for _, t := range []*time.Time{&e.Verified, &e.Expires, &e.LastProbe} {
		*t = fromUnixNano(int64(binary.BigEndian.Uint64(v)))
		v = v[8:]
	}
	for _, s := range []*string{&e.Reply, &e.Route, &e.LastResult} {
		n, k := binary.Uvarint(v)
		if k <= 0 || n > uint64(len(v)-k) {
			return Entry{}, errBadEntry
		}
		*s = string(v[k : k+int(n)])
		v = v[k+int(n):]
	}
	if len(v) != 0 {
		return Entry{}, errBadEntry
	}
	return e, nil
}

// expiresAt reads only the expiry of an encoded entry (for cleanup).
func expiresAt(v []byte) (time.Time, bool) {
	if len(v) < 2+3*8 || v[0] != entryVersion {
		return time.Time{}, false
	}
	return fromUnixNano(int64(binary.BigEndian.Uint64(v[2+8:]))), true
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
