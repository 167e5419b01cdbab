package dkim

// mxedge fork: go-msgauth v0.7.0's code that the fork replaced, kept
// unchanged (but for the names) as the reference the fork's code is
// tested against (fork_test.go). Its behaviour is the specification:
// every output byte must be the same.

// refCrlfFixer is v0.7.0's crlfFixer: one byte at a time, a new slice
// on every call.
type refCrlfFixer struct {
	cr bool
}

func (cf *refCrlfFixer) Fix(b []byte) []byte {
	res := make([]byte, 0, len(b))
	for _, ch := range b {
		prevCR := cf.cr
		cf.cr = false
		switch ch {
		case '\r':
			cf.cr = true
		case '\n':
			if !prevCR {
				res = append(res, '\r')
			}
		}
		res = append(res, ch)
	}
	return res
}
