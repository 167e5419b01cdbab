package delivery

import (
	"strings"
	"sync"

	"github.com/mxedge/mxedge/queue"
)

// RFC 5321 section 4.5.3.1.10: a server may limit the recipients of a
// transaction (at least 100 must be accepted, but backends are configured
// lower: Postfix smtpd_recipient_limit, Exim recipients_max) and answers
// the rest with "452 4.5.3 too many recipients". The client sends those in
// a new transaction at once (on the same connection when it can), not
// after a retry delay. rcptLimits remembers the limit a destination
// showed, so that later messages are split before they meet it.

// maxRememberedLimits bounds the remembered limits (one per destination).
const maxRememberedLimits = 10000

type rcptLimits struct {
	mu sync.Mutex
	m  map[string]int // destination key -> recipients it accepted per transaction
}

// get returns the remembered limit of dest, 0 if none.
func (l *rcptLimits) get(dest string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[dest]
}

// learn remembers that dest accepted n recipients in a transaction and
// refused the next ones as too many.
func (l *rcptLimits) learn(dest string, n int) {
	if n <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]int{}
	}
	if old, ok := l.m[dest]; ok && old <= n {
		return
	}
	if len(l.m) >= maxRememberedLimits {
		for k := range l.m { // forget one: any
			delete(l.m, k)
			break
		}
	}
	l.m[dest] = n
}

// tooManyRcpts reports whether r is a next hop's "too many recipients"
// (452 4.5.3, or 452 with those words from a server without enhanced
// codes); RFC 5321 section 4.5.3.1.10 also allows 552 from old servers,
// which is taken as the same.
func tooManyRcpts(r queue.Result) bool {
	if r.Code != 452 && r.Code != 552 {
		return false
	}
	return r.Enhanced == "4.5.3" || r.Enhanced == "5.5.3" ||
		strings.Contains(strings.ToLower(r.Text), "too many recipients")
}

// splitTooMany separates the recipients of rs refused as too many from
// the other results.
func splitTooMany(rs []queue.Result) (rest []queue.Result, again []string) {
	for _, r := range rs {
		if tooManyRcpts(r) {
			again = append(again, r.Rcpt)
		} else {
			rest = append(rest, r)
		}
	}
	return rest, again
}
