// Package secondary owns the secondary agent: `georep secondary --root DIR`.
// It speaks the protocol over a byte stream (ssh stdio, or an in-process pipe
// for a local secondary), applies entry operations, file content and
// metadata by file ID — confined beneath its root — and keeps the ID index
// (.georep/ at the root) crash-consistent with the tree, so that any batch
// can be replayed after a crash and converge. It also owns the root's role:
// a promoted root (georep promote) is fenced against every session that
// would write into it, and a hello checks the root before it writes
// anything, so a refusal changes nothing (roles.go).
package secondary

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/protocol"
	"golang.org/x/sys/unix"
)

// Options configure an agent.
type Options struct {
	Root     string
	Software string // version string, for the handshake
	Logger   *slog.Logger
	// FakeSuper stores owner, group and special files in user.georep.stat
	// xattrs instead of applying them. It is switched on automatically when
	// the agent cannot chown (not root).
	FakeSuper bool
	// IdleTimeout ends the session when nothing arrives for this long
	// (0 = never). The primary pings well within it.
	IdleTimeout time.Duration
}

// Agent applies a primary's operations to one secondary root.
type Agent struct {
	opts   Options
	log    *slog.Logger
	rootFD int
	tmpFD  int
	// metaFD, idsFD and dirsFD are .georep, .georep/ids and .georep/dirs,
	// opened once at hello beneath the root without following symlinks
	// and checked to be the agent's own: every index access goes through
	// them (and tmpFD), never through a path from the root, so a
	// .georep swapped for a symlink or another directory mid-session is
	// not followed.
	metaFD    int
	idsFD     int
	dirsFD    int
	rootID    fileid.ID
	idx       *index
	fakeSuper bool

	fdMu    sync.Mutex
	fdCache map[fileid.ID]cachedDir
	// dirGen counts the barrier messages (entry operations and the like,
	// which may remove directories): a cached directory descriptor checked
	// in the current generation is used without another fstat.
	dirGen    atomic.Uint64
	graveyard []int

	strayMu sync.Mutex
	strays  int

	// sigs keeps the signatures handed out until their delta arrives.
	sigs sync.Map // fileid.ID -> *delta.Signature

	readOnly bool // a verify session: nothing is written
	lockFD   int  // flock on .georep/lock held for the session (-1: none)

	// mem bounds the received bytes held (see MaxBufferedBytes).
	mem budget

	streamMu sync.Mutex
	streams  map[uint64]*fileStream
	work     sync.WaitGroup
	sem      chan struct{}
	rep      *protocol.Replier
	kick     chan struct{} // a reply is waiting to be flushed

	shardMu sync.Mutex
	shards  map[string]int // .georep/ids/XX descriptors, kept for the session
	dshards map[string]int // .georep/dirs/XX descriptors, kept for the session
	tmpSeq  atomic.Uint64  // names of files being written from batches
	frames  protocol.FramePool
	// noTmpfile: the filesystem has no O_TMPFILE; batches use the staging area.
	noTmpfile atomic.Bool

	// Early writeback: every writebackEvery bytes of file data a syncfs
	// runs in the background, so the one before the stime finds little
	// left to write.
	written atomic.Int64
	syncing atomic.Bool
	syncWG  sync.WaitGroup

	// deferDurable: the primary asked for durability at the end of the
	// session (Hello.DeferDurability); pendingStime is the stime to record
	// once a syncfs has made everything applied so far durable.
	deferDurable bool
	pendingStime int64
	hasPending   bool
}

// Serve runs one session on rwc until the primary says goodbye, the stream
// ends, or ctx is done.
func Serve(ctx context.Context, rwc io.ReadWriteCloser, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	a := &Agent{opts: opts, log: log, rootFD: -1, tmpFD: -1, metaFD: -1, idsFD: -1, dirsFD: -1, lockFD: -1, dshards: map[string]int{}, fdCache: map[fileid.ID]cachedDir{}, streams: map[uint64]*fileStream{},
		sem: make(chan struct{}, 4), rep: protocol.NewReplier(rwc), kick: make(chan struct{}, 1), shards: map[string]int{}, mem: newBudget()}
	defer a.close()
	stop := context.AfterFunc(ctx, func() { rwc.Close() })
	defer stop()

	// Replies written beside the read loop are flushed when their writer
	// kicks (at once, coalescing what arrives meanwhile) or, for writers
	// that do not kick (listing chunks), within a few milliseconds. No
	// timer-driven trickle of tiny writes through ssh.
	flushDone := make(chan struct{})
	defer close(flushDone)
	go func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-flushDone:
				return
			case <-a.kick:
			case <-t.C:
			}
			a.rep.Flush()
		}
	}()

	r := bufio.NewReaderSize(rwc, 256<<10)
	var idle *time.Timer
	if opts.IdleTimeout > 0 {
		idle = time.AfterFunc(opts.IdleTimeout, func() {
			log.Warn("no message from the primary; ending the session", "timeout", opts.IdleTimeout)
			rwc.Close()
		})
		defer idle.Stop()
	}
	hello := false
	for {
		f, buf, err := a.frames.ReadFrame(r)
		if err != nil {
			a.abortStreams()
			a.work.Wait()
			a.rep.Flush()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read from primary: %w", err)
		}
		if idle != nil {
			idle.Reset(opts.IdleTimeout)
		}
		// Cached directory descriptors are checked again, once each, by
		// the work this message brings (see dirFD).
		a.dirGen.Add(1)
		m, err := protocol.Decode(f)
		switch m.(type) {
		case *protocol.PutFiles, *protocol.FileChunk:
			// Decoded in place: the buffer goes back once the data is written.
		default:
			// Everything else was copied out of the frame.
			a.frames.Release(buf)
			buf = nil
		}
		if err != nil {
			// The frame's length held, so the stream is still in step:
			// the bad request is refused and the session goes on (before
			// Hello it ends).
			a.rep.Reply(f.ReqID, &protocol.Error{Msg: err.Error()})
			a.rep.Flush()
			if !hello {
				return fmt.Errorf("from primary: %w", err)
			}
			a.log.Warn("refused a malformed request", "type", f.Type, "err", err)
			continue
		}
		cost := frameCost(f, m)
		if z, ok := m.(*protocol.Compressed); ok {
			m = z.Inner
		}
		// Backpressure: past the budget, stop reading until the work in
		// hand gives some back. The primary is not silent meanwhile: the
		// idle timer waits too.
		if !a.mem.tryAcquire(cost) {
			if idle != nil {
				idle.Stop()
			}
			if err := a.mem.acquire(ctx, cost); err != nil {
				a.abortStreams()
				a.work.Wait()
				a.rep.Flush()
				return err
			}
			if idle != nil {
				idle.Reset(opts.IdleTimeout)
			}
		}
		if !hello {
			a.mem.release(cost)
			h, ok := m.(*protocol.Hello)
			if !ok {
				a.rep.Reply(f.ReqID, &protocol.Error{Msg: "protocol: expected Hello first"})
				a.rep.Flush()
				return errors.New("primary did not start with Hello")
			}
			reply, err := a.hello(h)
			if err != nil {
				a.rep.Reply(f.ReqID, &protocol.Error{Msg: err.Error(), Code: codeOf(err)})
				a.rep.Flush()
				return err
			}
			a.rep.Reply(f.ReqID, reply)
			a.rep.Flush()
			hello = true
			continue
		}
		if a.readOnly && writes(m) {
			a.mem.release(cost)
			a.rep.Reply(f.ReqID, &protocol.Error{Msg: fmt.Sprintf("protocol: %T refused in a read-only session", m)})
			a.rep.Flush()
			continue
		}
		switch m := m.(type) {
		case *protocol.PutFiles:
			// The files' data is read from the frame's (pooled) buffer.
			a.async(func() {
				a.replyKick(f.ReqID, a.receiveFiles(m))
				a.frames.Release(buf)
				a.mem.release(cost)
			})
			continue
		case *protocol.FileChunk:
			a.chunkFrame(f.ReqID, m, buf, cost)
			continue
		case *protocol.PutFile:
			a.putFile(f.ReqID, m, cost)
			continue
		case *protocol.Delta:
			a.deltaFrame(f.ReqID, m, cost)
			continue
		case *protocol.Sig:
			a.async(func() {
				a.replyKick(f.ReqID, a.signature(m))
				a.mem.release(cost)
			})
			continue
		case *protocol.Ping:
			a.mem.release(cost)
			a.rep.Reply(f.ReqID, &protocol.Pong{})
			continue
		case *protocol.Bye:
			a.abortStreams()
			a.work.Wait()
			a.rep.Reply(f.ReqID, &protocol.Bye{})
			a.rep.Flush()
			if a.hasPending {
				// Let the primary go: the syncfs and the stime record
				// (in close) need nothing more from it.
				rwc.Close()
			}
			return nil
		}
		// Everything else is a barrier: it sees the effects of all earlier
		// messages — so none may come while a file stream waits for more
		// frames (it would wait for ever).
		if n := a.openStreams(); n > 0 {
			a.mem.release(cost)
			a.rep.Reply(f.ReqID, &protocol.Error{Msg: fmt.Sprintf("protocol: %T while %d file streams are unfinished: finish them first", m, n)})
			a.rep.Flush()
			continue
		}
		a.work.Wait()
		var reply protocol.Message
		switch m := m.(type) {
		case *protocol.List:
			err = a.list(f.ReqID)
			if err != nil {
				reply = &protocol.Error{Msg: err.Error()}
			}
		case *protocol.Lookup:
			reply = a.lookup(m)
		case *protocol.Apply:
			reply = a.apply(m)
		case *protocol.Meta:
			reply = a.meta(m)
		case *protocol.StimeGet:
			reply = &protocol.StimeOK{Stime: a.readStime()}
		case *protocol.StimeSet:
			if a.deferDurable {
				a.pendingStime, a.hasPending = m.Stime, true
				reply = &protocol.StimeOK{Stime: m.Stime}
				break
			}
			if err := a.commitStime(m.Stime); err != nil {
				reply = &protocol.Error{Msg: err.Error()}
			} else {
				reply = &protocol.StimeOK{Stime: m.Stime}
			}
		case *protocol.Limbo:
			reply = a.limbo(m)
		case *protocol.Hash:
			reply = a.hash(m)
		default:
			if h, ok := extraHandlers[m.Type()]; ok {
				reply = h(a, f.ReqID, m)
			} else {
				reply = &protocol.Error{Msg: fmt.Sprintf("protocol: unexpected message %T", m)}
			}
		}
		if reply != nil {
			a.rep.Reply(f.ReqID, reply)
		}
		a.mem.release(cost)
		a.rep.Flush()
		a.buryFDs() // a barrier ran alone: nothing holds a descriptor now
	}
}

// async runs fn on the agent's worker pool; barriers wait for it.
func (a *Agent) async(fn func()) {
	a.work.Add(1)
	go func() {
		defer a.work.Done()
		a.sem <- struct{}{}
		defer func() { <-a.sem }()
		fn()
	}()
}

// EnlargeStdio gives the agent's stdin and stdout, when they are pipes (as
// sshd makes them), 1 MiB buffers: with the default 64 KiB, sshd and the
// agent wake each other every few packets of bulk data. Call it before
// Serve on the process's stdio.
func EnlargeStdio() {
	for _, fd := range []int{0, 1} {
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFIFO {
			unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, 1<<20)
		}
	}
}

// replyKick replies from beside the read loop and has the reply flushed.
func (a *Agent) replyKick(reqID uint64, m protocol.Message) {
	a.rep.Reply(reqID, m)
	select {
	case a.kick <- struct{}{}:
	default: // a flush is due anyway
	}
}

func (a *Agent) close() {
	a.work.Wait()
	if a.hasPending {
		// Deferred durability: everything up to the StimeSet was applied
		// (it was a barrier); make it durable, then record the stime.
		// Until then the stime on record is the previous one, so a crash
		// here costs a re-crawl, never a change taken for synced.
		if err := a.commitStime(a.pendingStime); err != nil {
			a.log.Error("could not make the session durable; the secondary keeps its previous stime", "err", err)
		}
		a.hasPending = false
	}
	if a.lockFD >= 0 {
		unix.Close(a.lockFD) // releases the flock
	}
	a.syncWG.Wait() // a background syncfs uses rootFD
	a.forgetAllFDs()
	a.buryFDs()
	a.closeIndexDirs()
	for _, fd := range []int{a.tmpFD, a.metaFD} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	if a.rootFD >= 0 {
		unix.Close(a.rootFD)
	}
}

func (a *Agent) hello(h *protocol.Hello) (*protocol.HelloOK, error) {
	if h.Version != protocol.Version {
		return nil, fmt.Errorf("protocol version mismatch: primary speaks %d (georep %s), this secondary speaks %d (georep %s)",
			h.Version, h.Software, protocol.Version, a.opts.Software)
	}
	if !h.RootID.Valid() {
		return nil, errors.New("hello: invalid root id")
	}
	root := a.opts.Root
	if root == "" {
		return nil, errors.New("secondary: no root directory given")
	}
	a.readOnly = h.ReadOnly
	a.deferDurable = h.DeferDurability && !h.ReadOnly
	if h.Check {
		return a.helloCheck(h)
	}
	if h.ReadOnly {
		return a.helloReadOnly(h)
	}
	// Check first, write second: a refused session leaves the root as it
	// was (nothing created, locked or reset).
	if fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
		_, err := checkRoot(fd, root, h.RootID, h.Force)
		unix.Close(fd)
		if err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("secondary root %s: %w", root, err)
	}
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open secondary root %s: %w", root, err)
	}
	a.rootFD = fd
	a.rootID = h.RootID
	a.fakeSuper = h.FakeSuper || a.opts.FakeSuper || os.Geteuid() != 0
	newRoot := false
	if err := a.openMeta(true); err != nil {
		return nil, err
	}
	if err := a.lockRoot(h.RootID); err != nil {
		return nil, err
	}
	// Again under the lock: a role change (promote) holds it too.
	foreign, err := checkRoot(fd, root, h.RootID, h.Force)
	if err != nil {
		return nil, err
	}
	prev, err := readSmallFile(a.metaFD, rootIDName)
	switch {
	case err != nil && errors.Is(err, unix.ENOENT):
		newRoot = true
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", rootIDFile, err)
	case foreign:
		// Another primary tree (or the same tree on a new filesystem) was
		// replicated here and --force accepted it: its IDs mean nothing
		// now. Keep the files, forget the index; the crawl adopts them by
		// path.
		a.log.Warn("secondary was replicated from another primary root; starting a new index", "old", strings.TrimSpace(prev), "new", h.RootID)
		a.closeIndexDirs()
		for _, d := range []string{"ids", "dirs"} {
			if err := removeAllAt(a.metaFD, d); err != nil {
				return nil, fmt.Errorf("reset index %s/%s: %w", metaDir, d, err)
			}
		}
		unix.Unlinkat(a.metaFD, stimeName, 0)
		if err := a.openMeta(true); err != nil {
			return nil, err
		}
		newRoot = true
	}
	if newRoot {
		if err := writeFileAtomic(a.metaFD, rootIDName, []byte(string(h.RootID)+"\n")); err != nil {
			return nil, err
		}
	}
	a.cleanTmp()
	loadStart := time.Now()
	if err := a.loadIndex(); err != nil {
		return nil, err
	}
	a.log.Info("session started", "root", root, "primary", h.Session, "fake_super", a.fakeSuper, "known_ids", len(a.idx.files)+len(a.idx.dirs),
		"index_load", time.Since(loadStart).Round(time.Millisecond))
	return &protocol.HelloOK{Version: protocol.Version, Software: a.opts.Software, FakeSuper: a.fakeSuper, Stime: a.readStime(), NewRoot: newRoot}, nil
}

// cleanTmp removes partial files and strays a crash left in the staging
// area; staged IDs stay (the primary may still want them).
func (a *Agent) cleanTmp() {
	names, _ := readNames(a.tmpFD, ".")
	for _, n := range names {
		if strings.Contains(n, ".new") || strings.HasPrefix(n, "stray.") {
			removeAllAt(a.tmpFD, n)
		}
	}
}

func readSmallFile(dirfd int, rel string) (string, error) {
	f, _, err := openContent(dirfd, rel, unix.O_RDONLY)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<16))
	return string(b), err
}

// writeFileAtomic writes rel under dirfd through a temp file, fsync and
// rename.
func writeFileAtomic(dirfd int, rel string, data []byte) error {
	tmp := rel + ".tmp"
	fd, err := unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", rel, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync %s: %w", rel, err)
	}
	f.Close()
	if err := unix.Renameat(dirfd, tmp, dirfd, rel); err != nil {
		return fmt.Errorf("rename %s: %w", rel, err)
	}
	return nil
}

func (a *Agent) readStime() int64 {
	s, err := readSmallFile(a.metaFD, stimeName)
	if err != nil {
		return 0
	}
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0
	}
	return v
}

// writebackEvery is how much file data the agent writes between two
// background syncfs calls.
const writebackEvery = 32 << 20

// wrote counts file data written; past each writebackEvery bytes it starts
// a background syncfs (one at a time). Writeback then overlaps the
// transfer instead of all of it waiting for commitStime.
func (a *Agent) wrote(n int64) {
	if a.deferDurable {
		return // the kernel writes back; the one syncfs comes at the end
	}
	after := a.written.Add(n)
	if after/writebackEvery == (after-n)/writebackEvery || !a.syncing.CompareAndSwap(false, true) {
		return
	}
	a.syncWG.Add(1)
	go func() {
		defer a.syncWG.Done()
		defer a.syncing.Store(false)
		unix.Syncfs(a.rootFD)
	}()
}

// commitStime makes the applied changes durable, then records the stime.
func (a *Agent) commitStime(stime int64) error {
	if err := unix.Syncfs(a.rootFD); err != nil {
		return fmt.Errorf("syncfs: %w", err)
	}
	return writeFileAtomic(a.metaFD, stimeName, []byte(strconv.FormatInt(stime, 10)+"\n"))
}

// removeAllAt removes rel under dirfd recursively, never following
// symlinks and never leaving dirfd.
func removeAllAt(dirfd int, rel string) error {
	err := unix.Unlinkat(dirfd, rel, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	fd, err := openBeneath(dirfd, rel, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	f := os.NewFile(uintptr(fd), rel)
	for {
		names, rerr := f.Readdirnames(512)
		for _, n := range names {
			if err := removeAllAt(fd, n); err != nil {
				f.Close()
				return err
			}
		}
		if rerr != nil || len(names) == 0 {
			break
		}
	}
	f.Close()
	err = unix.Unlinkat(dirfd, rel, unix.AT_REMOVEDIR)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}
