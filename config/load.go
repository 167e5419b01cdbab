package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Load reads and parses the configuration file at path; see Parse.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes a TOML configuration, fills in defaults, normalizes domains
// and validates the result. name (usually the file path) starts every error
// line. Errors come in stages, each stage reporting all it finds:
//
//  1. syntax, wrong types and bad durations or sizes, e.g.
//     mxedge.toml:7:14: key "limits.recipients": expected integer, got string
//  2. unknown keys, e.g.
//     mxedge.toml:3:1: key "relay_domian": unknown key
//  3. validation (see Validate), e.g.
//     mxedge.toml: listener[0].bare_line_endings "drop": must be "reject" or "normalize"
//
// On error the *Config is nil.
func Parse(name string, data []byte) (*Config, error) {
	errs, keys := checkTypes(name, data)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	c := base()
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, decodeError(name, data, keys, err)
	}
	set := make(map[string]bool, len(keys))
	for _, k := range keys {
		set[k] = true
	}
	c.completeSet(set)
	errs = c.problems()
	at := keyLines(data, keys)
	for i, err := range errs {
		errs[i] = fmt.Errorf("%s%s: %w", name, at(err.Error()), err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &c, nil
}

// decodeError gives every error of the decoder the form
// FILE:LINE:COLUMN: key "KEY": MESSAGE. The decoder's key lacks array
// indexes and, inside inline tables, the table's own key; keys (from
// checkTypes) has the full name of the key at each offset.
func decodeError(name string, data []byte, keys map[int]string, err error) error {
	lines := lineStarts(data)
	positioned := func(e *toml.DecodeError, msg string) error {
		line, col := e.Position()
		key, ok := keys[lines.offset(line, col)]
		if !ok {
			key = strings.Join(e.Key(), ".")
		}
		if key == "" {
			return fmt.Errorf("%s:%d:%d: %s", name, line, col, msg)
		}
		return fmt.Errorf("%s:%d:%d: key %q: %s", name, line, col, key, msg)
	}

	var missing *toml.StrictMissingError
	if errors.As(err, &missing) {
		errs := make([]error, len(missing.Errors))
		for i := range missing.Errors {
			e := &missing.Errors[i]
			what := "unknown key"
			if strings.Contains(e.Error(), "table") { // "missing table"
				what = "unknown table"
			}
			errs[i] = positioned(e, what)
		}
		return errors.Join(errs...)
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		return positioned(de, strings.TrimPrefix(de.Error(), "toml: "))
	}
	return fmt.Errorf("%s: %w", name, err)
}

// WriteTOML writes c as TOML that Parse reads back into an equal Config
// (for "mxedge config check"). Durations and sizes are written in the form
// of their MarshalText methods.
func (c *Config) WriteTOML(w io.Writer) error {
	var buf bytes.Buffer
	buf.WriteString("# mxedge effective configuration (defaults filled in)\n\n")
	if err := toml.NewEncoder(&buf).SetIndentTables(true).Encode(c); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// keyLines returns where a validation message's key is in the document:
// ":LINE:COL" of the key the message starts with, or of its nearest
// enclosing key or table that is in the file ("listener[0].address" of a
// listener without address: its [[listener]] header); "" when the value
// is a default.
func keyLines(data []byte, keys map[int]string) func(msg string) string {
	ls := lineStarts(data)
	// Keys compare without quotes and case: messages name domains in
	// normal form ("example.org"), quoted; the file may say "Example.ORG".
	norm := func(k string) string { return strings.ToLower(strings.ReplaceAll(k, `"`, "")) }
	pos := make(map[string]int, len(keys))
	for off, k := range keys {
		k = norm(k)
		if old, ok := pos[k]; !ok || off < old {
			pos[k] = off
		}
	}
	return func(msg string) string {
		key, _, _ := strings.Cut(msg, " ")
		key = norm(strings.TrimSuffix(key, ":"))
		for key != "" {
			if off, ok := pos[key]; ok {
				line, col := ls.position(off)
				return fmt.Sprintf(":%d:%d", line, col)
			}
			i := strings.LastIndexAny(key, ".[")
			if i < 0 {
				break
			}
			key = key[:i]
		}
		return ""
	}
}
