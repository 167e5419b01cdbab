package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// loggedFields are what the relay's code logs (every package of the
// module but tests, the go-smtp fork and the benchmark tools): the keys
// of its log/slog calls, the messages of those calls, and per message
// literal the keys written directly in its call. Keys are found as string
// literals in the key positions of Info/Warn/Error/Debug/Log and With
// calls, of []any{...} attribute lists and of append(attrs, ...).
type loggedFields struct {
	keys   map[string]bool
	msgs   map[string]bool
	byMsg  map[string]map[string]bool
	ofFile map[string]string // a file that logs the key, for messages
}

var logMethods = map[string]int{"Info": 1, "Warn": 1, "Error": 1, "Debug": 1, "Log": 3}

func readLoggedFields(t *testing.T, root string) loggedFields {
	t.Helper()
	lf := loggedFields{keys: map[string]bool{}, msgs: map[string]bool{}, byMsg: map[string]map[string]bool{}, ofFile: map[string]string{}}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "third_party" || d.Name() == "bench" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		// keysAt records the string literals at even positions of args.
		keysAt := func(args []ast.Expr, msg string) {
			for i := 0; i < len(args); i += 2 {
				s, ok := stringLit(args[i])
				if !ok {
					i-- // an slog.Attr or a spread slice: not a key/value pair
					continue
				}
				lf.keys[s] = true
				lf.ofFile[s] = path
				if msg != "" {
					if lf.byMsg[msg] == nil {
						lf.byMsg[msg] = map[string]bool{}
					}
					lf.byMsg[msg][s] = true
				}
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				if at, ok := n.Type.(*ast.ArrayType); ok {
					if it, ok := at.Elt.(*ast.InterfaceType); ok && len(it.Methods.List) == 0 {
						keysAt(n.Elts, "")
					} else if id, ok := at.Elt.(*ast.Ident); ok && id.Name == "any" {
						keysAt(n.Elts, "")
					}
				}
			case *ast.CallExpr:
				if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "append" && len(n.Args) > 1 {
					if a, ok := n.Args[0].(*ast.Ident); ok && a.Name == "attrs" {
						keysAt(n.Args[1:], "")
					}
					return true
				}
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if sel.Sel.Name == "With" {
					keysAt(n.Args, "")
					return true
				}
				if sel.Sel.Name == "refuse" || sel.Sel.Name == "logRefusal" || sel.Sel.Name == "logDecision" {
					if len(n.Args) > 0 {
						if s, ok := stringLit(n.Args[0]); ok {
							lf.msgs[s] = true
						}
					}
					return true
				}
				at, ok := logMethods[sel.Sel.Name]
				if !ok || len(n.Args) < at {
					return true
				}
				msg, ok := stringLit(n.Args[at-1])
				if ok {
					lf.msgs[msg] = true
				}
				keysAt(n.Args[at:], msg)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return lf
}

func stringLit(e ast.Expr) (string, bool) {
	bl, ok := e.(*ast.BasicLit)
	if !ok || bl.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(bl.Value)
	return s, err == nil
}

// docs/logging.md is what an operator greps by: every field its table
// names is logged by the code, every event its msg row names is a log
// message of the code, and every key logged with one of those events is
// named in the document.
func TestLoggingDocMatchesTheCode(t *testing.T) {
	doc, err := os.ReadFile("../../docs/logging.md")
	if err != nil {
		t.Fatal(err)
	}
	lf := readLoggedFields(t, "../..")
	ticked := regexp.MustCompile("`([^`]+)`")
	prose := regexp.MustCompile("(?s)```.*?```").ReplaceAllString(string(doc), "")
	named := map[string]bool{}
	for _, m := range ticked.FindAllStringSubmatch(prose, -1) {
		named[m[1]] = true
	}
	var events []string
	for _, line := range strings.Split(string(doc), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(line, "| `") {
			continue
		}
		for _, m := range ticked.FindAllStringSubmatch(cells[1], -1) {
			field := m[1]
			if field == "msg" {
				for _, e := range ticked.FindAllStringSubmatch(cells[2], -1) {
					events = append(events, e[1])
				}
				continue
			}
			if !lf.keys[field] {
				t.Errorf("docs/logging.md names the field %q, which no log line has", field)
			}
		}
	}
	if len(events) < 5 {
		t.Fatalf("docs/logging.md: the msg row names %d events", len(events))
	}
	for _, e := range events {
		if !lf.msgs[e] {
			t.Errorf("docs/logging.md names the event %q, which is no log message", e)
			continue
		}
		var missing []string
		for k := range lf.byMsg[e] {
			if !named[k] {
				missing = append(missing, k)
			}
		}
		slices.Sort(missing)
		for _, k := range missing {
			t.Errorf("msg=%q logs %q (%s), which docs/logging.md does not name", e, k, lf.ofFile[k])
		}
	}
}
