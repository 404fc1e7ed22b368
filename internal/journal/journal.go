package journal

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/georep/georep/internal/changelog"
	"github.com/georep/georep/internal/fileid"
	"golang.org/x/sys/unix"
)

// ErrUnsupported reports that the journal cannot run here: no CAP_SYS_ADMIN
// (or CAP_DAC_READ_SEARCH), a kernel without fanotify FID reporting
// (FAN_REPORT_TARGET_FID and FAN_RENAME need Linux 5.17), or a filesystem
// that cannot report file handles. Errors wrap it with the reason; callers
// fall back to periodic crawls.
var ErrUnsupported = errors.New("change journal unsupported")

// Gap reasons written in G records.
const (
	ReasonFirstStart = "first start"            // no journal.state: nothing was ever journaled
	ReasonRestart    = "restart after downtime" // the journal was not running since the state's end
	ReasonOverflow   = "queue overflow"         // the kernel queue overflowed: events were lost
	// ReasonWriteFailed: changelogs could not be written for so long that
	// the records held in memory were traded for this gap.
	ReasonWriteFailed = "changelog writes failed"
	// ReasonUnparsable: the kernel returned events the journal could not
	// parse; what they said is lost.
	ReasonUnparsable = "unparsable events"
)

// Root is one session root and where its changelogs go.
type Root struct {
	Path string // the replicated tree
	Dir  string // changelog directory for this root, created if missing; never journaled itself
	// RolloverInterval, when > 0, is this root's instead of Config's
	// (SetRolloverInterval changes it at run time).
	RolloverInterval time.Duration
}

// Config configures a Journal.
type Config struct {
	// Roots are the session roots, all on one filesystem; nested roots are
	// allowed (an event goes to every root that contains it). At most 64.
	Roots []Root
	// Exclude lists absolute paths whose subtrees are never journaled
	// (georep's state dir when it lies inside a root). The roots' Dirs are
	// always excluded.
	Exclude []string
	// RolloverInterval: a changelog is closed at most this long after its
	// first record. Default 1s.
	RolloverInterval time.Duration
	// QuietInterval: a changelog is closed early when no record arrived for
	// this long. Default 50ms.
	QuietInterval time.Duration
	// QueueSize is the kernel queue length in events: 0 is the system
	// default (fs.fanotify.max_queued_events, 16384), < 0 is unlimited
	// (FAN_UNLIMITED_QUEUE: no overflow, unbounded kernel memory), > 0 sets
	// the system-wide default to QueueSize just while the group is created
	// and restores it (the kernel reads it only then). Small values force
	// overflows in tests.
	QueueSize int
	// Logger receives the journal's logs; nil means slog.Default().
	Logger *slog.Logger
	// Inherit, when set, takes over the fanotify group (and its mark) that
	// a predecessor gave up with RunUntil's hand-off, in this process or
	// before an exec, instead of creating one: the events queued in the
	// kernel meanwhile are read by this journal, and a root the predecessor
	// vouched for up to Inherit.Since starts without a gap. QueueSize is
	// then the predecessor's. On an error Open leaves the descriptor open:
	// it is still the caller's.
	Inherit *Inherited
}

// Inherited is a fanotify group handed from one journal to its successor.
type Inherited struct {
	FD   int    `json:"fd"`
	Mask uint64 `json:"mask"` // the mark's event mask
	// FS is the filesystem of the mark (fileid.FSID in hex); the
	// successor's roots must be on it.
	FS string `json:"fs"`
	// Since: every event queued before it was read, and journaled, by the
	// predecessor; the rest are still in the group's queue.
	Since int64 `json:"since"`
}

// Stats are counters of a Journal since Open.
type Stats struct {
	Events       uint64    // fanotify events read
	Reads        uint64    // read(2) calls that returned events
	BytesRead    uint64    // bytes of events read
	Records      uint64    // records written to changelogs (all roots)
	Changelogs   uint64    // changelog files written
	Overflows    uint64    // kernel queue overflows
	Dropped      uint64    // events outside every root (or excluded)
	Stale        uint64    // events dropped because their directory was already gone
	Resolves     uint64    // directory cache misses (open_by_handle_at + readlink)
	CacheClears  uint64    // times the directory cache was dropped (directory renames, overflow)
	MaxBacklog   int       // most reads waiting between reader and processor
	ReaderWaits  uint64    // times the reader waited for the processor (maxInFlight bytes behind)
	WriteErrors  uint64    // failed changelog or state writes (retried)
	LastRollover time.Time // when the last changelog was written
	// Watermark: every filesystem event before it is in a durable
	// changelog of every root it concerns. Zero until the first changelog.
	Watermark time.Time
}

// Journal records filesystem changes under its roots into changelogs.
type Journal struct {
	cfg      Config
	log      *slog.Logger
	roots    []*rootState
	allRoots uint64
	excludes []string // canonical excluded paths (including the roots' Dirs)

	fsid        fileid.FSID
	mountFD     int // O_PATH descriptor of the first root, for open_by_handle_at
	fd          int // fanotify group (non-blocking)
	stopFD      int // eventfd that wakes the reader at stop
	stopping    atomic.Bool
	keepFD      bool // Close leaves fd open: it is inherited by a successor or still the caller's
	mask        uint64
	markTime    int64
	rootKeys    map[string]int      // identity key -> root index
	excludeKeys map[string]struct{} // identity keys of existing excluded paths

	ready     chan struct{}
	notify    chan struct{}
	wake      chan struct{} // a root's rollover was changed or asked for (RollOver)
	flushReq  chan flushReq // Flush requests, served by the processor
	exited    chan struct{} // closed when the processor stopped
	started   atomic.Bool
	closeOnce sync.Once
	closeErr  error

	// Shared between the reader and the processor (see processor.vouch).
	inflight    atomic.Bool
	batchesRead atomic.Uint64
	drainedAt   atomic.Int64
	inFlight    atomic.Int64  // bytes read and not yet processed
	space       chan struct{} // the processor signals the reader when inFlight drops

	st struct {
		events, reads, bytes, records, changelogs, overflows, dropped, stale atomic.Uint64
		resolves, cacheClears, writeErrors, readerWaits                      atomic.Uint64
		maxBacklog                                                           atomic.Int64
		lastRollover, watermark                                              atomic.Int64
	}

	// Test hooks, set before Run.
	beforeRead func()                                // called by the reader before each read
	onRecord   func(root int, rec *changelog.Record) // called for each record added to a window
}

// rootState is one root: its canonical path, identity and changelog dir.
type rootState struct {
	path    string // canonical path as seen through mountFD's mount
	dir     string
	id      fileid.ID
	lock    *os.File // flock on <dir>/journal.lock
	nextSeq uint64
	vouched int64 // as in state.End
	saved   int64 // End last written to journal.state
	since   int64 // as in state.Since
	win     window
	// Published for Roots (the processor owns the fields above).
	pubVouched, pubSince, pubSeq atomic.Int64
	// Set by any goroutine, read by the processor: the root's rollover
	// interval (ns, 0: Config's), and a pending RollOver (ns after the
	// window's first record; -1: none), cleared by the next changelog.
	rollover, eager atomic.Int64
}

// RootInfo describes one root of a running journal.
type RootInfo struct {
	Path    string    // canonical root path
	Dir     string    // its changelog dir
	Vouched time.Time // every event before it concerning the root is in a durable changelog
	Since   time.Time // unbroken coverage since (the end of the last gap)
	LastSeq uint64    // last changelog written
}

// Roots describes the journal's roots, in Config order.
func (j *Journal) Roots() []RootInfo {
	out := make([]RootInfo, len(j.roots))
	for i, r := range j.roots {
		out[i] = RootInfo{Path: r.path, Dir: r.dir, LastSeq: uint64(r.pubSeq.Load())}
		if v := r.pubVouched.Load(); v > 0 {
			out[i].Vouched = time.Unix(0, v)
		}
		if v := r.pubSince.Load(); v > 0 {
			out[i].Since = time.Unix(0, v)
		}
	}
	return out
}

func (r *rootState) publish() {
	r.pubVouched.Store(r.vouched)
	r.pubSince.Store(r.since)
	r.pubSeq.Store(int64(r.nextSeq - 1))
}

// Open checks the roots, places the filesystem mark and prepares the first
// changelog of every root with a gap record covering the time the journal
// was not running. When Open returns, every later change is journaled (Ready
// is already closed); events queue in the kernel until Run reads them.
func Open(cfg Config) (_ *Journal, err error) {
	if cfg.RolloverInterval <= 0 {
		cfg.RolloverInterval = time.Second
	}
	if cfg.QuietInterval <= 0 {
		cfg.QuietInterval = 50 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if len(cfg.Roots) == 0 {
		return nil, errors.New("journal: no roots")
	}
	if len(cfg.Roots) > 64 {
		return nil, fmt.Errorf("journal: %d roots: at most 64 per journal", len(cfg.Roots))
	}
	j := &Journal{
		cfg:      cfg,
		log:      cfg.Logger,
		mountFD:  -1,
		fd:       -1,
		stopFD:   -1,
		ready:    make(chan struct{}),
		notify:   make(chan struct{}, 1),
		wake:     make(chan struct{}, 1),
		flushReq: make(chan flushReq),
		exited:   make(chan struct{}),
		space:    make(chan struct{}, 1),
	}
	defer func() {
		if err != nil {
			j.Close()
		}
	}()

	// Roots: directories on one filesystem, with distinct changelog dirs.
	dirs := map[string]bool{}
	for i, r := range cfg.Roots {
		if r.Path == "" || r.Dir == "" {
			return nil, fmt.Errorf("journal: root %d: Path and Dir are required", i)
		}
		p, err := filepath.Abs(r.Path)
		if err != nil {
			return nil, fmt.Errorf("journal: root %s: %w", r.Path, err)
		}
		d, err := filepath.Abs(r.Dir)
		if err != nil {
			return nil, fmt.Errorf("journal: root %s: changelog dir: %w", r.Path, err)
		}
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("journal: root %s: %w", r.Path, err)
		}
		if d, err = filepath.EvalSymlinks(d); err != nil {
			return nil, fmt.Errorf("journal: root %s: %w", r.Path, err)
		}
		if dirs[d] {
			return nil, fmt.Errorf("journal: changelog dir %s used by two roots", d)
		}
		dirs[d] = true
		// Not O_PATH: open_by_handle_at refuses an O_PATH mount descriptor
		// (EBADF) on current kernels.
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("journal: root %s: %w", p, err)
		}
		fsid, ferr := fileid.FSIDOf(fd)
		if ferr == nil && i > 0 && fsid != j.fsid {
			unix.Close(fd)
			return nil, fmt.Errorf("journal: root %s is not on the filesystem of %s (one journal per filesystem)", p, j.roots[0].path)
		}
		var id fileid.ID
		if ferr == nil {
			id, ferr = fileid.Of(fsid, fd, "")
		}
		if ferr != nil {
			unix.Close(fd)
			if errors.Is(ferr, unix.EOPNOTSUPP) {
				return nil, fmt.Errorf("journal: %w", unsupported("root %s: the filesystem has no file handles: %v", p, ferr))
			}
			return nil, fmt.Errorf("journal: root %s: %w", p, ferr)
		}
		if i == 0 {
			j.fsid = fsid
			j.mountFD = fd
		} else {
			unix.Close(fd)
		}
		rs := &rootState{path: p, dir: d, id: id}
		rs.rollover.Store(int64(max(r.RolloverInterval, 0)))
		rs.eager.Store(-1)
		j.roots = append(j.roots, rs)
		j.allRoots |= 1 << uint(i)
	}

	// Canonical paths as the resolver will see them: each root reopened by
	// handle through the first root's mount. This also proves that
	// open_by_handle_at works (CAP_DAC_READ_SEARCH).
	j.rootKeys = map[string]int{}
	for i, r := range j.roots {
		fsid, typ, hb, _ := r.id.Parts()
		key := string(fsKey(fsid, typ, hb))
		if prev, dup := j.rootKeys[key]; dup {
			return nil, fmt.Errorf("journal: roots %s and %s are the same directory", j.roots[prev].path, r.path)
		}
		j.rootKeys[key] = i
		p, err := j.canonicalByHandle(typ, hb)
		if err != nil {
			if errors.Is(err, unix.EPERM) {
				return nil, fmt.Errorf("journal: %w", unsupported("%v (needs CAP_DAC_READ_SEARCH)", err))
			}
			return nil, fmt.Errorf("journal: root %s: %w", r.path, err)
		}
		r.path = p
	}

	// Excluded paths: the roots' changelog dirs and cfg.Exclude.
	j.excludeKeys = map[string]struct{}{}
	excl := append([]string(nil), cfg.Exclude...)
	for _, r := range j.roots {
		excl = append(excl, r.dir)
	}
	for _, e := range excl {
		e, err := filepath.Abs(e)
		if err != nil {
			return nil, fmt.Errorf("journal: exclude %s: %w", e, err)
		}
		if fd, err := unix.Open(e, unix.O_PATH|unix.O_CLOEXEC, 0); err == nil {
			var typ int32
			var hb []byte
			fsid, ferr := fileid.FSIDOf(fd)
			if ferr == nil {
				if h, _, herr := unix.NameToHandleAt(fd, "", unix.AT_EMPTY_PATH); herr == nil {
					typ, hb = h.Type(), h.Bytes()
				} else {
					ferr = herr
				}
			}
			unix.Close(fd)
			if ferr == nil && fsid == j.fsid {
				j.excludeKeys[string(fsKey(fsid, typ, hb))] = struct{}{}
				if p, err := j.canonicalByHandle(typ, hb); err == nil {
					e = p
				}
			} else if ev, err := filepath.EvalSymlinks(e); err == nil {
				e = ev
			}
		}
		j.excludes = append(j.excludes, e)
	}
	for i, r := range j.roots {
		for _, e := range j.excludes {
			if within(r.path, e) {
				return nil, fmt.Errorf("journal: root %s lies in excluded %s", j.cfg.Roots[i].Path, e)
			}
		}
	}

	// One journal per changelog dir.
	for _, r := range j.roots {
		f, err := os.OpenFile(filepath.Join(r.dir, "journal.lock"), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("journal: lock %s: %w", r.dir, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			return nil, fmt.Errorf("journal: changelog dir %s is in use by another journal: %w", r.dir, err)
		}
		r.lock = f
	}

	// The group and the mark.
	if in := cfg.Inherit; in != nil {
		if err := checkInherited(in, j.fsid); err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
		j.fd, j.keepFD = in.FD, true // the caller's until Open succeeds
		j.mask, j.markTime = in.Mask, in.Since
		if err := unix.SetNonblock(in.FD, true); err != nil {
			return nil, fmt.Errorf("journal: inherited group: %w", err)
		}
		if _, err := unix.FcntlInt(uintptr(in.FD), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
			return nil, fmt.Errorf("journal: inherited group: %w", err)
		}
	} else {
		fd, err := fanotifyInit(cfg.QueueSize)
		if err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
		j.fd = fd
		mask, dropped, err := fanotifyMarkFS(fd, j.roots[0].path)
		if err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
		j.markTime = time.Now().UnixNano()
		j.mask = mask
		for _, name := range dropped {
			j.log.Warn("journal: the kernel refused an event type; going without it", "event", name)
		}
	}

	// Every root starts with a gap up to the mark.
	for _, r := range j.roots {
		if err := j.prepareRoot(r); err != nil {
			return nil, err
		}
	}

	if j.stopFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("journal: eventfd: %w", err)
	}
	j.keepFD = false // ours now
	close(j.ready)
	j.log.Info("journal: watching", "inherited", cfg.Inherit != nil, "roots", len(j.roots), "filesystem", j.roots[0].path, "mask", fmt.Sprintf("%#x", j.mask))
	return j, nil
}

// canonicalByHandle opens a handle through mountFD and returns its path.
func (j *Journal) canonicalByHandle(typ int32, hb []byte) (string, error) {
	fd, err := unix.OpenByHandleAt(j.mountFD, unix.NewFileHandle(typ, hb), unix.O_PATH|unix.O_CLOEXEC)
	if err != nil {
		return "", fmt.Errorf("open_by_handle_at: %w", err)
	}
	defer unix.Close(fd)
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("path %q not reachable from the mount of %s", p, j.cfg.Roots[0].Path)
	}
	return p, nil
}

// prepareRoot finds the next sequence number, writes the gap record of this
// start into the first window and marks the state unclean.
func (j *Journal) prepareRoot(r *rootState) error {
	st, ok, err := readState(r.dir)
	if err != nil {
		j.log.Warn("journal: unreadable state; treating the whole past as a gap", "dir", r.dir, "err", err)
		st, ok = state{}, true // not a first start: something was here
	}
	files, err := changelog.List(r.dir)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	last := st.LastSeq
	if n := len(files); n > 0 && files[n-1].Seq > last {
		last = files[n-1].Seq
	}
	r.nextSeq = last + 1
	r.vouched, r.saved = st.End, st.End
	r.win.init()
	if gapNeeded(ok, st, j.markTime) {
		reason := ReasonFirstStart
		if ok {
			reason = ReasonRestart
			if !st.Clean {
				j.log.Warn("journal: the previous run did not stop cleanly", "dir", r.dir)
			}
		}
		from := min(st.End, j.markTime)
		r.win.start = j.markTime
		r.win.firstEmptyBefore = from
		r.win.recs = append(r.win.recs, changelog.Record{Type: changelog.Gap, From: from, To: j.markTime, Reason: reason})
		r.since = j.markTime
	} else {
		// Handed over: the predecessor journaled everything before
		// markTime and the rest is in the inherited queue.
		r.since = st.Since
	}
	r.publish()
	if err := writeState(r.dir, state{LastSeq: last, End: st.End, Clean: false, Since: r.since, Updated: time.Now().UnixNano()}); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// gapNeeded decides whether a root starts with a gap record: unless its
// state vouches (cleanly) for every event up to the start of this journal's
// queue, which only a hand-off of the group achieves.
func gapNeeded(haveState bool, st state, queueStart int64) bool {
	return !haveState || !st.Clean || st.End < queueStart
}

// checkInherited makes sure in is a fanotify group marked on filesystem fs.
func checkInherited(in *Inherited, fs fileid.FSID) error {
	if in.FD < 0 {
		return fmt.Errorf("inherited group: bad descriptor %d", in.FD)
	}
	link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(in.FD))
	if err != nil {
		return fmt.Errorf("inherited group: descriptor %d: %w", in.FD, err)
	}
	if link != "anon_inode:[fanotify]" {
		return fmt.Errorf("inherited group: descriptor %d is %s, not a fanotify group", in.FD, link)
	}
	if want := hex.EncodeToString(fs[:]); in.FS != want {
		return fmt.Errorf("inherited group: marked on filesystem %s, the roots are on %s", in.FS, want)
	}
	return nil
}

// FSOf returns the filesystem (fileid.FSID in hex, as Inherited.FS) of path.
func FSOf(path string) (string, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("journal: %s: %w", path, err)
	}
	defer unix.Close(fd)
	fs, err := fileid.FSIDOf(fd)
	if err != nil {
		return "", fmt.Errorf("journal: %s: %w", path, err)
	}
	return hex.EncodeToString(fs[:]), nil
}

// Ready is closed once the marks are in place: a gap crawl started after it
// misses nothing. Open places them, so it is closed when Open returns.
func (j *Journal) Ready() <-chan struct{} { return j.ready }

// Notify receives a signal (buffered, one pending at most) after changelog
// files were durably written.
func (j *Journal) Notify() <-chan struct{} { return j.notify }

// Stats returns the counters.
func (j *Journal) Stats() Stats {
	s := Stats{
		Events:      j.st.events.Load(),
		Reads:       j.st.reads.Load(),
		BytesRead:   j.st.bytes.Load(),
		Records:     j.st.records.Load(),
		Changelogs:  j.st.changelogs.Load(),
		Overflows:   j.st.overflows.Load(),
		Dropped:     j.st.dropped.Load(),
		Stale:       j.st.stale.Load(),
		Resolves:    j.st.resolves.Load(),
		CacheClears: j.st.cacheClears.Load(),
		MaxBacklog:  int(j.st.maxBacklog.Load()),
		ReaderWaits: j.st.readerWaits.Load(),
		WriteErrors: j.st.writeErrors.Load(),
	}
	if t := j.st.lastRollover.Load(); t != 0 {
		s.LastRollover = time.Unix(0, t)
	}
	if t := j.st.watermark.Load(); t != 0 {
		s.Watermark = time.Unix(0, t)
	}
	return s
}

// Close releases the fanotify group, the mount descriptor and the changelog
// dir locks. Run closes them itself when it returns; Close is for a Journal
// that is not run, and is idempotent.
func (j *Journal) Close() error {
	j.closeOnce.Do(func() {
		if j.fd >= 0 && !j.keepFD {
			j.closeErr = unix.Close(j.fd)
		}
		if j.stopFD >= 0 {
			unix.Close(j.stopFD)
		}
		if j.mountFD >= 0 {
			unix.Close(j.mountFD)
		}
		for _, r := range j.roots {
			if r.lock != nil {
				r.lock.Close()
			}
		}
	})
	return j.closeErr
}

// Run reads events until ctx is done, writing changelogs as windows close.
// On stop it drains the kernel queue, writes the final partial changelogs,
// marks the state clean and releases the journal; it returns nil then. It
// returns an error when reading events fails or the final changelogs cannot
// be written. Run may be called once.
func (j *Journal) Run(ctx context.Context) error {
	_, err := j.RunUntil(ctx, nil)
	return err
}

// RunUntil is Run that can also end in a hand-off: when handoff is closed
// (or receives), the journal stops as on ctx, but keeps its fanotify group
// and returns it for a successor (Config.Inherit): every event queued
// before Inherited.Since is in a durable changelog, marked clean, and every
// later one is still in the group's queue. When the final changelogs cannot
// be written it returns the error and closes the group instead (the
// successor then starts with a gap). After a stop on ctx it returns nil, nil.
func (j *Journal) RunUntil(ctx context.Context, handoff <-chan struct{}) (*Inherited, error) {
	if !j.started.CompareAndSwap(false, true) {
		return nil, errors.New("journal: Run called twice")
	}
	defer j.Close()
	handing, err := j.run(ctx, handoff)
	if err != nil || !handing {
		return nil, err
	}
	j.keepFD = true
	return &Inherited{FD: j.fd, Mask: j.mask, FS: hex.EncodeToString(j.fsid[:]), Since: j.drainedAt.Load()}, nil
}
