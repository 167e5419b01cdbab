package auth

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mxedge/mxedge/internal/fileowner"
)

// The users file is mxedge's own password file, in the line format of
// Dovecot's passwd-file, so that an existing Dovecot file can be used as
// it is:
//
//	# comment
//	name:{SCHEME}hash[:uid:gid:gecos:home:shell:extra fields]
//	alice@example.org:{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$...::::::senders=alice@example.org,*@example.net
//
// name is the login (compared without regard to case); the password
// field is described at HashPassword / parseHash; of the extra fields
// (space separated key=value) mxedge reads senders=, the comma separated
// sender rules of the login (see Senders), and ignores the rest. Without
// senders= a login that is an address may send as itself only.
//
// The file is read when opened and again when it changed (checked at each
// authentication: mtime, size, inode); a file with errors is reported with
// file:line and the last good version stays in use.

// User is one line of the users file.
type User struct {
	Name    string
	Senders Senders
	hash    hash
}

// File is an open users file: a Backend and the sender rules of its users.
type File struct {
	path string
	log  *slog.Logger

	mu    sync.Mutex
	users map[string]*User
	decoy hash // checked for unknown users, so they cost as much as a wrong password
	stamp fileStamp
}

type fileStamp struct {
	mtime time.Time
	size  int64
	ino   uint64
}

func stampOf(fi os.FileInfo) fileStamp {
	st := fileStamp{mtime: fi.ModTime(), size: fi.Size()}
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = s.Ino
	}
	return st
}

// OpenFile reads the users file at path. Errors name file and line.
func OpenFile(path string, log *slog.Logger) (*File, error) {
	if log == nil {
		log = slog.Default()
	}
	f := &File{path: path, log: log}
	if err := f.load(); err != nil {
		return nil, err
	}
	return f, nil
}

// ReadUsers parses the users file at path (every error, file:line).
func ReadUsers(path string) (map[string]*User, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	return parseUsers(path, data)
}

func (f *File) load() error {
	fi, err := os.Stat(f.path)
	if err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	users, err := ReadUsers(f.path)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.users, f.stamp = users, stampOf(fi)
	f.decoy = decoyFor(users)
	return nil
}

// decoyFor is the hash checked for an unknown user: the first user's in
// name order (same scheme and cost as a real one), or a fresh argon2id
// hash for an empty file.
func decoyFor(users map[string]*User) hash {
	names := make([]string, 0, len(users))
	for n := range users {
		names = append(names, n)
	}
	slices.Sort(names)
	if len(names) > 0 {
		return users[names[0]].hash
	}
	s, _ := HashPassword("decoy")
	h, _ := parseHash(s)
	return h
}

// reloadIfChanged re-reads the file if it changed since it was read; a
// broken new version is logged and the old one kept.
func (f *File) reloadIfChanged() {
	fi, err := os.Stat(f.path)
	if err != nil {
		f.log.Error("users file not readable, keeping the last good version", "file", f.path, "err", err)
		return
	}
	f.mu.Lock()
	same := stampOf(fi) == f.stamp
	f.mu.Unlock()
	if same {
		return
	}
	if err := f.load(); err != nil {
		f.log.Error("users file not reloaded, keeping the last good version", "err", err)
		f.mu.Lock()
		f.stamp = stampOf(fi) // report a broken version once
		f.mu.Unlock()
		return
	}
	f.log.Info("users file reloaded", "file", f.path, "users", f.Len())
}

// Len is the number of users.
func (f *File) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.users)
}

// Authenticate implements Backend: the password is checked against the
// user's hash, or against a decoy of the same cost when there is no such
// user.
func (f *File) Authenticate(_ context.Context, c Credentials) (string, bool, error) {
	f.reloadIfChanged()
	f.mu.Lock()
	u, decoy := f.users[strings.ToLower(c.User)], f.decoy
	f.mu.Unlock()
	if u == nil {
		decoy.verify(c.Password)
		return "", false, nil
	}
	if !u.hash.verify(c.Password) {
		return "", false, nil
	}
	return u.Name, true, nil
}

// Senders implements SenderMap.
func (f *File) Senders(login string) (Senders, bool) {
	f.reloadIfChanged()
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.users[strings.ToLower(login)]
	if u == nil {
		return Senders{}, false
	}
	return u.Senders, true
}

func parseUsers(name string, data []byte) (map[string]*User, error) {
	users := map[string]*User{}
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		u, err := parseUserLine(line)
		if err == nil && users[u.Name] != nil {
			err = fmt.Errorf("user %q listed twice", u.Name)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", name, n, err))
			continue
		}
		users[u.Name] = u
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return users, nil
}

func parseUserLine(line string) (*User, error) {
	fields := strings.SplitN(line, ":", 8)
	if len(fields) < 2 {
		return nil, errors.New(`want "name:{SCHEME}hash[:uid:gid:gecos:home:shell:extra]"`)
	}
	name := strings.ToLower(fields[0])
	if name == "" || strings.ContainsAny(name, " \t") {
		return nil, fmt.Errorf("user name %q: empty or with white space", fields[0])
	}
	h, err := parseHash(fields[1])
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", name, err)
	}
	u := &User{Name: name, hash: h}
	var rules []string
	found := false
	if len(fields) == 8 {
		for _, kv := range strings.Fields(fields[7]) {
			if v, ok := strings.CutPrefix(kv, "senders="); ok {
				rules, found = append(rules, strings.Split(v, ",")...), true
			}
		}
	}
	if !found && strings.Contains(name, "@") {
		rules = []string{name}
	}
	if u.Senders, err = ParseSenders(rules); err != nil {
		return nil, fmt.Errorf("user %q: %w", name, err)
	}
	return u, nil
}

// Edit changes the users file at path for "mxedge user": fn gets its
// lines and returns the new ones; the result must parse, and replaces the
// file atomically (a temporary file renamed over it, mode 0600 or the
// file's own; run as root, the owner of the file or else of its
// directory, so that the relay's user can still read it). A missing file
// is an empty one.
func Edit(path string, fn func(lines []string) ([]string, error)) error {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("users file: %w", err)
	}
	mode := os.FileMode(0o600)
	owner := filepath.Dir(path)
	if fi, err := os.Stat(path); err == nil {
		mode, owner = fi.Mode().Perm(), path
	}
	var lines []string
	if len(data) > 0 {
		lines = strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	}
	if lines, err = fn(lines); err != nil {
		return err
	}
	out := []byte(strings.Join(lines, "\n") + "\n")
	if _, err := parseUsers(path, out); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".users-*")
	if err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err = tmp.Write(out); err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil {
		err = fileowner.Match(tmp.Name(), owner)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	return nil
}

// UserLine is the users file line of a new user.
func UserLine(name, passwordHash string, senders []string) string {
	line := strings.ToLower(name) + ":" + passwordHash
	if len(senders) > 0 {
		line += "::::::senders=" + strings.Join(senders, ",")
	}
	return line
}

// LineUser returns the user name of a users file line ("" for comments and
// blank lines).
func LineUser(line string) string {
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return ""
	}
	name, _, _ := strings.Cut(line, ":")
	return strings.ToLower(name)
}

// SetLinePassword returns line with its password field replaced.
func SetLinePassword(line, passwordHash string) string {
	fields := strings.SplitN(line, ":", 3)
	fields[1] = passwordHash
	return strings.Join(fields, ":")
}
