package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/mxedge/mxedge/internal/fileowner"
)

// asDataDirOwner makes the offline queue commands (compact, check,
// recover) run as the owner of the data directory when they are started
// as root: they rewrite queue.db and create and move spool files, and as
// root they would leave files the relay (User=mxedge) cannot open at its
// next start. The process takes that user's uid and gid (Go sets them on
// every thread) and no supplementary groups. A missing or root-owned data
// directory changes nothing.
func asDataDirOwner(dataDir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	uid, gid, err := fileowner.Owner(dataDir)
	if errors.Is(err, os.ErrNotExist) || err == nil && uid == 0 {
		return nil
	}
	if err == nil {
		err = syscall.Setgroups(nil)
	}
	if err == nil {
		err = syscall.Setgid(int(gid))
	}
	if err == nil {
		err = syscall.Setuid(int(uid))
	}
	if err != nil {
		return fmt.Errorf("run as the owner of %s (uid %d): %w", dataDir, uid, err)
	}
	return nil
}

// offlineQueueDir is the queue directory of the offline queue commands,
// entered as the data directory's owner when asOwner is set (the command
// line; not "serve -recover", which keeps the daemon's own user and
// capabilities).
func (c *adminCmd) offlineQueueDir(asOwner bool) (string, error) {
	cfg, _, err := loadConfig(*c.config)
	if err != nil {
		return "", err
	}
	if asOwner {
		if err := asDataDirOwner(cfg.DataDir); err != nil {
			return "", err
		}
	}
	return filepath.Join(cfg.DataDir, "queue"), nil
}
