package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// SocketName is the control socket's file name in the data directory.
const SocketName = "control.sock"

// SocketPath returns the control socket of the daemon whose data directory
// is dataDir.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, SocketName) }

// ErrRunning is returned by Listen when a daemon answers on the socket.
var ErrRunning = errors.New("another mxedge is running")

// maxSocketPath is the longest path a unix socket can be bound to on Linux
// (sun_path is 108 bytes with the terminating NUL).
const maxSocketPath = 107

// Server serves the admin API. Its routes live on its own ServeMux (never
// http.DefaultServeMux); New registers the queue routes, Handle adds more.
type Server struct {
	mux *http.ServeMux
	hs  *http.Server
	log *slog.Logger
}

// New returns a server with the queue routes (see the package doc) over q.
func New(q Queue, log *slog.Logger) *Server {
	s := &Server{mux: http.NewServeMux(), log: log}
	s.hs = &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// No WriteTimeout: a listing of a large queue is streamed for as
		// long as it takes; the list handler sets a deadline per write.
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	s.queueRoutes(q)
	// Process counters for soak runs (bench/soak.sh).
	s.mux.HandleFunc("GET /runtime", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]int{"goroutines": runtime.NumGoroutine()})
	})
	return s
}

// Handle registers h for pattern (net/http ServeMux syntax, e.g.
// "GET /verify/{addr}"), for route groups besides the queue's. Call it
// before Serve.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Serve serves connections from ln until Shutdown, then returns nil. It
// closes ln; a listener from Listen removes its socket file on close.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("control: serve: %w", err)
	}
	return nil
}

// Shutdown stops accepting and lets requests in progress finish until ctx
// is done; then it closes the remaining connections (a long listing, whose
// handler stops at its next message) and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.hs.Shutdown(ctx)
	if err != nil {
		_ = s.hs.Close()
		return fmt.Errorf("control: shutdown: %w", err)
	}
	return nil
}

// Listen creates the control socket at path, mode 0600, and returns its
// listener; closing the listener removes the socket file.
//
// A socket file left at path by a daemon that died is removed; if a daemon
// answers on it, Listen fails with ErrRunning. The socket is bound in a
// new private directory (mode 0700) next to path, set to 0600 and then
// renamed to path, so it is never reachable with a mode the umask chose.
func (s *Server) Listen(path string) (net.Listener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("control: socket path %s is longer than %d bytes (choose a shorter data_dir)", path, maxSocketPath)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	tmpDir, err := os.MkdirTemp(filepath.Dir(path), ".ctl")
	if err != nil {
		return nil, fmt.Errorf("control: listen: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")
	if len(tmp) > maxSocketPath {
		return nil, fmt.Errorf("control: socket path %s is too long (choose a shorter data_dir)", path)
	}
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("control: listen: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // socketListener removes path instead
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control: listen: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control: listen: %w", err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("control: listen: %w", err)
	}
	return &socketListener{Listener: ln, path: path, fi: fi}, nil
}

// removeStale removes a socket file at path that no daemon answers on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control: %s exists and is not a socket; remove it", path)
	}
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("control: %w (it answers on %s)", ErrRunning, path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		// EAGAIN: alive but busy; EACCES: someone else's. Not ours to remove.
		return fmt.Errorf("control: check %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control: remove stale socket: %w", err)
	}
	return nil
}

// socketListener is a listener from Listen: it reports the socket's final
// path and removes the socket file on Close, if it is still ours.
type socketListener struct {
	net.Listener
	path string
	fi   os.FileInfo
	once sync.Once
	err  error
}

func (l *socketListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

func (l *socketListener) Close() error {
	l.once.Do(func() {
		l.err = l.Listener.Close()
		if fi, err := os.Lstat(l.path); err == nil && os.SameFile(fi, l.fi) {
			_ = os.Remove(l.path)
		}
	})
	return l.err
}

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}
