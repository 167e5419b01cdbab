package main

import (
	"log/slog"
	"syscall"

	"github.com/mxedge/mxedge/config"
	"github.com/mxedge/mxedge/resolver"
)

// File descriptors. Every session holds its socket, and a spool file while
// a large message arrives; its connect-time lookups use DNS sockets, of
// which the resolver keeps at most resolver.DefaultMaxInFlight open at once
// for all sessions together; the queue, delivery's connections,
// verification probes and the control socket need theirs too. If the
// sessions could use up the process's descriptors, accept fails with
// EMFILE and, worse, the control socket stops answering under a connection
// flood. So at start the soft RLIMIT_NOFILE is raised to the hard limit,
// and the listeners' max_sessions are lowered, if needed, so that one
// descriptor per session fits in what is left after a reserve (the DNS
// sockets, delivery's and the queue's, spool files, the control socket).
// A client beyond max_sessions gets 421 at once: one descriptor for a
// moment. If the reserve runs short all the same, a spool file that
// cannot be opened is a 451 (the sender retries), and accept errors
// (EMFILE) back off and retry (smtpd gate, the control socket's HTTP
// server).
const (
	fdsPerSession = 1
	fdsReserved   = 512 + resolver.DefaultMaxInFlight
)

// fitSessions raises the soft RLIMIT_NOFILE to the hard limit and lowers
// the max_sessions of cfg's listeners to fit in it (proportionally, at
// least 1 each), logging what it did. It returns the descriptor limit in
// force.
func fitSessions(cfg *config.Config, log *slog.Logger) uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		log.Warn("RLIMIT_NOFILE unknown; max_sessions not checked", "err", err)
		return 0
	}
	if rl.Cur < rl.Max {
		raised := rl
		raised.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			log.Warn("cannot raise RLIMIT_NOFILE to its hard limit", "soft", rl.Cur, "hard", rl.Max, "err", err)
		} else {
			rl = raised
		}
	}
	reserve := uint64(fdsReserved + 2*cfg.Delivery.Concurrency + cfg.Queue.Concurrency)
	budget := uint64(0)
	if rl.Cur > reserve {
		budget = (rl.Cur - reserve) / fdsPerSession
	}
	total := uint64(0)
	for _, l := range cfg.Listeners {
		total += uint64(l.MaxSessions)
	}
	if total <= budget {
		return rl.Cur
	}
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		n := max(1, int(uint64(l.MaxSessions)*budget/total))
		log.Warn("max_sessions lowered to fit the file descriptor limit", "listener", l.Name,
			"max_sessions", l.MaxSessions, "now", n, "rlimit_nofile", rl.Cur, "per_session", fdsPerSession,
			"reserved", reserve)
		l.MaxSessions = n
	}
	return rl.Cur
}
