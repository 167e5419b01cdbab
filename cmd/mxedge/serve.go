package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/mxedge/mxedge/config"
	"github.com/mxedge/mxedge/control"
	"github.com/mxedge/mxedge/delivery"
	"github.com/mxedge/mxedge/internal/localbackend"
	"github.com/mxedge/mxedge/queue"
	"github.com/mxedge/mxedge/smtpd"
)

// demoUsers are the mailboxes of the built-in default's example.test.
var demoUsers = []string{"alice", "bob", "postmaster"}

func cmdServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (default: built-in local demo)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to this file until shutdown (for benchmarks)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(stderr, "cpuprofile:", err)
			return 1
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	// Recipient list files belong to the configuration: their errors
	// (file:line) are reported like the file's, before anything starts.
	if _, err := verifyOptions(cfg, nil, nil); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := delivery.CheckSmarthostAuth(cfg); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, *path == "", stdout, log); err != nil {
		log.Error("mxedge stopped", "err", err)
		return 1
	}
	return 0
}

// serve runs the relay until ctx is cancelled, then shuts down in order:
// listeners stop accepting and drain (bounded by timeouts.shutdown), the
// scheduler lets deliveries in flight finish (same bound), the control
// socket closes (same bound), the verification cache closes (probes in
// flight are cut), the queue closes.
func serve(ctx context.Context, cfg *config.Config, demo bool, stdout io.Writer, log *slog.Logger) error {
	if demo {
		b := &localbackend.Backend{Domain: "example.test", Users: demoUsers,
			Dir: filepath.Join(cfg.DataDir, "mailboxes"), Log: log}
		addr, err := b.Start(cfg.Routes["example.test"])
		if err != nil {
			return err
		}
		defer b.Close()
		fmt.Fprintf(stdout, "demo backend for example.test on %s: users %v; mail is stored under %s/<user>/new/\n",
			addr, demoUsers, b.Dir)
	}
	q, err := queue.Open(filepath.Join(cfg.DataDir, "queue"), queueOptions(cfg, log))
	if err != nil {
		return err
	}
	defer q.Close()

	// The one DNS resolver ([dns]) of every stage that asks DNS.
	res := newResolver(cfg)
	// Delivery: MX routing over it, MTA-STS, DANE.
	dl, err := newDeliverer(ctx, cfg, res, log)
	if err != nil {
		return err
	}
	defer dl.Close() // QUIT to cached next-hop connections, after the scheduler stopped

	// Recipient verification (closed before the queue, after the
	// listeners have drained: deferred calls run in reverse).
	ver, err := openVerifier(cfg, res, log)
	if err != nil {
		return err
	}
	defer ver.Close()

	// The admin socket is bound before the listeners are announced, so
	// that "mxedge queue ..." works once the "listener on" lines are out.
	ctl := control.New(q, log)
	ctl.HandleVerify(ver)
	ctlPath := control.SocketPath(cfg.DataDir)
	ctlLn, err := ctl.Listen(ctlPath)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "control socket at %s\n", ctlPath)

	var servers []*smtpd.Server
	var lns []net.Listener
	for _, lc := range cfg.Listeners {
		// Every listener is an MX listener so far; submission will not
		// verify.
		s := smtpd.New(cfg, lc, q, log, smtpd.WithVerifier(ver))
		ln, err := s.Listen()
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			ctlLn.Close()
			return err
		}
		servers, lns = append(servers, s), append(lns, ln)
		fmt.Fprintf(stdout, "mxedge %s listener on %s (relay domains %v)\n", lc.Name, ln.Addr(), cfg.RelayDomains)
	}

	var wg sync.WaitGroup
	errc := make(chan error, len(servers)+1)
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Serve(lns[i]); err != nil {
				errc <- err
			}
		}()
	}
	go func() {
		if err := ctl.Serve(ctlLn); err != nil {
			errc <- err
		}
	}()
	qctx, qcancel := context.WithCancel(context.Background())
	qdone := make(chan error, 1)
	go func() { qdone <- q.Run(qctx, dl, cfg.Timeouts.Shutdown.D()) }()
	log.Info("mxedge started", "hostname", cfg.Hostname, "data_dir", cfg.DataDir)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-errc:
	}
	t0 := time.Now()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Timeouts.Shutdown.D())
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(sctx)
	}
	wg.Wait()
	qcancel()
	if err := <-qdone; err != nil && !errors.Is(err, context.Canceled) {
		runErr = errors.Join(runErr, err)
	}
	// Admin commands keep working while deliveries drain; the socket
	// closes before the queue does (deferred q.Close).
	if err := ctl.Shutdown(sctx); err != nil {
		log.Warn("admin requests cut at shutdown", "err", err)
	}
	ctlLn.Close() // removes the socket file even if Serve has not run yet
	log.Info("mxedge stopped", "shutdown", time.Since(t0).Round(time.Millisecond).String())
	return runErr
}

// queueOptions maps the configuration onto the queue's options.
func queueOptions(cfg *config.Config, log *slog.Logger) queue.Options {
	return queue.Options{
		Hostname:       cfg.Hostname,
		MinBackoff:     cfg.Queue.MinBackoff.D(),
		MaxBackoff:     cfg.Queue.MaxBackoff.D(),
		MaxLifetime:    cfg.Queue.MaxLifetime.D(),
		BounceLifetime: cfg.Queue.BounceLifetime.D(),
		DelayWarning:   cfg.Queue.DelayWarning.D(),
		Postmaster:     cfg.Queue.Postmaster,
		Concurrency:    cfg.Queue.Concurrency,
		// No signing yet: DKIM signing of submitted mail will be the
		// queue.Signer here. nil makes the hook a no-op.
		Signer: nil,
		Logger: log,
	}
}
