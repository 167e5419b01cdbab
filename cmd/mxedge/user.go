package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mxedge/mxedge/auth"
	"github.com/mxedge/mxedge/config"
	"github.com/mxedge/mxedge/control"
	"github.com/mxedge/mxedge/submission"
)

const userUsage = `usage:
  mxedge user add NAME [-senders A,B] [-config FILE]   add a user; the password is read from stdin
  mxedge user passwd NAME [-config FILE]               set a new password (read from stdin)
  mxedge user del NAME [-config FILE]                  remove a user
  mxedge user list [-config FILE]                      users and their sender addresses
  mxedge user show NAME [-config FILE]                 a user's senders and rate limit counters

The users file is [auth] users_file. Passwords are stored as {ARGON2ID};
the running relay reads the changed file at the next AUTH. -senders lists
the addresses the user may send as: addresses, *@domain, domain, or *
(default: the user's own name, if it is an address).
`

func cmdUser(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, userUsage)
		return 2
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		fmt.Fprint(stdout, userUsage)
		return 0
	}
	sub, rest := args[0], args[1:]
	var name string
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		name, rest = rest[0], rest[1:]
	}
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (default: $MXEDGE_CONFIG, "+defaultConfigPath+", the built-in demo)")
	senders := fs.String("senders", "", "comma separated sender addresses (add)")
	if err := fs.Parse(rest); err != nil {
		return 2
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
	}
	if name == "" && sub != "list" {
		fmt.Fprint(stderr, userUsage)
		return 2
	}
	cfg, _, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	file := cfg.Auth.UsersFile
	name = strings.ToLower(name)
	switch sub {
	case "add", "passwd":
		pw, err := readPassword(stdin)
		if err != nil {
			fmt.Fprintln(stderr, "mxedge user:", err)
			return 1
		}
		h, err := auth.HashPassword(pw)
		if err != nil {
			fmt.Fprintln(stderr, "mxedge user:", err)
			return 1
		}
		err = auth.Edit(file, func(lines []string) ([]string, error) {
			i := slices.IndexFunc(lines, func(l string) bool { return auth.LineUser(l) == name })
			switch {
			case sub == "add" && i >= 0:
				return nil, fmt.Errorf("user %q exists (mxedge user passwd sets its password)", name)
			case sub == "add":
				var rules []string
				if *senders != "" {
					rules = strings.Split(*senders, ",")
				}
				return append(lines, auth.UserLine(name, h, rules)), nil
			case i < 0:
				return nil, fmt.Errorf("no user %q", name)
			}
			lines[i] = auth.SetLinePassword(lines[i], h)
			return lines, nil
		})
		if err != nil {
			fmt.Fprintln(stderr, "mxedge user:", err)
			return 1
		}
		fmt.Fprintf(stdout, "user %s: %s in %s\n", name, map[string]string{"add": "added", "passwd": "password set"}[sub], file)
		return 0
	case "del":
		err := auth.Edit(file, func(lines []string) ([]string, error) {
			i := slices.IndexFunc(lines, func(l string) bool { return auth.LineUser(l) == name })
			if i < 0 {
				return nil, fmt.Errorf("no user %q", name)
			}
			return slices.Delete(lines, i, i+1), nil
		})
		if err != nil {
			fmt.Fprintln(stderr, "mxedge user:", err)
			return 1
		}
		fmt.Fprintf(stdout, "user %s: removed from %s\n", name, file)
		return 0
	case "list", "show":
		users, err := auth.ReadUsers(file)
		if err != nil {
			fmt.Fprintln(stderr, "mxedge user:", err)
			return 1
		}
		names := make([]string, 0, len(users))
		for n := range users {
			names = append(names, n)
		}
		slices.Sort(names)
		if sub == "list" {
			for _, n := range names {
				fmt.Fprintf(stdout, "%s\tsenders=%s\n", n, strings.Join(users[n].Senders.Rules(), ","))
			}
			return 0
		}
		u := users[name]
		if u == nil {
			fmt.Fprintf(stderr, "mxedge user: no user %q in %s\n", name, file)
			return 1
		}
		fmt.Fprintf(stdout, "user:     %s\nsenders:  %s\n", u.Name, strings.Join(u.Senders.Rules(), ", "))
		usage, source, err := userCounters(cfg, name)
		if err != nil {
			fmt.Fprintf(stdout, "counters: unknown (%v)\n", err)
			return 0
		}
		s := cfg.Submission
		fmt.Fprintf(stdout, "counters (%s):\n", source)
		fmt.Fprintf(stdout, "  this hour (since %s): %d/%s messages, %d/%s recipients\n", stamp(usage.HourStart),
			usage.HourMessages, limit(s.MessagesPerHour), usage.HourRcpts, limit(s.RecipientsPerHour))
		fmt.Fprintf(stdout, "  today (since %s):     %d/%s messages, %d/%s recipients\n", stamp(usage.DayStart),
			usage.DayMessages, limit(s.MessagesPerDay), usage.DayRcpts, limit(s.RecipientsPerDay))
		if !usage.OverLimit.IsZero() {
			fmt.Fprintf(stdout, "  last over a limit: %s\n", stamp(usage.OverLimit))
		}
		return 0
	}
	fmt.Fprintf(stderr, "mxedge user: unknown command %q\n%s", sub, userUsage)
	return 2
}

// userCounters asks the running relay, else reads the store file.
func userCounters(cfg *config.Config, name string) (submission.Usage, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u, err := control.NewClient(control.SocketPath(cfg.DataDir)).UserUsage(ctx, name)
	if err == nil {
		return u, "from the running relay", nil
	}
	if !errors.Is(err, control.ErrNotRunning) {
		return u, "", err
	}
	path := filepath.Join(cfg.DataDir, storeFileName)
	if _, serr := os.Stat(path); serr != nil {
		return submission.Usage{}, "none recorded", nil
	}
	u, _, err = submission.ReadUsage(path, name)
	return u, "from " + path + ", relay not running", err
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func limit(n int) string {
	if n == 0 {
		return "unlimited"
	}
	return fmt.Sprint(n)
}

// readPassword reads one line from stdin (a terminal echoes it: pipe it
// in, e.g. from a password manager).
func readPassword(stdin io.Reader) (string, error) {
	if f, ok := stdin.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprint(os.Stderr, "password (echoed): ")
		}
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", errors.New("no password on stdin")
	}
	pw := strings.TrimRight(line, "\r\n")
	if len(pw) < 8 {
		return "", errors.New("password shorter than 8 characters")
	}
	return pw, nil
}
