// Package fileowner gives the files that admin commands write the owner
// the daemon runs as. "mxedge user add" and "mxedge dkim keygen" are run
// as root; the relay runs as User=mxedge (examples/mxedge.service) and
// must read what they write (the users file, a DKIM key, both 0600). So
// a file written by root takes the owner and group of a model: the file
// it replaces, or the directory it is written into (deploy.md gives
// /etc/mxedge and /var/lib/mxedge to mxedge). Not run as root, a command
// can only write files of its own user, and nothing is changed.
package fileowner

import (
	"fmt"
	"os"
	"syscall"
)

// Match gives path the owner and group of model when the process runs as
// root; otherwise it does nothing.
func Match(path, model string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	uid, gid, err := Owner(model)
	if err != nil {
		return fmt.Errorf("owner of %s: %w", path, err)
	}
	if err := os.Lchown(path, int(uid), int(gid)); err != nil {
		return fmt.Errorf("owner of %s: %w", path, err)
	}
	return nil
}

// Owner returns the owner and group of path.
func Owner(path string) (uid, gid uint32, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, fmt.Errorf("%s: no owner information", path)
	}
	return st.Uid, st.Gid, nil
}
