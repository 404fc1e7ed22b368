package service

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/georep/georep/internal/changelog"
	"github.com/georep/georep/internal/journal"
	"github.com/georep/georep/internal/state"
	"golang.org/x/sys/unix"
)

// InheritEnv names the environment variable through which a journal
// process hands its fanotify groups to the binary it exec(2)s.
const InheritEnv = "GEOREP_JOURNAL_INHERIT"

// lockEnv carries the descriptor of the held journal.lock across the exec,
// so that no other journal process can take the lock during the switch.
const lockEnv = "GEOREP_JOURNAL_LOCK_FD"

// DefaultMaxBytes is the default size limit of one root's changelogs.
const DefaultMaxBytes = 2 << 30

// ErrAlreadyRunning reports another journal process on the state directory.
var ErrAlreadyRunning = errors.New("a journal process is already running")

// Options configure the journal process.
type Options struct {
	// Dir is the journal directory (STATE/journal).
	Dir string
	// Exclude lists paths never journaled (the state directory).
	Exclude []string
	// MaxBytes bounds one root's changelogs (default DefaultMaxBytes).
	MaxBytes int64
	// QueueSize, RolloverInterval: as in journal.Config.
	QueueSize        int
	RolloverInterval time.Duration
	// GCInterval is how often applied changelogs are deleted (default 2s).
	GCInterval time.Duration
	Logger     *slog.Logger
	Version    string
	// Args are the arguments for the exec of an upgrade (default os.Args).
	Args []string
	// Reexec, when it receives, hands over and execs (SIGUSR2).
	Reexec <-chan os.Signal
}

// Socket is the control socket of the journal process of a journal directory.
func Socket(dir string) string  { return filepath.Join(dir, "journal.sock") }
func pidPath(dir string) string { return filepath.Join(dir, "journal.pid") }

type server struct {
	opts    Options
	log     *slog.Logger
	ctx     context.Context
	started time.Time
	exe     string

	mu      sync.Mutex // registry and groups
	reg     registry
	fsOf    map[string]string // root -> filesystem
	groups  map[string]*group // filesystem -> its group
	rootErr map[string]string // root -> why it is not journaled

	failed chan *group
	reexec chan chan error
	lock   *os.File // journal.lock, flocked
}

// takeLock locks journal.lock, or takes over the lock a predecessor held
// across its exec.
func takeLock(dir string) (*os.File, error) {
	if v := os.Getenv(lockEnv); v != "" {
		os.Unsetenv(lockEnv)
		if fd, err := strconv.Atoi(v); err == nil {
			f := os.NewFile(uintptr(fd), filepath.Join(dir, "journal.lock"))
			// Still ours (flock belongs to the open file): confirm it.
			if f != nil && unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == nil {
				unix.CloseOnExec(fd)
				return f, nil
			}
		}
	}
	lock, err := os.OpenFile(filepath.Join(dir, "journal.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal lock: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		pid, _ := os.ReadFile(pidPath(dir))
		return nil, fmt.Errorf("%w on %s (pid %s)", ErrAlreadyRunning, dir, strings.TrimSpace(string(pid)))
	}
	return lock, nil
}

type group struct {
	fs       string
	roots    []string
	j        *journal.Journal
	handoff  chan struct{}
	done     chan groupResult
	stopping atomic.Bool
	since    time.Time
}

type groupResult struct {
	in  *journal.Inherited
	err error
}

// Run runs the journal process until ctx is done; then every group stops
// cleanly (its final changelogs written, its state marked clean).
func Run(ctx context.Context, opts Options) error {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.GCInterval <= 0 {
		opts.GCInterval = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Args == nil {
		opts.Args = os.Args
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return err
	}
	opts.Dir = dir
	if err := os.MkdirAll(filepath.Join(dir, "roots"), 0o700); err != nil {
		return fmt.Errorf("journal dir: %w", err)
	}
	lock, err := takeLock(dir)
	if err != nil {
		return err
	}
	defer lock.Close()
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("journal: own binary: %w", err)
	}
	s := &server{opts: opts, log: opts.Logger, ctx: ctx, started: time.Now(), exe: exe, lock: lock,
		fsOf: map[string]string{}, groups: map[string]*group{}, rootErr: map[string]string{},
		failed: make(chan *group, 16), reexec: make(chan chan error)}
	if err := state.ReadJSON(s.regPath(), &s.reg); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Error("journal: unreadable roots.json; starting without roots", "err", err)
	}
	inherited := takeInherited(s.log)
	s.mu.Lock()
	s.startAll(inherited)
	s.mu.Unlock()
	for _, in := range inherited {
		if in != nil {
			s.log.Warn("journal: inherited group has no roots now; closing it", "fs", in.FS)
			unix.Close(in.FD)
		}
	}

	ln, err := s.listen()
	if err != nil {
		s.stopAll()
		return err
	}
	if err := os.WriteFile(pidPath(dir), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		s.log.Warn("journal: pid file", "err", err)
	}
	s.log.Info("journal process started", "dir", dir, "pid", os.Getpid(), "roots", len(s.reg.Roots), "max_bytes", opts.MaxBytes)
	go s.serve(ln)
	gc := time.NewTicker(opts.GCInterval)
	defer gc.Stop()
	for {
		select {
		case <-ctx.Done():
			ln.Close()
			s.stopAll()
			s.log.Info("journal process stopped")
			return nil
		case <-gc.C:
			s.gc()
		case g := <-s.failed:
			s.restartFailed(g)
		case <-opts.Reexec:
			s.log.Info("journal: SIGUSR2: handing over to a new process")
			if err := s.doReexec(ln); err != nil {
				s.log.Error("journal: re-exec failed; going on", "err", err)
				ln, _ = s.relisten(ln)
			}
		case reply := <-s.reexec:
			err := s.doReexec(ln)
			reply <- err
			if err != nil {
				ln, _ = s.relisten(ln)
			}
		}
	}
}

func (s *server) regPath() string { return filepath.Join(s.opts.Dir, "roots.json") }

func (s *server) listen() (*net.UnixListener, error) {
	sock := Socket(s.opts.Dir)
	os.Remove(sock) // stale: the lock is ours
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("journal socket: %w", err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

func (s *server) relisten(old *net.UnixListener) (*net.UnixListener, error) {
	if old != nil {
		old.Close()
	}
	ln, err := s.listen()
	if err != nil {
		s.log.Error("journal: control socket", "err", err)
		return nil, err
	}
	go s.serve(ln)
	return ln, nil
}

// takeInherited reads the groups a predecessor handed over, by filesystem.
func takeInherited(log *slog.Logger) map[string]*journal.Inherited {
	v := os.Getenv(InheritEnv)
	os.Unsetenv(InheritEnv)
	if v == "" {
		return nil
	}
	out, err := parseInherited(v)
	if err != nil {
		log.Error("journal: unreadable "+InheritEnv+"; starting afresh (gaps)", "err", err)
		return nil
	}
	log.Info("journal: took over groups from the previous process", "groups", len(out))
	return out
}

// parseInherited decodes $GEOREP_JOURNAL_INHERIT: a JSON list of groups, at
// most one per filesystem, each with a descriptor number.
func parseInherited(v string) (map[string]*journal.Inherited, error) {
	var list []journal.Inherited
	if err := json.Unmarshal([]byte(v), &list); err != nil {
		return nil, err
	}
	out := map[string]*journal.Inherited{}
	for i := range list {
		in := &list[i]
		if in.FD < 0 || in.FS == "" {
			return nil, fmt.Errorf("group %d: descriptor %d, filesystem %q", i, in.FD, in.FS)
		}
		if _, dup := out[in.FS]; dup {
			return nil, fmt.Errorf("two groups for filesystem %s", in.FS)
		}
		out[in.FS] = in
	}
	return out, nil
}

// startAll starts a group per filesystem of the registered roots, taking
// inherited groups (consumed entries are set to nil).
func (s *server) startAll(inherited map[string]*journal.Inherited) {
	byFS := map[string][]string{}
	for _, p := range s.reg.paths() {
		fs, err := s.checkRoot(p)
		if err != nil {
			s.rootErr[p] = err.Error()
			s.log.Error("journal: root not journaled", "root", p, "err", err)
			continue
		}
		byFS[fs] = append(byFS[fs], p)
	}
	for fs, paths := range byFS {
		in := inherited[fs]
		if _, err := s.startGroup(fs, paths, in); err != nil {
			if in != nil {
				unix.Close(in.FD)
				s.startGroup(fs, paths, nil)
			}
		}
		if in != nil {
			inherited[fs] = nil
		}
	}
}

// checkRoot makes sure p is a directory and returns its filesystem.
func (s *server) checkRoot(p string) (string, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s is not a directory", p)
	}
	fs, err := journal.FSOf(p)
	if err != nil {
		return "", err
	}
	s.fsOf[p] = fs
	return fs, nil
}

// startGroup opens and runs the journal of fs for paths. On an error, in
// (when not nil) is left open for the caller and the paths are marked.
func (s *server) startGroup(fs string, paths []string, in *journal.Inherited) (*group, error) {
	roots := make([]journal.Root, 0, len(paths))
	for _, p := range paths {
		d := Dir(s.opts.Dir, p)
		if _, err := ensureRootID(d); err != nil {
			return nil, s.markFailed(paths, fmt.Errorf("changelog dir of %s: %w", p, err))
		}
		roots = append(roots, journal.Root{Path: p, Dir: d, RolloverInterval: s.reg.rolloverOf(p)})
	}
	j, err := journal.Open(journal.Config{Roots: roots, Exclude: append([]string{s.opts.Dir}, s.opts.Exclude...),
		RolloverInterval: s.opts.RolloverInterval, QueueSize: s.opts.QueueSize, Inherit: in,
		Logger: s.log.With("fs", fs)})
	if err != nil {
		return nil, s.markFailed(paths, err)
	}
	g := &group{fs: fs, roots: paths, j: j, handoff: make(chan struct{}), done: make(chan groupResult, 1), since: time.Now()}
	for _, p := range paths {
		delete(s.rootErr, p)
	}
	s.groups[fs] = g
	go func() {
		in, err := j.RunUntil(s.ctx, g.handoff)
		g.done <- groupResult{in, err}
		if !g.stopping.Load() && s.ctx.Err() == nil {
			s.log.Error("journal: group stopped by itself; restarting it (a gap)", "fs", fs, "err", err)
			select {
			case s.failed <- g:
			case <-s.ctx.Done():
			}
		}
	}()
	return g, nil
}

func (s *server) markFailed(paths []string, err error) error {
	for _, p := range paths {
		s.rootErr[p] = err.Error()
	}
	s.log.Error("journal: cannot journal", "roots", paths, "err", err)
	return err
}

// handOff stops g and returns its group for a successor (nil when it could
// not hand over: the successor starts with a gap).
func (g *group) handOff() *journal.Inherited {
	g.stopping.Store(true)
	close(g.handoff)
	res := <-g.done
	return res.in
}

func (s *server) restartFailed(g *group) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.groups[g.fs] != g {
		return
	}
	delete(s.groups, g.fs)
	time.Sleep(500 * time.Millisecond)
	s.startGroup(g.fs, g.roots, nil)
}

// setRoots makes fs's group journal exactly paths, handing the running
// group over so that its roots lose nothing.
func (s *server) setRoots(fs string, paths []string) error {
	old := s.groups[fs]
	var in *journal.Inherited
	var prev []string
	if old != nil {
		prev = old.roots
		in = old.handOff()
		delete(s.groups, fs)
	}
	if len(paths) == 0 {
		if in != nil {
			unix.Close(in.FD)
		}
		return nil
	}
	_, err := s.startGroup(fs, paths, in)
	if err == nil {
		return nil
	}
	// Keep the previous roots going.
	if len(prev) > 0 {
		if _, err2 := s.startGroup(fs, prev, in); err2 == nil {
			return err
		}
	}
	if in != nil {
		unix.Close(in.FD)
	}
	if len(prev) > 0 {
		s.startGroup(fs, prev, nil)
	}
	return err
}

func (s *server) rootsOn(fs string) []string {
	var out []string
	for _, p := range s.reg.paths() {
		if s.fsOf[p] == fs {
			out = append(out, p)
		}
	}
	return out
}

// applyRollovers gives every journaled root its consumers' rollover
// interval (under s.mu).
func (s *server) applyRollovers() {
	for _, g := range s.groups {
		for i, p := range g.roots {
			if err := g.j.SetRolloverInterval(i, s.reg.rolloverOf(p)); err != nil {
				s.log.Error("journal: rollover interval", "root", p, "err", err)
			}
		}
	}
}

// flushTimeout bounds a consumer's wait for a Flush.
const flushTimeout = 5 * time.Second

// rollOver serves a consumer's request for path's open changelog: within 0
// writes it now and answers once it is durable (a worker about to list its
// backlog); within > 0 asks it to be closed at most that long after its
// first record (a worker that caught up).
func (s *server) rollOver(session, path string, within time.Duration) error {
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		return badRequest(err)
	}
	s.mu.Lock()
	if !slices.Contains(s.reg.Roots[p], session) {
		s.mu.Unlock()
		return badRequest(fmt.Errorf("%s is not a consumer of %s", session, p))
	}
	g := s.groups[s.fsOf[p]]
	i := -1
	if g != nil {
		i = slices.Index(g.roots, p)
	}
	s.mu.Unlock()
	if i < 0 {
		return fmt.Errorf("%s is not journaled now", p)
	}
	if within > 0 {
		return g.j.RollOver(i, within)
	}
	ctx, cancel := context.WithTimeout(s.ctx, flushTimeout)
	defer cancel()
	return g.j.Flush(ctx, i)
}

// register adds session as a consumer of path.
func (s *server) register(session, path string, rollover time.Duration) (*RootStatus, error) {
	if err := validSession(session); err != nil {
		return nil, badRequest(err)
	}
	if !filepath.IsAbs(path) {
		return nil, badRequest(fmt.Errorf("root %q is not absolute", path))
	}
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, badRequest(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fs, err := s.checkRoot(p)
	if err != nil {
		return nil, badRequest(err)
	}
	_, known := s.reg.Roots[p]
	s.reg.setRollover(p, session, rollover)
	g := s.groups[fs]
	if !known || g == nil || !slices.Contains(g.roots, p) {
		s.reg.add(p, session)
		if err := s.setRoots(fs, s.rootsOn(fs)); err != nil {
			if !known {
				s.reg.remove(p, session)
				delete(s.rootErr, p)
			}
			return nil, err
		}
	} else {
		s.reg.add(p, session)
	}
	s.applyRollovers()
	if err := state.WriteJSON(s.regPath(), &s.reg); err != nil {
		s.log.Error("journal: cannot save roots.json", "err", err)
	}
	s.log.Info("journal: consumer registered", "session", session, "root", p)
	rs := s.rootStatus(p)
	return &rs, nil
}

// unregister drops session from path ("" = every root).
func (s *server) unregister(session, path string) error {
	if err := validSession(session); err != nil {
		return badRequest(err)
	}
	if path != "" {
		if p, err := filepath.EvalSymlinks(path); err == nil {
			path = p
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var dirs []string
	for p, cs := range s.reg.Roots {
		if (path == "" || p == path) && slices.Contains(cs, session) {
			dirs = append(dirs, Dir(s.opts.Dir, p))
		}
	}
	gone := s.reg.remove(path, session)
	for _, d := range dirs {
		if err := os.Remove(filepath.Join(d, consumersDir, session)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("journal: remove a consumer's position", "session", session, "err", err)
		}
	}
	touched := map[string]bool{}
	for _, p := range gone {
		touched[s.fsOf[p]] = true
		delete(s.rootErr, p)
	}
	for fs := range touched {
		if err := s.setRoots(fs, s.rootsOn(fs)); err != nil {
			s.log.Error("journal: regroup after unregister", "fs", fs, "err", err)
		}
	}
	for _, p := range gone {
		if err := os.RemoveAll(Dir(s.opts.Dir, p)); err != nil {
			s.log.Warn("journal: remove the changelogs of a dropped root", "root", p, "err", err)
		}
		delete(s.fsOf, p)
	}
	s.applyRollovers()
	if err := state.WriteJSON(s.regPath(), &s.reg); err != nil {
		s.log.Error("journal: cannot save roots.json", "err", err)
	}
	s.log.Info("journal: consumer unregistered", "session", session, "root", path, "roots_removed", len(gone))
	return nil
}

// rootStatus describes p (under s.mu).
func (s *server) rootStatus(p string) RootStatus {
	d := Dir(s.opts.Dir, p)
	rs := RootStatus{Path: p, Dir: d, Consumers: slices.Clone(s.reg.Roots[p]), Error: s.rootErr[p], Rollover: s.reg.rolloverOf(p)}
	rs.ID, _ = RootID(d)
	if g := s.groups[s.fsOf[p]]; g != nil {
		if i := slices.Index(g.roots, p); i >= 0 {
			if info := g.j.Roots(); i < len(info) {
				rs.CoveredSince, rs.Vouched, rs.LastSeq = info[i].Since, info[i].Vouched, info[i].LastSeq
			}
			js := g.j.Stats()
			rs.Events, rs.Overflows = js.Events, js.Overflows
		}
	} else if rs.Error == "" {
		rs.Error = "not journaled"
	}
	files, _ := changelog.List(d)
	rs.Changelogs = len(files)
	for _, f := range files {
		if fi, err := os.Stat(f.Path); err == nil {
			rs.Bytes += fi.Size()
		}
	}
	return rs
}

func (s *server) status() *ServerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &ServerStatus{PID: os.Getpid(), Started: s.started, Version: s.opts.Version, MaxBytes: s.opts.MaxBytes}
	for _, p := range s.reg.paths() {
		st.Roots = append(st.Roots, s.rootStatus(p))
	}
	for _, g := range s.groups {
		js := g.j.Stats()
		st.Groups = append(st.Groups, GroupStatus{FS: g.fs, Roots: len(g.roots), Events: js.Events, Overflows: js.Overflows, Since: g.since})
	}
	slices.SortFunc(st.Groups, func(a, b GroupStatus) int {
		if a.FS < b.FS {
			return -1
		}
		if a.FS > b.FS {
			return 1
		}
		return 0
	})
	return st
}

func (s *server) stopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for fs, g := range s.groups {
		g.stopping.Store(true)
		if res := <-g.done; res.err != nil {
			s.log.Error("journal: stop", "fs", fs, "err", res.err)
		}
		delete(s.groups, fs)
	}
}

// doReexec hands every group over and execs the binary on disk with them.
// It returns only when the exec failed; the groups are running again then.
func (s *server) doReexec(ln *net.UnixListener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []journal.Inherited
	roots := map[string][]string{}
	for fs, g := range s.groups {
		roots[fs] = g.roots
		if in := g.handOff(); in != nil {
			list = append(list, *in)
		}
		delete(s.groups, fs)
	}
	restart := func() {
		for _, in := range list {
			s.startGroup(in.FS, roots[in.FS], &in)
		}
		for fs, paths := range roots {
			if s.groups[fs] == nil {
				s.startGroup(fs, paths, nil)
			}
		}
	}
	b, err := json.Marshal(list)
	if err != nil {
		restart()
		return err
	}
	for _, in := range list {
		if _, err := unix.FcntlInt(uintptr(in.FD), unix.F_SETFD, 0); err != nil {
			restart()
			return fmt.Errorf("inherit descriptor %d: %w", in.FD, err)
		}
	}
	lockFD := int(s.lock.Fd())
	if _, err := unix.FcntlInt(uintptr(lockFD), unix.F_SETFD, 0); err != nil {
		restart()
		return fmt.Errorf("inherit the lock: %w", err)
	}
	if ln != nil {
		ln.Close()
	}
	env := append(os.Environ(), InheritEnv+"="+string(b), lockEnv+"="+strconv.Itoa(lockFD))
	s.log.Info("journal: exec", "binary", s.exe, "groups", len(list))
	err = syscall.Exec(s.exe, s.opts.Args, env)
	unix.CloseOnExec(lockFD)
	restart()
	return fmt.Errorf("exec %s: %w", s.exe, err)
}

// serve answers control connections until ln is closed.
func (s *server) serve(ln *net.UnixListener) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		go s.handle(c)
	}
}

// decodeRequest parses one control request line and checks its op.
func decodeRequest(line []byte) (Request, error) {
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		return Request{}, fmt.Errorf("bad request: %w", err)
	}
	switch req.Op {
	case "register", "unregister", "rollover":
		if err := validSession(req.Session); err != nil {
			return Request{}, err
		}
		if req.Rollover < 0 || req.Rollover > journal.MaxRollover || req.Within < 0 || req.Within > journal.MaxRollover {
			return Request{}, fmt.Errorf("rollover %s, within %s: out of [0, %s]", req.Rollover, req.Within, journal.MaxRollover)
		}
	case "status", "reexec":
	default:
		return Request{}, fmt.Errorf("unknown op %q", req.Op)
	}
	return req, nil
}

type requestError struct {
	code string
	err  error
}

func (e *requestError) Error() string { return e.err.Error() }
func (e *requestError) Unwrap() error { return e.err }

func badRequest(err error) error { return &requestError{codeBadRequest, err} }

func (s *server) handle(c *net.UnixConn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	line, err := bufio.NewReaderSize(c, 64<<10).ReadSlice('\n')
	if err != nil {
		s.log.Debug("journal: control request", "err", err)
		return
	}
	req, err := decodeRequest(line)
	if err != nil {
		json.NewEncoder(c).Encode(Response{Error: err.Error(), Code: codeBadRequest})
		return
	}
	var resp Response
	switch req.Op {
	case "register":
		resp.Root, err = s.register(req.Session, req.Path, req.Rollover)
	case "unregister":
		err = s.unregister(req.Session, req.Path)
	case "rollover":
		err = s.rollOver(req.Session, req.Path, req.Within)
	case "status":
		resp.Status = s.status()
	case "reexec":
		reply := make(chan error, 1)
		// Answer first: the exec ends this connection.
		json.NewEncoder(c).Encode(Response{})
		select {
		case s.reexec <- reply:
			if err := <-reply; err != nil {
				s.log.Error("journal: re-exec failed", "err", err)
			}
		case <-s.ctx.Done():
		}
		return
	}
	if err != nil {
		resp.Error = err.Error()
		var re *requestError
		switch {
		case errors.As(err, &re):
			resp.Code = re.code
		case errors.Is(err, journal.ErrUnsupported):
			resp.Code = codeUnsupported
		}
	}
	if err := json.NewEncoder(c).Encode(resp); err != nil {
		s.log.Debug("journal: reply", "err", err)
	}
}
