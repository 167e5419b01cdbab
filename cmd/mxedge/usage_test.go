package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// caseLabels are the string labels of the switch statements of function
// fn in file: the commands it dispatches (flags and "help" left out).
func caseLabels(t *testing.T, file, fn string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Name.Name != fn {
			continue
		}
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			if cc, ok := n.(*ast.CaseClause); ok {
				for _, e := range cc.List {
					if bl, ok := e.(*ast.BasicLit); ok && bl.Kind == token.STRING {
						if s, _ := strconv.Unquote(bl.Value); s != "help" && !strings.HasPrefix(s, "-") {
							out = append(out, s)
						}
					}
				}
			}
			return true
		})
	}
	if len(out) == 0 {
		t.Fatalf("no commands found in %s of %s", fn, file)
	}
	return out
}

// "mxedge" without arguments is where a newcomer looks first: its usage
// names every command run dispatches and every queue subcommand.
func TestUsageNamesEveryCommand(t *testing.T) {
	for _, c := range caseLabels(t, "main.go", "run") {
		if !regexp.MustCompile(`(?m)^  mxedge ` + regexp.QuoteMeta(c) + `\b`).MatchString(usage) {
			t.Errorf("usage does not name \"mxedge %s\"", c)
		}
	}
	queueLines := strings.Join(regexp.MustCompile(`(?m)^  mxedge queue .*$`).FindAllString(usage, -1), "\n")
	for _, c := range caseLabels(t, "queue.go", "cmdQueue") {
		if !regexp.MustCompile(`\b` + c + `\b`).MatchString(queueLines) {
			t.Errorf("usage does not name \"mxedge queue %s\"", c)
		}
	}
}
