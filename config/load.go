package config

import (
	"bytes"
	"fmt"
	"io"
	"os"

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
// line. One run reports every problem, one per line, sorted by line:
//
//   - wrong types and bad durations or sizes, e.g.
//     mxedge.toml:7:14: key "limits.recipients": expected integer, got string
//   - unknown keys, e.g.
//     mxedge.toml:3:1: key "relay_domian": unknown key
//   - validation (see Validate), e.g.
//     mxedge.toml:9:1: listener[0].bare_line_endings "drop": must be "reject" or "normalize"
//
// A key = value or a table with a type error is skipped (decoded as if it
// were not in the file), and validation problems that only follow from
// skipping it ("listener[0].address": missing, when the address was 25)
// are not reported. A syntax error is the exception: a file that does not
// parse as TOML cannot be decoded, so only the type errors before it and
// the syntax error itself are reported.
//
// On error the *Config is nil.
func Parse(name string, data []byte) (*Config, error) {
	d := checkTypes(name, data)
	if d.syntax {
		return nil, d.err()
	}
	c, ok := d.decode()
	if !ok {
		return nil, d.err()
	}
	set := make(map[string]bool, len(d.keys))
	for off, k := range d.keys {
		if !d.skipped(off) {
			set[k] = true
		}
	}
	c.completeSet(set)
	d.validate(&c)
	if err := d.err(); err != nil {
		return nil, err
	}
	return &c, nil
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
