package dsn

import "strings"

// NotifyWants reports whether a report with action a is wanted for a
// recipient whose RCPT command had the NOTIFY values notify (RFC 3461
// section 4.1), as given: ["FAILURE", "DELAY"], ["NEVER"], or a single
// comma-separated ["SUCCESS,FAILURE"]; case does not matter.
//
// No NOTIFY (nil, empty, or no known keyword) means the default, which RFC
// 3461 leaves to the implementation: FAILURE and DELAY, as in Postfix.
// NEVER, which RFC 3461 allows only alone, wins over anything given with
// it. Failed needs FAILURE, Delayed needs DELAY, Delivered needs SUCCESS;
// any other action is never wanted.
func NotifyWants(notify []string, a Action) bool {
	var given, never, success, failure, delay bool
	for _, v := range notify {
		for _, k := range strings.Split(v, ",") {
			k = strings.TrimSpace(k)
			switch {
			case asciiEqualFold(k, "NEVER"):
				never = true
			case asciiEqualFold(k, "SUCCESS"):
				success = true
			case asciiEqualFold(k, "FAILURE"):
				failure = true
			case asciiEqualFold(k, "DELAY"):
				delay = true
			default:
				continue // unknown keyword: smtpd refuses those; ignore
			}
			given = true
		}
	}
	if !given {
		failure, delay = true, true
	}
	if never {
		return false
	}
	switch a {
	case Failed:
		return failure
	case Delayed:
		return delay
	case Delivered, Relayed:
		return success
	}
	return false
}

// asciiEqualFold is strings.EqualFold for ASCII letters only, so that no
// Unicode folding (the long s folds to 's') turns a stranger word into a
// keyword.
func asciiEqualFold(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		a, b := s[i], t[i]
		if 'a' <= a && a <= 'z' {
			a -= 'a' - 'A'
		}
		if 'a' <= b && b <= 'z' {
			b -= 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}
