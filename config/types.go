package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// checkTypes walks the TOML document against the shape of Config before
// the decoder sees it. It records every value of the wrong type, every bad
// duration or size and any syntax error, each as
// FILE:LINE:COLUMN: key "KEY": MESSAGE, and marks the top-level expression
// that holds it as one to skip (see document).
//
// go-toml/v2 alone is not enough here: it stops at the first error, names Go
// types in its messages, stores a TOML integer into a Duration as
// nanoseconds (Duration is an int64), and returns errors without a position
// when it hands a float or boolean to UnmarshalText. Keys that are not in
// Config are skipped; the decoder's strict mode reports them.
//
// The document's keys map the offset of every key to its full name with
// array indexes ("listener[1].address"), for messages about the decoder's
// errors, whose keys lack them.
func checkTypes(name string, data []byte) *document {
	d := &document{name: name, data: data, lines: lineStarts(data), keys: map[int]string{}}
	w := typeWalker{d: d, arrays: map[string]int{}}
	w.p.Reset(data)
	configType := reflect.TypeFor[Config]()
	table, prefix := configType, ""
	for w.p.NextExpression() {
		e := w.p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			d.startHeader(int(e.Child().Raw.Offset))
			table, prefix = w.header(configType, e)
			d.exprs[len(d.exprs)-1].key = prefix
		case unstable.KeyValue:
			keyNode := e.Child().Next()
			d.startKeyValue(int(e.Raw.Offset), int(e.Raw.Offset+e.Raw.Length))
			w.keyValue(table, prefix, e)
			d.exprs[len(d.exprs)-1].key = d.keys[int(keyNode.Raw.Offset)]
		}
	}
	if err := w.p.Error(); err != nil {
		d.syntax = true
		d.add(w.syntaxError(err))
	}
	return d
}

type typeWalker struct {
	p      unstable.Parser
	d      *document
	arrays map[string]int // [[array table]] elements seen, by key
}

// header handles [table] and [[array table]] lines. It returns the type of
// the table (nil when unknown or wrong) and its key for messages, with
// array indexes: "listener[1]".
func (w *typeWalker) header(t reflect.Type, e *unstable.Node) (reflect.Type, string) {
	var parts []string
	for it := e.Key(); it.Next(); {
		parts = append(parts, string(it.Node().Data))
	}
	keyNode := e.Child()
	key := ""
	for i, part := range parts {
		if t == nil {
			key = joinKey(key, part)
			continue
		}
		if isTables(t) { // through an array table: its last element
			if n := w.arrays[strings.Join(parts[:i], ".")]; n > 0 {
				key = fmt.Sprintf("%s[%d]", key, n-1)
			}
			t = t.Elem()
		}
		parent := t
		t = field(t, part)
		key = joinKey(key, part)
		switch {
		case t == nil, isTable(t):
		case isTables(t) && (i < len(parts)-1 || e.Kind == unstable.ArrayTable):
		default: // a value, or [listener] for [[listener]]
			key = joinKey(key, parts[i+1:]...)
			w.d.keys[int(keyNode.Raw.Offset)] = key
			w.tableInstead(key, t, parent, parts[i:], keyNode)
			return nil, key
		}
	}
	if t != nil && e.Kind == unstable.ArrayTable && !isTables(t) {
		// [[limits]] for [limits]
		w.d.keys[int(keyNode.Raw.Offset)] = key
		w.errorf(keyNode, key, "expected %s, got array of tables (write [%s])", typeName(t), key)
		return nil, key
	}
	if t != nil && e.Kind == unstable.ArrayTable {
		path := strings.Join(parts, ".")
		n := w.arrays[path]
		w.arrays[path] = n + 1
		key = fmt.Sprintf("%s[%d]", key, n)
		t = t.Elem()
	}
	w.d.keys[int(keyNode.Raw.Offset)] = key
	return t, key
}

// keyValue checks one key = value, at top level, under a table header or
// inside an inline table. t is the type of the table, nil when unknown.
func (w *typeWalker) keyValue(t reflect.Type, key string, e *unstable.Node) {
	var parts []string
	for it := e.Key(); it.Next(); {
		parts = append(parts, string(it.Node().Data))
	}
	keyNode := e.Child().Next()
	w.d.keys[int(keyNode.Raw.Offset)] = joinKey(key, parts...)
	for i, part := range parts {
		parent := t
		t = field(t, part)
		key = joinKey(key, part)
		if t == nil {
			return // unknown: the decoder's strict mode reports it
		}
		if i < len(parts)-1 && !isTable(t) {
			// A dotted key makes a table where a value belongs.
			w.tableInstead(joinKey(key, parts[i+1:]...), t, parent, parts[i:], keyNode)
			return
		}
	}
	w.value(t, key, e.Value(), keyNode)
}

// tableInstead reports a table (from a header or a dotted key) written where
// a value of type t belongs; rest are the key parts from the value's key on.
func (w *typeWalker) tableInstead(key string, t, parent reflect.Type, rest []string, at *unstable.Node) {
	switch {
	case isTables(t):
		w.errorf(at, key, "expected array of tables, got table (write [[%s]])", key)
	case parent.Kind() == reflect.Map && len(rest) > 1:
		// [routes] example.org = ... is routes.example.org in TOML.
		w.errorf(at, key, "expected %s, got table (a key with dots needs quotes: %q)", typeName(t), strings.Join(rest, "."))
	default:
		w.mismatch(key, t, "table", at)
	}
}

// value checks a value node v against the Go type t. at is the node to point
// at when v carries no position (arrays do not).
func (w *typeWalker) value(t reflect.Type, key string, v, at *unstable.Node) {
	if v.Raw.Length > 0 {
		at = v
	}
	var ok bool
	switch {
	case t == reflect.TypeFor[Duration]():
		if ok = v.Kind == unstable.String; ok {
			if _, err := parseDuration(string(v.Data)); err != nil {
				w.errorf(at, key, "%v", err)
			}
		}
	case t == reflect.TypeFor[Size]():
		ok = v.Kind == unstable.String || v.Kind == unstable.Integer
		if v.Kind == unstable.String {
			if _, err := parseSize(string(v.Data)); err != nil {
				w.errorf(at, key, "%v", err)
			}
		}
	case t.Kind() == reflect.String:
		ok = v.Kind == unstable.String
	case t.Kind() == reflect.Int:
		ok = v.Kind == unstable.Integer
	case t.Kind() == reflect.Slice:
		if ok = v.Kind == unstable.Array; ok {
			i := 0
			for it := v.Children(); it.Next(); i++ {
				w.value(t.Elem(), fmt.Sprintf("%s[%d]", key, i), it.Node(), at)
			}
		}
	case isTable(t):
		if ok = v.Kind == unstable.InlineTable; ok {
			for it := v.Children(); it.Next(); {
				w.keyValue(t, key, it.Node())
			}
		}
	default:
		ok = true // no other types in Config
	}
	if !ok {
		w.mismatch(key, t, kindName(v.Kind), at)
	}
}

func (w *typeWalker) mismatch(key string, t reflect.Type, got string, at *unstable.Node) {
	w.errorf(at, key, "expected %s, got %s", typeName(t), got)
}

// errorf records an error at the node at, in the expression being walked,
// which Parse then skips.
func (w *typeWalker) errorf(at *unstable.Node, key, format string, args ...any) {
	off := int(at.Raw.Offset)
	w.d.add(off, fmt.Errorf("%s%s: key %q: %s", w.d.name, w.d.position(off), key, fmt.Sprintf(format, args...)))
	w.d.exprs[len(w.d.exprs)-1].bad = true
}

// syntaxError returns an error of the parser with its offset (-1 if it has
// none) and position.
func (w *typeWalker) syntaxError(err error) (int, error) {
	var pe *unstable.ParserError
	if !errors.As(err, &pe) {
		return -1, fmt.Errorf("%s: %v", w.d.name, err)
	}
	// The highlight is a subslice of the document: the distance from its
	// start to the end of the shared backing array tells the offset.
	data := w.p.Data()
	off := cap(data) - cap(pe.Highlight)
	if pe.Highlight == nil || off < 0 || off > len(data) {
		return -1, fmt.Errorf("%s: %s", w.d.name, pe.Message)
	}
	return off, fmt.Errorf("%s%s: %s", w.d.name, w.d.position(off), pe.Message)
}

// field returns the type of the struct field with TOML key name, or the
// element type of a map; nil when there is none.
func field(t reflect.Type, name string) reflect.Type {
	if t == nil {
		return nil
	}
	switch t.Kind() {
	case reflect.Map:
		return t.Elem()
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			if f := t.Field(i); strings.Split(f.Tag.Get("toml"), ",")[0] == name {
				return f.Type
			}
		}
	}
	return nil
}

// isTable reports whether t is written as a table.
func isTable(t reflect.Type) bool {
	return t.Kind() == reflect.Struct || t.Kind() == reflect.Map
}

// isTables reports whether t is written as an array of tables ([[listener]]).
func isTables(t reflect.Type) bool {
	return t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct
}

func typeName(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[Duration]():
		return `a duration string such as "5m" or "3d"`
	case t == reflect.TypeFor[Size]():
		return `a size (integer, or string such as "25MiB")`
	case isTables(t):
		return "array of tables"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Int:
		return "integer"
	case reflect.Slice:
		return "array of " + typeName(t.Elem()) + "s"
	case reflect.Map:
		return "table of " + typeName(t.Elem()) + "s"
	case reflect.Struct:
		return "table"
	}
	return t.String()
}

func kindName(k unstable.Kind) string {
	switch k {
	case unstable.String:
		return "string"
	case unstable.Integer:
		return "integer"
	case unstable.Float:
		return "float"
	case unstable.Bool:
		return "boolean"
	case unstable.Array:
		return "array"
	case unstable.InlineTable:
		return "inline table"
	case unstable.LocalDate:
		return "date"
	case unstable.LocalTime:
		return "time"
	case unstable.LocalDateTime, unstable.DateTime:
		return "date-time"
	}
	return strings.ToLower(k.String())
}

// joinKey appends key parts for messages, dotted as in the file.
func joinKey(prefix string, parts ...string) string {
	for _, p := range parts {
		if prefix != "" {
			prefix += "."
		}
		prefix += p
	}
	return prefix
}

// lines holds the offsets at which the lines of a document start, to turn
// offsets into positions (1-based line, 1-based column counted in bytes, as
// go-toml counts) and back.
type lines []int

func lineStarts(data []byte) lines {
	l := lines{0}
	for i, b := range data {
		if b == '\n' {
			l = append(l, i+1)
		}
	}
	return l
}

func (l lines) position(offset int) (line, col int) {
	i, found := slices.BinarySearch(l, offset)
	if !found {
		i--
	}
	return i + 1, offset - l[i] + 1
}

// offset returns the offset of a position, or -1 if there is no such line.
func (l lines) offset(line, col int) int {
	if line < 1 || line > len(l) {
		return -1
	}
	return l[line-1] + col - 1
}
