package config

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// A document is a configuration file on its way through Parse: the problems
// found so far, the full name of the key at each offset, and the file's
// top-level expressions. An expression with an error is skipped: the
// decoder sees it blanked out, so that one run decodes everything else and
// reports unknown keys and validation problems beside the type errors.
type document struct {
	name   string
	data   []byte
	lines  lines
	keys   map[int]string // full key names by offset ("listener[1].address")
	exprs  []expr         // top-level expressions, in file order
	probs  []problem
	syntax bool // the file does not parse: nothing can be decoded
}

// An expr is a top-level expression: a key = value (possibly over several
// lines), or a table header together with its body up to the next header.
type expr struct {
	start, end int
	header     bool
	key        string // "relay_domains", "limits.recipients", "listener[0]"
	bad        bool   // has an error: skipped
}

// A problem is one error line, at an offset of the file (-1: none, the
// error is about a default).
type problem struct {
	off int
	err error
}

func (d *document) add(off int, err error) {
	d.probs = append(d.probs, problem{off, err})
}

// position formats an offset as ":LINE:COLUMN", "" for -1.
func (d *document) position(off int) string {
	if off < 0 {
		return ""
	}
	line, col := d.lines.position(off)
	return fmt.Sprintf(":%d:%d", line, col)
}

// startHeader begins a table header's expression; keyOff is the offset of
// its key. A header is on one line and its body ends where the next header
// begins.
func (d *document) startHeader(keyOff int) {
	line, _ := d.lines.position(keyOff)
	start := d.lines[line-1]
	for i := len(d.exprs) - 1; i >= 0; i-- {
		if d.exprs[i].header {
			d.exprs[i].end = start
			break
		}
	}
	d.exprs = append(d.exprs, expr{start: start, end: len(d.data), header: true})
}

func (d *document) startKeyValue(start, end int) {
	d.exprs = append(d.exprs, expr{start: start, end: end})
}

// at returns the index of the innermost expression holding offset off
// (a key = value inside a table's body rather than the table), or -1.
func (d *document) at(off int) int {
	for i := len(d.exprs) - 1; i >= 0; i-- {
		if e := d.exprs[i]; e.start <= off && off < e.end {
			return i
		}
	}
	return -1
}

// skipped reports whether offset off is in an expression that is skipped.
func (d *document) skipped(off int) bool {
	for _, e := range d.exprs {
		if e.bad && e.start <= off && off < e.end {
			return true
		}
	}
	return false
}

// wellTyped returns the file with the skipped expressions blanked out by
// spaces, line breaks kept, so that offsets and positions stay the same.
func (d *document) wellTyped() []byte {
	out := bytes.Clone(d.data)
	for _, e := range d.exprs {
		if !e.bad {
			continue
		}
		for i := e.start; i < e.end; i++ {
			if out[i] != '\n' && out[i] != '\r' {
				out[i] = ' '
			}
		}
	}
	return out
}

// decode decodes the well-typed part of the file on top of the defaults.
// An error of the decoder at a key (a duplicate key, an integer too large)
// is recorded and its expression skipped in turn; unknown keys are recorded
// and the rest decoded. ok is false when the decoder failed in a way that
// leaves nothing to validate.
func (d *document) decode() (c Config, ok bool) {
	for {
		c = base()
		err := toml.NewDecoder(bytes.NewReader(d.wellTyped())).DisallowUnknownFields().Decode(&c)
		var missing *toml.StrictMissingError
		var de *toml.DecodeError
		switch {
		case err == nil:
			return c, true
		case errors.As(err, &missing):
			for i := range missing.Errors {
				e := &missing.Errors[i]
				what := "unknown key"
				if strings.Contains(e.Error(), "table") { // "missing table"
					what = "unknown table"
				}
				d.addDecodeError(e, what)
			}
			return c, true // strict mode reports after decoding all the rest
		case errors.As(err, &de):
			i := d.addDecodeError(de, strings.TrimPrefix(de.Error(), "toml: "))
			if i < 0 || d.exprs[i].bad {
				return c, false
			}
			d.exprs[i].bad = true
		default:
			d.add(-1, fmt.Errorf("%s: %w", d.name, err))
			return c, false
		}
	}
}

// addDecodeError records an error of the decoder as
// FILE:LINE:COLUMN: key "KEY": MESSAGE and returns the index of its
// expression (-1: none). The decoder's key lacks array indexes and, inside
// inline tables, the table's own key; d.keys has the full name.
func (d *document) addDecodeError(e *toml.DecodeError, msg string) int {
	line, col := e.Position()
	off := d.lines.offset(line, col)
	key, ok := d.keys[off]
	if !ok {
		key = strings.Join(e.Key(), ".")
	}
	at := fmt.Sprintf("%s:%d:%d", d.name, line, col)
	if key == "" {
		d.add(off, fmt.Errorf("%s: %s", at, msg))
	} else {
		d.add(off, fmt.Errorf("%s: key %q: %s", at, key, msg))
	}
	if off < 0 {
		return -1
	}
	return d.at(off)
}

// validate records the problems of c (see Validate) but those that are
// consequences of a skipped expression, each at the line of its key.
func (d *document) validate(c *Config) {
	var skipped []string
	for _, e := range d.exprs {
		if e.bad && e.key != "" {
			skipped = append(skipped, normKey(e.key))
		}
	}
	at := keyOffsets(d.keys)
	for _, err := range c.problems() {
		msg := err.Error()
		if consequence(msg, skipped) {
			continue
		}
		off := at(msg)
		d.add(off, fmt.Errorf("%s%s: %w", d.name, d.position(off), err))
	}
}

// err returns the problems sorted by their place in the file, those
// without a place last, one per line; nil when there are none.
func (d *document) err() error {
	slices.SortStableFunc(d.probs, func(a, b problem) int {
		switch {
		case a.off < 0 && b.off < 0:
			return 0
		case a.off < 0:
			return 1
		case b.off < 0:
			return -1
		}
		return a.off - b.off
	})
	errs := make([]error, len(d.probs))
	for i, p := range d.probs {
		errs[i] = p.err
	}
	return errors.Join(errs...)
}

// keyOffsets returns where a validation message's key is in the document:
// the offset of the key the message starts with, or of its nearest
// enclosing key or table that is in the file ("listener[0].address" of a
// listener without address: its [[listener]] header); -1 when the value
// is a default.
func keyOffsets(keys map[int]string) func(msg string) int {
	pos := make(map[string]int, len(keys))
	for off, k := range keys {
		k = normKey(k)
		if old, ok := pos[k]; !ok || off < old {
			pos[k] = off
		}
	}
	return func(msg string) int {
		for key := subject(msg); key != ""; key = parentKey(key) {
			if off, ok := pos[key]; ok {
				return off
			}
		}
		return -1
	}
}

// normKey makes keys compare without quotes and case: messages name
// domains in normal form ("example.org"), quoted; the file may say
// "Example.ORG".
func normKey(k string) string { return strings.ToLower(strings.ReplaceAll(k, `"`, "")) }

// subject returns the key a validation message starts with, normalized.
func subject(msg string) string {
	key, _, _ := strings.Cut(normKey(msg), " ")
	return strings.TrimSuffix(key, ":")
}

// parentKey returns the key of the table or array holding key, "" at the
// top.
func parentKey(key string) string {
	i := strings.LastIndexAny(key, ".[")
	if i < 0 {
		return ""
	}
	return key[:i]
}

// consequence reports whether a validation message follows from skipping
// one of the keys in skipped (normalized): it is about that key or
// something under it ("relay_domains[1]" of "relay_domains"), it names the
// key ("not in relay_domains", "add routes."example.org""), or it is about
// the same table and names the key's last part ("listener[0]: kind
// "submission" needs tls_cert and tls_key" when listener[0].tls_cert was
// skipped).
func consequence(msg string, skipped []string) bool {
	msg = normKey(msg)
	subj := subject(msg)
	for _, k := range skipped {
		if mentions(msg, k) {
			return true
		}
		parent := parentKey(k)
		if last, ok := strings.CutPrefix(k[len(parent):], "."); ok && parent != "" &&
			(subj == parent || parentKey(subj) == parent) && mentions(msg, last) {
			return true
		}
	}
	return false
}

// mentions reports whether msg names key as a whole key: not as part of a
// longer name, but maybe with a part or index after it.
func mentions(msg, key string) bool {
	for i := 0; ; {
		j := strings.Index(msg[i:], key)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(key)
		if (start == 0 || !isKeyChar(msg[start-1]) && msg[start-1] != '.') && (end == len(msg) || !isKeyChar(msg[end])) {
			return true
		}
		i = start + 1
	}
}

func isKeyChar(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '_' || b == '-' || b == ']'
}
