package mxroute

// Error is why Gather found no route; see the package documentation for
// the contract.
type Error struct {
	// Temporary: try again later (Code is 4.x.x); else the recipient
	// fails (Code is 5.x.x).
	Temporary bool
	// Code is the RFC 3463 enhanced status code for the DSN, "5.1.10".
	Code string
	// Text explains the failure in a DSN and the log; it names domains
	// and hosts, nothing internal.
	Text string
	// Err is the DNS error behind the failure, if any, for the log.
	Err error
}

func (e *Error) Error() string {
	s := "mxroute: " + e.Code + " " + e.Text
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// IsTemporary reports whether the failure may go away (for callers that
// test with an interface).
func (e *Error) IsTemporary() bool { return e.Temporary }

func permanent(code, text string, err error) *Error {
	return &Error{Code: code, Text: text, Err: err}
}

func temporary(code, text string, err error) *Error {
	return &Error{Temporary: true, Code: code, Text: text, Err: err}
}
