package auth

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxedge/mxedge/internal/fileowner"
	"github.com/mxedge/mxedge/internal/testlog"
)

// cheap is an argon2id hash cheap enough for tests.
func cheap(pw string) string {
	return "{ARGON2ID}" + argon2idHash(pw, []byte("0123456789abcdef"), 1, 1024, 1, 32)
}

func TestUsersFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users")
	os.WriteFile(path, []byte("# users\n"+
		"Alice@Example.org:"+cheap("pw1")+"::::::senders=alice@example.org,*@example.net,sales@example.org\n"+
		"bob@example.org:"+cheap("pw2")+"\n"+
		"app:"+cheap("pw3")+":1000:1000::/home/app::quota=1G senders=*\n"), 0o600)
	var logs testlog.Buffer
	f, err := OpenFile(path, logs.Logger())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		user, pw, login string
		ok              bool
	}{
		{"alice@example.org", "pw1", "alice@example.org", true},
		{"ALICE@example.org", "pw1", "alice@example.org", true},
		{"alice@example.org", "pw2", "", false},
		{"nobody@example.org", "pw1", "", false},
		{"app", "pw3", "app", true},
	} {
		login, ok, err := f.Authenticate(ctx, Credentials{User: tc.user, Password: tc.pw})
		if err != nil || ok != tc.ok || login != tc.login {
			t.Errorf("%s/%s: %q %v %v", tc.user, tc.pw, login, ok, err)
		}
	}
	s, _ := f.Senders("alice@example.org")
	for addr, want := range map[string]bool{"alice@example.org": true, "Sales@EXAMPLE.org": true, "x@example.net": true,
		"bob@example.org": false, "alice@example.org.evil": false, "": false} {
		if s.Owns(addr) != want {
			t.Errorf("alice owns %q: %v", addr, !want)
		}
	}
	if s, _ := f.Senders("bob@example.org"); !s.Owns("bob@example.org") || s.Owns("alice@example.org") {
		t.Error("bob's default rule")
	}
	if s, _ := f.Senders("app"); !s.Owns("anyone@anywhere.example") {
		t.Error("app's * rule")
	}

	// A change is read at the next authentication; a broken one keeps the
	// last good version and says where it is broken.
	os.WriteFile(path+".new", []byte("carol@example.org:"+cheap("pw4")+"\n"), 0o600)
	os.Rename(path+".new", path)
	if _, ok, _ := f.Authenticate(ctx, Credentials{User: "carol@example.org", Password: "pw4"}); !ok {
		t.Error("new user not read")
	}
	time.Sleep(10 * time.Millisecond) // a different mtime on coarse file systems
	os.WriteFile(path+".new", []byte("carol@example.org:"+cheap("pw4")+"\ndave:{MD5}x\n"), 0o600)
	os.Rename(path+".new", path)
	if _, ok, _ := f.Authenticate(ctx, Credentials{User: "carol@example.org", Password: "pw4"}); !ok {
		t.Error("a broken file dropped the good version")
	}
	if l := logs.String(); !strings.Contains(l, path+":2: user ") || !strings.Contains(l, "{MD5} not supported") {
		t.Errorf("log:\n%s", logs.String())
	}
}

func TestUsersFileErrors(t *testing.T) {
	_, err := parseUsers("users", []byte("ok@example.org:"+cheap("x")+"\nnopassword\nx:plain\nok@example.org:"+cheap("y")+"\nbad:"+cheap("z")+"::::::senders=a@b@c\n"))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"users:2: want", "users:3: user \"x\": password without a scheme", "users:4: user \"ok@example.org\" listed twice", "users:5: user \"bad\": sender"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%v", want, err)
		}
	}
}

func TestEdit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	add := func(lines []string) ([]string, error) {
		return append(lines, UserLine("Eve@Example.org", cheap("pw"), []string{"eve@example.org"})), nil
	}
	if err := Edit(path, add); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	users, err := ReadUsers(path)
	if err != nil || users["eve@example.org"] == nil {
		t.Fatalf("%v %v", users, err)
	}
	// An edit that breaks the file is refused and changes nothing.
	before, _ := os.ReadFile(path)
	if err := Edit(path, func(l []string) ([]string, error) { return append(l, "broken"), nil }); err == nil {
		t.Error("broken edit accepted")
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("file changed")
	}
}

// "mxedge user add" run by root keeps the users file readable by the
// relay's user (User=mxedge): a new file takes its directory's owner, a
// rewritten one keeps its own.
func TestEditKeepsTheOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (files of another user)")
	}
	dir := t.TempDir()
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "users")
	add := func(name string) func([]string) ([]string, error) {
		return func(lines []string) ([]string, error) {
			return append(lines, UserLine(name, cheap("pw"), nil)), nil
		}
	}
	if err := Edit(path, add("eve@example.org")); err != nil {
		t.Fatal(err)
	}
	if uid, gid, err := fileowner.Owner(path); err != nil || uid != 65534 || gid != 65534 {
		t.Errorf("new users file owned by %d:%d (%v), want its directory's 65534:65534", uid, gid, err)
	}
	if err := os.Chown(dir, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := Edit(path, add("bob@example.org")); err != nil {
		t.Fatal(err)
	}
	if uid, gid, err := fileowner.Owner(path); err != nil || uid != 65534 || gid != 65534 {
		t.Errorf("rewritten users file owned by %d:%d (%v), want its own 65534:65534", uid, gid, err)
	}
}
