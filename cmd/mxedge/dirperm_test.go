package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckPrivateDirs(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "data")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := checkPrivateDirs(open, filepath.Join(dir, "missing")); err != nil {
		t.Fatalf("0700 dir refused: %v", err)
	}
	for _, mode := range []os.FileMode{0o777, 0o770, 0o702} {
		if err := os.Chmod(open, mode); err != nil {
			t.Fatal(err)
		}
		err := checkPrivateDirs(open)
		if err == nil || !strings.Contains(err.Error(), "chmod go-w "+open) {
			t.Errorf("mode %o: %v, want a refusal naming the chmod fix", mode, err)
		}
	}
}
