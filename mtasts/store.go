package mtasts

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// fileName is the cache file in Options.Dir.
const fileName = "mtasts.json"

// fileVersion is the format version of the cache file.
const fileVersion = 1

func cacheFile(dir string) string { return filepath.Join(dir, fileName) }

// fileData is the cache file: the policies by domain.
type fileData struct {
	Version  int                   `json:"version"`
	Policies map[string]filePolicy `json:"policies"`
}

type filePolicy struct {
	Mode    Mode      `json:"mode"`
	MX      []string  `json:"mx,omitempty"`
	MaxAge  int64     `json:"max_age"` // seconds
	ID      string    `json:"id"`
	Fetched time.Time `json:"fetched"`
}

// load reads the cache file, keeping the policies that are valid and not
// expired. A missing file is an empty cache; an unreadable one an error;
// one that does not parse is renamed aside and logged.
func (c *Cache) load() error {
	if err := os.MkdirAll(filepath.Dir(c.file), 0o750); err != nil {
		return fmt.Errorf("mtasts: %w", err)
	}
	b, err := os.ReadFile(c.file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mtasts: %w", err)
	}
	var d fileData
	if err := json.Unmarshal(b, &d); err != nil || d.Version != fileVersion {
		if err == nil {
			err = fmt.Errorf("format version %d", d.Version)
		}
		bad := c.file + ".bad"
		if rerr := os.Rename(c.file, bad); rerr != nil {
			return fmt.Errorf("mtasts: %s: %w; rename aside: %w", c.file, err, rerr)
		}
		c.log.Warn("mta-sts: cache file unusable, moved aside; starting empty", "file", bad, "err", err)
		return nil
	}
	now := c.now()
	for domain, fp := range d.Policies {
		p := &Policy{Mode: fp.Mode, MX: fp.MX, MaxAge: time.Duration(fp.MaxAge) * time.Second, ID: fp.ID, Fetched: fp.Fetched}
		if fp.MaxAge < 0 || fp.MaxAge > MaxMaxAge {
			p.MaxAge = -1 // invalid whatever the multiplication did
		}
		nd, err := normalizeDomain(domain)
		if err == nil && nd != domain {
			err = fmt.Errorf("domain %q not normalized", domain)
		}
		if err == nil {
			err = p.validate()
		}
		if err != nil {
			c.log.Warn("mta-sts: cache file: policy skipped", "domain", domain, "err", err)
			continue
		}
		if now.Before(p.Expires()) {
			c.policies[domain] = p
		}
	}
	c.log.Info("mta-sts: cache loaded", "file", c.file, "policies", len(c.policies))
	return nil
}

// save writes the cached policies to the cache file, if there is one. A
// failure is logged: the policies stay in memory, and the next change
// tries again.
func (c *Cache) save() {
	if c.file == "" {
		return
	}
	// The snapshot is taken under saveMu, so the last file written holds
	// the latest state.
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	d := fileData{Version: fileVersion, Policies: map[string]filePolicy{}}
	c.mu.Lock()
	for domain, p := range c.policies {
		d.Policies[domain] = filePolicy{Mode: p.Mode, MX: p.MX, MaxAge: int64(p.MaxAge / time.Second), ID: p.ID, Fetched: p.Fetched}
	}
	c.mu.Unlock()
	b, err := json.MarshalIndent(d, "", "\t")
	if err == nil {
		err = writeFileAtomic(c.file, append(b, '\n'))
	}
	if err != nil {
		c.log.Error("mta-sts: cache file not written", "file", c.file, "err", err)
	}
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory, fsynced, renamed over path, then the directory fsynced, so
// that after a crash path holds either the old or the new data.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	_, err = f.Write(data)
	err = errors.Join(err, f.Sync(), f.Close())
	if err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
