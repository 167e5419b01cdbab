package resolver

import (
	"errors"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// The kinds of lookup failure; see the package documentation for the
// contract. They are never returned bare by a Resolver, always as the Kind
// of an *Error (errors.Is matches them).
var (
	// ErrNotExist: NXDOMAIN, the name does not exist. Permanent.
	ErrNotExist = errors.New("no such domain")
	// ErrNoRecords: NODATA, the name exists without records of the type
	// asked. Permanent.
	ErrNoRecords = errors.New("no records of that type")
	// ErrInvalid: the name is not a valid domain name. Permanent.
	ErrInvalid = errors.New("invalid domain name")
	// ErrTemporary: no usable answer now (SERVFAIL, REFUSED, timeout,
	// network). Try again later.
	ErrTemporary = errors.New("temporary DNS failure")
)

// Error is the error of every lookup.
type Error struct {
	Name string // the name looked up, as the caller gave it
	Type uint16 // the query type (dns.TypeMX, ...)
	// Kind is ErrNotExist, ErrNoRecords, ErrInvalid or ErrTemporary.
	Kind error
	// Rcode is the response code of the last response received, -1 if no
	// server answered.
	Rcode int
	// Server is the server of the last response or failure ("ip:port"),
	// empty if none was asked.
	Server string
	// Err is the underlying cause of a temporary failure (a network error,
	// the context's error), or nil.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("resolver: lookup ")
	b.WriteString(e.Name)
	b.WriteString(" ")
	b.WriteString(typeString(e.Type))
	b.WriteString(": ")
	b.WriteString(e.Kind.Error())
	if e.Rcode > 0 {
		b.WriteString(": ")
		b.WriteString(rcodeString(e.Rcode))
	}
	if e.Server != "" {
		b.WriteString(" from ")
		b.WriteString(e.Server)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap gives errors.Is and errors.As both the kind and the cause.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// IsNotFound reports whether the name (NXDOMAIN) or its records of the
// type asked (NODATA) do not exist.
func (e *Error) IsNotFound() bool { return e.Kind == ErrNotExist || e.Kind == ErrNoRecords }

// IsTemporary reports whether the lookup may succeed later.
func (e *Error) IsTemporary() bool { return e.Kind == ErrTemporary }

// IsNotFound reports whether err says the name or its records of the type
// asked do not exist (ErrNotExist or ErrNoRecords).
func IsNotFound(err error) bool {
	return errors.Is(err, ErrNotExist) || errors.Is(err, ErrNoRecords)
}

// IsTemporary reports whether err is a failure that may go away: every
// non-nil error that is not known to be permanent (not found, invalid
// name).
func IsTemporary(err error) bool {
	return err != nil && !IsNotFound(err) && !errors.Is(err, ErrInvalid)
}

func typeString(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return dns.Type(t).String()
}

func rcodeString(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return "rcode " + strconv.Itoa(rc)
}
