package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mxedge/mxedge/config"
	"github.com/mxedge/mxedge/control"
	"github.com/mxedge/mxedge/delivery"
	"github.com/mxedge/mxedge/internal/certs"
	"github.com/mxedge/mxedge/internal/localbackend"
	"github.com/mxedge/mxedge/internal/metrics"
	"github.com/mxedge/mxedge/internal/sdnotify"
	"github.com/mxedge/mxedge/policy"
	"github.com/mxedge/mxedge/queue"
	"github.com/mxedge/mxedge/resolver"
	"github.com/mxedge/mxedge/smtpd"
	"github.com/mxedge/mxedge/submission"
	"github.com/mxedge/mxedge/verifycache"
)

// demoUsers are the mailboxes of the built-in default's example.test.
var demoUsers = []string{"alice", "bob", "postmaster"}

func cmdServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (default: $MXEDGE_CONFIG, "+defaultConfigPath+", else the built-in local demo)")
	logFormat := fs.String("log-format", "text", "log lines as \"text\" (key=value) or \"json\" (one object per line)")
	recoverQueue := fs.Bool("recover", false, "rebuild the queue index from the spool files before starting (as `mxedge queue recover`)")
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
	var log *slog.Logger
	switch *logFormat {
	case "text":
		log = slog.New(slog.NewTextHandler(stderr, nil))
	case "json":
		log = slog.New(slog.NewJSONHandler(stderr, nil))
	default:
		fmt.Fprintf(stderr, "serve: -log-format %q: must be \"text\" or \"json\"\n", *logFormat)
		return 2
	}
	cfg, from, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	// Recipient list files belong to the configuration: their errors
	// (file:line) are reported like the file's, before anything starts.
	if _, err := verifyOptions(cfg, nil); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := checkListenerFiles(cfg); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := delivery.CheckSmarthostAuth(cfg.Delivery.SmarthostAuthFile); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := checkPrivateDirs(cfg.DataDir, filepath.Dir(control.SocketPath(cfg.DataDir))); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if *recoverQueue {
		if rc := queueCheck("recover", []string{"-config", *path}, stdout, stderr, false); rc != 0 {
			return rc
		}
	}
	nofile := fitSessions(cfg, log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stdout, "mxedge %s, configuration: %s\n", version(), from)
	log.Info("file descriptors", "rlimit_nofile", nofile)
	if err := serve(ctx, cfg, *path, from == demoSource, stdout, log); err != nil {
		if errors.Is(err, queue.ErrIndexDamaged) || errors.Is(err, queue.ErrIndexMissing) {
			// One line for the operator, no stack, exit 1 (a supervisor
			// restarting us shows the same line every time).
			fmt.Fprintln(stderr, "mxedge:", err)
			return 1
		}
		log.Error("mxedge stopped", "err", err)
		return 1
	}
	return 0
}

// serve runs the relay until ctx is cancelled or a listener fails: build,
// run, shutdown.
func serve(ctx context.Context, cfg *config.Config, path string, demo bool, stdout io.Writer, log *slog.Logger) error {
	r, err := build(ctx, cfg, demo, stdout, log)
	if err != nil {
		return err
	}
	r.path, r.demo = path, demo
	runErr := r.run(ctx)
	return errors.Join(runErr, r.shutdown())
}

// relay is a built relay: every stage, and what runs them.
type relay struct {
	cfg     *config.Config
	path    string // the -config argument, for reload
	demo    bool
	res     *resolver.Resolver
	sub     *submissionParts
	grey    *greylister // [greylist]
	parts   *chainParts // what the policy chains share across reloads
	signer  *submission.Signer
	milters *liveMilters // the submission kinds' [[milter]] entries, after the queue
	reloads sync.Mutex   // one reload at a time
	log     *slog.Logger
	stdout  io.Writer
	queue   *queue.Queue
	dl      *delivery.Deliverer
	outTLS  *outboundTLS // the delivery stage's TLS policy, for reloads
	ver     *verifycache.Verifier
	ctl     *control.Server
	ctlLn   net.Listener
	servers []*smtpd.Server
	lns     []net.Listener
	certs   []*certs.Store // of the listeners with TLS
	// certNames are the listener names of certs.
	certNames []string

	// reg holds the metrics of every stage ([admin] http serves it).
	reg     *prometheus.Registry
	metrics *metrics.Metrics
	health  health
	httpSrv *http.Server // nil: [admin] http is off
	httpLn  net.Listener

	wg     sync.WaitGroup // listeners serving
	errc   chan error     // a listener or the control socket failed
	qstop  context.CancelFunc
	qdone  chan error // the scheduler's end
	closed []func()   // closes what build opened, in reverse order
}

// build opens every stage in the order of their dependencies: the demo
// backend, the queue, the resolver and delivery (the one outbound client
// layer), recipient verification over it, the control socket, and the
// listeners with their policy chains. Nothing is served yet. On error,
// whatever was opened is closed.
func build(ctx context.Context, cfg *config.Config, demo bool, stdout io.Writer, log *slog.Logger) (r *relay, err error) {
	r = &relay{cfg: cfg, log: log, stdout: stdout, errc: make(chan error, len(cfg.Listeners)+2)}
	built := r // "return nil, err" sets r to nil before this runs
	r.reg = prometheus.NewRegistry()
	r.metrics = metrics.New(r.reg)
	r.health.set("starting")
	defer func() {
		if err != nil {
			built.closeAll()
		}
	}()
	if demo {
		b := &localbackend.Backend{Domain: "example.test", Users: demoUsers,
			Dir: filepath.Join(cfg.DataDir, "mailboxes"), Log: log}
		addr, err := b.Start(cfg.Routes["example.test"])
		if err != nil {
			return nil, err
		}
		r.onClose(func() { b.Close() })
		fmt.Fprintf(stdout, "demo backend for example.test on %s: users %v; mail is stored under %s/<user>/new/\n",
			addr, demoUsers, b.Dir)
		// STARTTLS with a self-signed certificate, generated at the
		// first start (swaks --tls takes it).
		pair, err := certs.SelfSigned(filepath.Join(cfg.DataDir, "tls"), cfg.Hostname)
		if err != nil {
			return nil, err
		}
		for i := range cfg.Listeners {
			cfg.Listeners[i].TLSCert, cfg.Listeners[i].TLSKey = []string{pair.Cert}, []string{pair.Key}
		}
		fmt.Fprintf(stdout, "demo STARTTLS certificate (self-signed): %s\n", pair.Cert)
	}
	// DKIM keys are read before anything starts: a missing or weak key is
	// an error of the configuration. The signer and the content filter
	// are always in place, empty when nothing is configured, so that a
	// reload can fill them.
	keys, err := loadDKIMKeys(cfg)
	if err != nil {
		return nil, err
	}
	qo := queueOptions(cfg, log)
	qo.Observer, qo.CommitObserver = r.metrics, r.metrics
	r.signer = submission.NewSigner(keys)
	r.milters = &liveMilters{}
	r.milters.set(postQueueMilters(cfg, log))
	qo.Signer, qo.ContentFilter = r.signer, r.milters
	if r.queue, err = queue.Open(filepath.Join(cfg.DataDir, "queue"), qo); err != nil {
		return nil, err
	}
	r.onClose(func() { r.queue.Close() })

	// The one DNS resolver ([dns]) of every stage that asks DNS, and the
	// one outbound SMTP client layer: delivery (MX routing, MTA-STS,
	// DANE), which verification probes use too.
	res := newResolver(cfg, r.metrics)
	r.res = res
	r.outTLS = &outboundTLS{res: res, dir: cfg.DataDir, log: log}
	r.onClose(r.outTLS.close)
	if r.dl, err = newDeliverer(cfg, res, r.outTLS, log); err != nil {
		return nil, err
	}
	r.onClose(func() { r.dl.Close() }) // QUIT to cached connections
	if r.ver, err = openVerifier(cfg, r.dl, log); err != nil {
		return nil, err
	}
	r.onClose(func() { r.ver.Close() })

	// The admin socket is bound before the listeners are announced, so
	// that "mxedge queue ..." works once the "listener on" lines are out.
	r.ctl = control.New(r.queue, log)
	r.ctl.HandleVerify(r.ver)
	r.ctl.HandleBody(r.queue)
	ctlPath := control.SocketPath(cfg.DataDir)
	if r.ctlLn, err = r.ctl.Listen(ctlPath); err != nil {
		return nil, err
	}
	r.onClose(func() { r.ctlLn.Close() }) // removes the socket file even if Serve has not run
	fmt.Fprintf(stdout, "control socket at %s\n", ctlPath)

	// What the submission listeners share: the authenticator and the
	// counters of the rate limits (<data_dir>/submission.db).
	var sub *submissionParts
	if hasSubmission(cfg) {
		var closeSub func()
		if sub, closeSub, err = openSubmission(ctx, cfg, log); err != nil {
			return nil, err
		}
		r.onClose(closeSub)
		r.ctl.HandleUsage(sub.store)
	}
	r.sub = sub

	r.grey = &greylister{dir: cfg.DataDir, log: log}
	r.onClose(r.grey.close)
	grey, err := r.grey.check(cfg)
	if err != nil {
		return nil, err
	}
	r.grey.use(grey)
	r.parts = &chainParts{ver: r.ver, dns: res, sub: sub, grey: asCheck(grey), limits: map[string]*policy.Limits{}, log: log}

	for _, lc := range cfg.Listeners {
		chain, err := chainFor(cfg, lc, r.parts)
		if err != nil {
			return nil, err
		}
		o := listenerOptions(cfg, lc, res)
		o.Logger = log
		if len(lc.TLSCert) > 0 {
			st, err := r.listenerCerts(ctx, lc)
			if err != nil {
				return nil, err
			}
			o.TLS = st.Config(config.TLSVersions[lc.TLSMinVersion])
		}
		if lc.Kind != config.KindMX {
			if err := submission.Profile(&o, policy.Kind(lc.Kind), sub.auth); err != nil {
				return nil, fmt.Errorf("listener %q: %w", lc.Name, err)
			}
		}
		s := smtpd.New(o, r.queue, chain)
		ln, err := s.Listen()
		if err != nil {
			return nil, err
		}
		r.onClose(func() { ln.Close() })
		r.servers, r.lns = append(r.servers, s), append(r.lns, ln)
		fmt.Fprintf(stdout, "mxedge %s listener on %s (relay domains %v)\n", lc.Name, ln.Addr(), cfg.RelayDomains)
		log.Info("listener", "listener", lc.Name, "kind", lc.Kind, "address", ln.Addr().String(), "max_sessions", lc.MaxSessions,
			"chain", chainSummary(chain))
	}
	r.ctl.HandleDrain(r.mxServers())
	r.ctl.HandleReload(r.reloadConfig)
	r.registerMetrics()
	if r.httpSrv, r.httpLn, err = r.adminHTTP(); err != nil {
		return nil, err
	}
	if r.httpLn != nil {
		r.onClose(func() { r.httpLn.Close() })
		fmt.Fprintf(stdout, "metrics on http://%s/metrics, health on /healthz\n", r.httpLn.Addr())
	}
	return r, nil
}

// certWatch is how often listener certificate files are checked for
// change (a renewal).
const certWatch = 30 * time.Second

// listenerCerts loads the certificates of lc and watches their files
// until ctx ends.
func (r *relay) listenerCerts(ctx context.Context, lc config.Listener) (*certs.Store, error) {
	pairs := make([]certs.Pair, len(lc.TLSCert))
	for i := range lc.TLSCert {
		pairs[i] = certs.Pair{Cert: lc.TLSCert[i], Key: lc.TLSKey[i]}
	}
	st, err := certs.Open(pairs, r.log.With("listener", lc.Name))
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", lc.Name, err)
	}
	r.certs, r.certNames = append(r.certs, st), append(r.certNames, lc.Name)
	go st.Watch(ctx, certWatch)
	return st, nil
}

// reloadCerts reads the listeners' certificates again (a broken new
// pair keeps the old one).
func (r *relay) reloadCerts() {
	r.log.Info("reloading TLS certificates", "listeners_with_tls", len(r.certs))
	for _, st := range r.certs {
		_ = st.Reload()
	}
}

// notify tells systemd (Type=notify) about the relay's state; a failure
// is logged, not fatal.
func (r *relay) notify(state string) {
	if err := sdnotify.Notify(state); err != nil {
		r.log.Warn("systemd notification failed", "err", err)
	}
}

// onClose registers f to run at shutdown (or when build fails), after
// everything registered later.
func (r *relay) onClose(f func()) { r.closed = append(r.closed, f) }

func (r *relay) closeAll() {
	for i := len(r.closed) - 1; i >= 0; i-- {
		r.closed[i]()
	}
	r.closed = nil
}

// run serves the listeners, the control socket and the queue's scheduler
// until ctx is cancelled (SIGINT/SIGTERM) or a listener fails.
func (r *relay) run(ctx context.Context) error {
	for i, s := range r.servers {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			if err := s.Serve(r.lns[i]); err != nil {
				r.errc <- err
			}
		}()
	}
	go func() {
		if err := r.ctl.Serve(r.ctlLn); err != nil {
			r.errc <- err
		}
	}()
	if r.httpSrv != nil {
		go func() {
			if err := r.httpSrv.Serve(r.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				r.errc <- fmt.Errorf("admin.http: %w", err)
			}
		}()
	}
	qctx, qstop := context.WithCancel(context.Background())
	r.qstop, r.qdone = qstop, make(chan error, 1)
	go func() {
		err := r.queue.Run(qctx, r.dl, r.cfg.Timeouts.Shutdown.D())
		r.health.set(fmt.Sprintf("queue scheduler stopped: %v", err))
		r.qdone <- err
	}()
	r.health.set("")
	r.log.Info("mxedge started", "hostname", r.cfg.Hostname, "data_dir", r.cfg.DataDir)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	r.notify("READY=1\nSTATUS=accepting mail")
	for {
		select {
		case <-ctx.Done():
			r.log.Info("shutting down")
			return nil
		case err := <-r.errc:
			r.health.set(err.Error())
			return err
		case <-hup:
			r.notify(sdnotify.Reloading())
			if _, err := r.reloadConfig(ctx); err != nil {
				r.log.Error("SIGHUP: configuration not reloaded, the old one stays", "err", err)
			}
			r.notify("READY=1\nSTATUS=accepting mail")
		}
	}
}

// shutdown stops the relay in this order, each step bounded by
// timeouts.shutdown where it waits:
//  1. the listeners stop accepting and drain their sessions (a session
//     cut off mid-DATA got no 250, so nothing accepted is lost);
//  2. the scheduler starts no new attempts and lets those in flight
//     finish (their results are stored);
//  3. the control socket closes (admin commands work until here);
//  4. verification closes (probes in flight are cut), then delivery's
//     cached connections get QUIT, then the queue closes, then the demo
//     backend stops (closeAll, in reverse order of build).
func (r *relay) shutdown() error {
	r.notify("STOPPING=1\nSTATUS=draining sessions and deliveries")
	r.health.set("shutting down")
	t0 := time.Now()
	sctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeouts.Shutdown.D())
	defer cancel()
	// Every listener answers 421 to new connections first; then each
	// waits for its sessions (in parallel: one deadline for all).
	for _, s := range r.servers {
		s.Drain(true)
	}
	for _, s := range r.servers {
		_ = s.Shutdown(sctx)
	}
	r.wg.Wait()
	var err error
	if r.qstop != nil {
		r.qstop()
		if qerr := <-r.qdone; qerr != nil && !errors.Is(qerr, context.Canceled) {
			err = qerr
		}
	}
	if r.httpSrv != nil {
		_ = r.httpSrv.Shutdown(sctx)
	}
	if cerr := r.ctl.Shutdown(sctx); cerr != nil {
		r.log.Warn("admin requests cut at shutdown", "err", cerr)
	}
	r.closeAll()
	r.log.Info("mxedge stopped", "shutdown", time.Since(t0).Round(time.Millisecond).String())
	return err
}

// chainSummary is the policy chain as the log shows it:
// "rcpt=relay,verify".
func chainSummary(ch *policy.Chain) string {
	st := ch.Stages()
	var parts []string
	for _, stage := range []string{"connect", "helo", "mail", "rcpt", "data"} {
		if names := st[stage]; len(names) > 0 {
			parts = append(parts, stage+"="+strings.Join(names, ","))
		}
	}
	return strings.Join(parts, " ")
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
		Reserve:        freeSpaceReserve(cfg),
		// DKIM signing ([[dkim_sign]]) is set by build once the keys are
		// read; nil makes the hook a no-op.
		Logger: log,
	}
}

// freeSpaceReserve is [queue] free_space_reserve, by default 1.5 x the
// message size limit.
func freeSpaceReserve(cfg *config.Config) int64 {
	if cfg.Queue.FreeSpaceReserve > 0 {
		return int64(cfg.Queue.FreeSpaceReserve)
	}
	return int64(cfg.Limits.MessageSize) * 3 / 2
}
