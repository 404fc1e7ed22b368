// Package daemon owns `georep daemon`: one process per host (per state
// directory) that runs a continuous worker (internal/continuous) for every
// started session under a monitor, answers the CLI on a control socket,
// writes each session's status.json, and serves Prometheus metrics.
//
// The monitor restarts a worker whose Run returns an error, or that has
// been Faulty for FaultyRestart, with exponential backoff (1s doubling up to
// MaxBackoff). After FaultyAfter failures within FailureWindow the session
// stays Faulty with its last error and is retried every SlowRetry, so fixing
// the cause brings it back without restarting the daemon. A lost secondary
// is first retried inside the worker (continuous reconnects with backoff up
// to MaxBackoff); the session shows Faulty with the connection error
// meanwhile.
//
// The CLI changes sessions by editing config.toml (internal/session) and
// then asks the daemon to reload that session; the daemon also rescans the
// sessions directory every few seconds, so an edit it was not told of is
// applied too. A change of any config key but log-level restarts the
// session's worker; pause, resume and checkpoints do not.
//
// With Options.StartJournal the workers read the changelogs of the journal
// process (`georep journal`, internal/journal/service) instead of running
// journals of their own: the daemon starts it when none answers, starts it
// again when it died, and drops the consumers of deleted sessions, so that
// a daemon restart or a worker restart is caught up without a crawl.
package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/georep/georep/internal/continuous"
	"github.com/georep/georep/internal/journal/service"
	"github.com/georep/georep/internal/metrics"
	"github.com/georep/georep/internal/session"
	"github.com/georep/georep/internal/status"
	"github.com/georep/georep/internal/worker"
	"golang.org/x/sys/unix"
)

// Options configure a daemon.
type Options struct {
	// StateDir holds the sessions, the socket and the daemon's lock.
	StateDir string
	// MetricsListen is the address of the Prometheus endpoint (/metrics);
	// empty: none.
	MetricsListen string
	// Logger receives the daemon's own log (sessions log to their files).
	Logger *slog.Logger
	// MaxBackoff caps the worker's reconnect backoff and the monitor's
	// restart backoff (default 30s); the latter starts at InitialBackoff
	// (default 1s).
	MaxBackoff     time.Duration
	InitialBackoff time.Duration
	// FaultyAfter failures within FailureWindow switch to slow retries
	// every SlowRetry (defaults 5, 10m, 2×MaxBackoff).
	FaultyAfter   int
	FailureWindow time.Duration
	SlowRetry     time.Duration
	// FaultyRestart restarts a worker that has been Faulty this long
	// (default 5m).
	FaultyRestart time.Duration
	// StatusInterval is the most often status.json is written when only
	// counters change (default 5s); a status change or a completed
	// checkpoint is written at once. Live status comes from the socket.
	StatusInterval time.Duration
	// RescanInterval is how often the sessions directory is re-read for
	// changes nobody announced (default 5s).
	RescanInterval time.Duration
	// Run runs one worker (default continuous.Run); a test hook.
	Run func(context.Context, continuous.Config, continuous.Reporter) error
	// Ready, when set, is called once the socket (and the metrics listener)
	// accept connections, with the metrics address.
	Ready func(metricsAddr string)
	// Reopen is called on SIGHUP after the session logs were reopened (the
	// daemon's own log file belongs to the caller).
	Reopen func()
	// StartJournal, when set, starts the journal process (`georep journal`
	// on STATE/journal); the workers then read its changelogs and survive
	// restarts of the daemon without a crawl. Unset: every worker runs a
	// journal of its own.
	StartJournal func(context.Context) error
}

// Daemon is a running daemon.
type Daemon struct {
	opts     Options
	store    session.Store
	log      *slog.Logger
	ctx      context.Context
	absState string

	jl          *journalLink // nil without a journal process
	reconcileMu sync.Mutex   // one reconcile at a time
	mu          sync.Mutex
	sessions    map[string]*runtime
	metrics     *metrics.Metrics
}

// Run runs the daemon until ctx is done, then stops every worker (journals
// closed, status written) and returns.
func Run(ctx context.Context, opts Options) error {
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.InitialBackoff <= 0 {
		opts.InitialBackoff = min(time.Second, opts.MaxBackoff)
	}
	if opts.FaultyAfter <= 0 {
		opts.FaultyAfter = 5
	}
	if opts.FailureWindow <= 0 {
		opts.FailureWindow = 10 * time.Minute
	}
	if opts.SlowRetry <= 0 {
		opts.SlowRetry = 2 * opts.MaxBackoff
	}
	if opts.FaultyRestart <= 0 {
		opts.FaultyRestart = 5 * time.Minute
	}
	if opts.StatusInterval <= 0 {
		opts.StatusInterval = 5 * time.Second
	}
	if opts.RescanInterval <= 0 {
		opts.RescanInterval = 5 * time.Second
	}
	if opts.Run == nil {
		opts.Run = continuous.Run
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	abs, err := filepath.Abs(opts.StateDir)
	if err != nil {
		return err
	}
	d := &Daemon{opts: opts, store: session.Store{Root: abs}, log: opts.Logger, absState: abs, sessions: map[string]*runtime{}}
	d.metrics = metrics.New(d.reports)
	if err := d.store.Init(); err != nil {
		return err
	}
	unlock, err := d.lock()
	if err != nil {
		return err
	}
	defer unlock()

	sock := d.store.SocketPath()
	os.Remove(sock) // stale: the lock is ours
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return err
	}
	defer ln.Close()

	var msrv *http.Server
	metricsAddr := ""
	if opts.MetricsListen != "" {
		mln, err := net.Listen("tcp", opts.MetricsListen)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		metricsAddr = mln.Addr().String()
		mux := http.NewServeMux()
		mux.Handle("/metrics", d.metrics.Handler())
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/" {
				http.NotFound(w, r)
				return
			}
			fmt.Fprintln(w, "georep daemon: metrics at /metrics")
		})
		msrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go msrv.Serve(mln)
		d.log.Info("metrics", "listen", metricsAddr, "path", "/metrics")
	}

	wctx, stopWorkers := context.WithCancel(context.Background())
	d.ctx = wctx
	if opts.StartJournal != nil {
		d.jl = &journalLink{d: d, client: service.Client{Dir: d.journalDir()}}
	}
	d.log.Info("daemon started", "state", abs, "socket", sock, "pid", os.Getpid(), "version", worker.Version)
	d.rescan()

	var bg sync.WaitGroup
	bg.Add(2)
	go func() { defer bg.Done(); d.serve(ln) }()
	loopCtx, stopLoops := context.WithCancel(ctx)
	go func() { defer bg.Done(); d.loops(loopCtx) }()
	if d.jl != nil {
		bg.Add(1)
		go func() { defer bg.Done(); d.jl.watch(loopCtx) }()
	}
	if opts.Ready != nil {
		opts.Ready(metricsAddr)
	}

	<-ctx.Done()
	d.log.Info("stopping")
	stopLoops()
	ln.Close()
	if msrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		msrv.Shutdown(sctx)
		cancel()
	}
	d.reconcileMu.Lock()
	stopWorkers()
	d.mu.Lock()
	all := make([]*runtime, 0, len(d.sessions))
	for _, rt := range d.sessions {
		all = append(all, rt)
	}
	d.mu.Unlock()
	for _, rt := range all {
		rt.stop()
	}
	for _, rt := range all {
		rt.mu.Lock()
		if status.Running(rt.rep.Status) || rt.rep.Status == status.Faulty {
			rt.rep.Status, rt.rep.CrawlStatus = status.Stopped, ""
			rt.rep.Entry, rt.rep.Data, rt.rep.Meta, rt.rep.LagSeconds = 0, 0, 0, 0
		}
		rt.mu.Unlock()
		rt.save()
		rt.closeLog()
	}
	d.reconcileMu.Unlock()
	bg.Wait()
	d.log.Info("daemon stopped")
	return nil
}

// lock takes the state directory's daemon lock (one daemon per state dir).
func (d *Daemon) lock() (func(), error) {
	f, err := os.OpenFile(d.store.DaemonLock(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b, _ := os.ReadFile(d.store.DaemonLock())
		f.Close()
		return nil, fmt.Errorf("another georep daemon (pid %s) runs for %s", strings.TrimSpace(string(b)), d.store.Root)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		f.Truncate(0)
		f.Close()
	}, nil
}

// loops runs the periodic work: status.json writes, rescans, SIGHUP.
func (d *Daemon) loops(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	st := time.NewTicker(d.opts.StatusInterval)
	defer st.Stop()
	rs := time.NewTicker(d.opts.RescanInterval)
	defer rs.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-st.C:
			for _, rt := range d.runtimes() {
				rt.saveIfDirty()
			}
		case <-rs.C:
			d.rescan()
		case <-hup:
			d.log.Info("SIGHUP: reopening logs")
			for _, rt := range d.runtimes() {
				rt.reopenLog()
			}
			if d.opts.Reopen != nil {
				d.opts.Reopen()
			}
		}
	}
}

func (d *Daemon) runtimes() []*runtime {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*runtime, 0, len(d.sessions))
	for _, rt := range d.sessions {
		out = append(out, rt)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// rescan reconciles every session whose config.toml changed (or appeared
// or vanished) since it was last applied.
func (d *Daemon) rescan() {
	list, err := d.store.List()
	if err != nil {
		d.log.Error("list sessions", "err", err)
		return
	}
	seen := map[string]bool{}
	for _, e := range list {
		seen[e.Name] = true
		d.mu.Lock()
		rt := d.sessions[e.Name]
		d.mu.Unlock()
		if rt == nil || rt.configStamp() != stamp(d.store.ConfigPath(e.Name)) {
			d.reconcile(e.Name)
		}
	}
	for _, rt := range d.runtimes() {
		if !seen[rt.name] {
			d.reconcile(rt.name)
		}
	}
}

func stamp(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%d/%d", fi.ModTime().UnixNano(), fi.Size())
}

// reconcile brings a session's worker in line with its config.toml.
func (d *Daemon) reconcile(name string) error {
	d.reconcileMu.Lock()
	defer d.reconcileMu.Unlock()
	if d.ctx.Err() != nil {
		return errors.New("the daemon is stopping")
	}
	st := stamp(d.store.ConfigPath(name))
	sess, err := d.store.Load(name)
	d.mu.Lock()
	rt := d.sessions[name]
	d.mu.Unlock()
	if errors.Is(err, session.ErrNotFound) {
		if rt != nil {
			rt.stop()
			rt.closeLog()
			d.mu.Lock()
			delete(d.sessions, name)
			d.mu.Unlock()
			d.metrics.Forget(name)
			d.log.Info("session forgotten (deleted)", "session", name)
			if d.jl != nil {
				d.jl.forget(name)
			}
		}
		return nil
	}
	if rt == nil {
		rt = newRuntime(d, name)
		d.mu.Lock()
		d.sessions[name] = rt
		d.mu.Unlock()
	}
	rt.setStamp(st)
	if err != nil {
		// A config the daemon cannot trust: stop, say why.
		rt.stop()
		rt.mu.Lock()
		rt.sess = nil
		rt.rep.Status, rt.rep.CrawlStatus = status.Faulty, ""
		rt.rep.LastError, rt.rep.LastErrorTime = "config: "+err.Error(), status.TimePtr(time.Now())
		rt.dirty = true
		rt.mu.Unlock()
		d.log.Error("session config unusable", "session", name, "err", err)
		return err
	}
	return rt.apply(sess)
}

// reports returns every session's report, sorted by name.
func (d *Daemon) reports() []status.Report {
	var out []status.Report
	for _, rt := range d.runtimes() {
		out = append(out, rt.report())
	}
	return out
}

// serve answers control connections.
func (d *Daemon) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			d.log.Warn("control socket", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go d.handle(c)
	}
}

func peerAllowed(c net.Conn) error {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return errors.New("not a unix connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if cerr != nil {
		return cerr
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Geteuid() {
		return fmt.Errorf("uid %d may not control the daemon", cred.Uid)
	}
	return nil
}

func (d *Daemon) handle(c net.Conn) {
	defer c.Close()
	enc := json.NewEncoder(c)
	if err := peerAllowed(c); err != nil {
		enc.Encode(Response{Error: err.Error()})
		return
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var req Request
	if err := json.NewDecoder(c).Decode(&req); err != nil {
		enc.Encode(Response{Error: "bad request: " + err.Error()})
		return
	}
	c.SetReadDeadline(time.Time{})
	resp := d.do(req)
	if resp.Error != "" {
		resp.OK = false
	} else {
		resp.OK = true
	}
	enc.Encode(resp)
}

func (d *Daemon) do(req Request) Response {
	switch req.Op {
	case OpPing:
		return Response{Version: worker.Version, PID: os.Getpid()}
	case OpStatus:
		if req.Session == "" {
			// Every session in the state directory, including one created
			// or started a moment ago by someone who did not tell us.
			d.rescan()
			return Response{Reports: d.reports()}
		}
		d.mu.Lock()
		rt := d.sessions[req.Session]
		d.mu.Unlock()
		if rt == nil {
			// Perhaps created a moment ago.
			if err := d.reconcile(req.Session); err != nil && rt == nil {
				return Response{Error: err.Error()}
			}
			d.mu.Lock()
			rt = d.sessions[req.Session]
			d.mu.Unlock()
			if rt == nil {
				return Response{Error: fmt.Sprintf("no such session %q", req.Session)}
			}
		}
		return Response{Reports: []status.Report{rt.report()}}
	case OpReload:
		if err := session.ValidName(req.Session); err != nil {
			return Response{Error: err.Error()}
		}
		if err := d.reconcile(req.Session); err != nil {
			return Response{Error: err.Error()}
		}
		d.mu.Lock()
		rt := d.sessions[req.Session]
		d.mu.Unlock()
		if rt == nil {
			return Response{}
		}
		return Response{Reports: []status.Report{rt.report()}}
	case OpResync:
		d.mu.Lock()
		rt := d.sessions[req.Session]
		d.mu.Unlock()
		if rt == nil {
			return Response{Error: fmt.Sprintf("no such session %q", req.Session)}
		}
		timeout := time.Duration(req.TimeoutMS) * time.Millisecond
		if timeout <= 0 {
			timeout = time.Hour
		}
		res, err := rt.resync(req.Path, timeout)
		if err != nil {
			return Response{Error: err.Error()}
		}
		return Response{Resync: res}
	}
	return Response{Error: fmt.Sprintf("unknown op %q", req.Op)}
}
