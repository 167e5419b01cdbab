package main

import (
	"errors"
	"fmt"
	"os"
)

// checkPrivateDirs refuses directories that other users could write to:
// the data directory (queue, spool files) and the control socket's
// directory. Anyone who can write there can replace queue.db or a spool
// file, or put a socket of their own in place of the daemon's. A directory
// that does not exist yet is created by the daemon with mode 0700 and
// passes.
func checkPrivateDirs(dirs ...string) error {
	seen := map[string]bool{}
	for _, dir := range dirs {
		if seen[dir] {
			continue
		}
		seen[dir] = true
		st, err := os.Stat(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err // a *PathError: names the directory
		}
		if m := st.Mode().Perm(); m&0o022 != 0 {
			return fmt.Errorf("%s is writable by group or others (mode %04o): refusing to start; fix with: chmod go-w %s", dir, m, dir)
		}
	}
	return nil
}
