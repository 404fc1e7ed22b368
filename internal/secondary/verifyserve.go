package secondary

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/georep/georep/internal/protocol"
	"github.com/georep/georep/internal/tree"
	"github.com/georep/georep/internal/verify"
	"github.com/georep/georep/internal/xattr"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// extraHandlers answers message types registered outside the core set
// (protocol.Register). A handler gets the request id so that it can stream
// several replies; it returns the single reply, or nil when it replies by
// itself (possibly later, from its own goroutine registered in a.work, so
// that the next barrier waits for it).
var extraHandlers = map[protocol.Type]func(a *Agent, reqID uint64, m protocol.Message) protocol.Message{}

func init() {
	extraHandlers[protocol.TVerifyList] = func(a *Agent, reqID uint64, m protocol.Message) protocol.Message {
		req, ok := m.(*protocol.VerifyList)
		if !ok {
			return &protocol.Error{Msg: fmt.Sprintf("protocol: unexpected message %T", m)}
		}
		// The walk runs beside the read loop, so that Pings are answered
		// and the idle timer sees them however long the walk takes.
		a.work.Add(1)
		go func() {
			defer a.work.Done()
			a.serveVerify(reqID, req)
		}()
		return nil
	}
}

// Sizes of the verify stream.
const (
	verifyChunkItems = 1024
	verifyChunkBytes = 1 << 20
	// An item larger than this (xattrs, mostly) is sent as an error: a
	// frame must stay well below protocol.MaxFrame.
	verifyMaxItemBytes = 8 << 20
	verifyFlushEvery   = 100 * time.Millisecond
)

// serveVerify answers a VerifyList: VerifyChunks, then VerifyEnd (or an
// Error when the root cannot be read).
func (a *Agent) serveVerify(reqID uint64, req *protocol.VerifyList) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := time.Now()
	w := newVerifyWalk(ctx, a, req)
	var count int64
	sendErr := make(chan error, 1)
	go func() {
		var err error
		count, err = w.sendLoop(reqID)
		if err != nil {
			cancel()
		}
		sendErr <- err
	}()
	walkErr := w.run()
	close(w.out)
	if err := <-sendErr; err != nil {
		a.log.Warn("verify listing abandoned: the primary is gone", "err", err)
		return
	}
	if walkErr != nil {
		a.rep.Reply(reqID, &protocol.Error{Msg: walkErr.Error()})
	} else {
		a.rep.Reply(reqID, &protocol.VerifyEnd{Count: count, Hashed: w.hashed.Load()})
	}
	a.rep.Flush()
	a.log.Info("verify listing sent", "items", count, "hashed_bytes", w.hashed.Load(), "seconds", time.Since(started).Seconds(), "err", walkErr)
}

// verifyWalk walks the secondary tree for verify with the semantics of
// verify.Local (lstat, symlinks never followed, a path that vanishes or
// cannot be read is an item with Err), but confined like everything the
// agent does: the root is the agent's, each directory and file is opened
// with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) relative to its
// parent's descriptor, and xattrs of entries that cannot be opened
// (symlinks, FIFOs, devices) are read through /proc/self/fd/DIRFD/NAME,
// whose last component is not followed.
type verifyWalk struct {
	a       *Agent
	req     *protocol.VerifyList
	ctx     context.Context
	g       *errgroup.Group
	dirSem  chan struct{}
	hashSem chan struct{}
	ex      map[string]bool
	out     chan protocol.VerifyItem
	hashed  atomic.Int64
}

func newVerifyWalk(ctx context.Context, a *Agent, req *protocol.VerifyList) *verifyWalk {
	g, gctx := errgroup.WithContext(ctx)
	jobs := int(req.Jobs)
	if jobs <= 0 {
		jobs = 2*runtime.GOMAXPROCS(0) + 2
	}
	jobs = min(jobs, protocol.MaxVerifyJobs)
	ex := map[string]bool{metaDir: true}
	for _, e := range req.Excludes {
		if e = strings.Trim(e, "/"); e != "" {
			ex[e] = true
		}
	}
	return &verifyWalk{
		a: a, req: req, ctx: gctx, g: g,
		dirSem:  make(chan struct{}, 2*runtime.GOMAXPROCS(0)+2),
		hashSem: make(chan struct{}, jobs),
		ex:      ex,
		out:     make(chan protocol.VerifyItem, verifyChunkItems),
	}
}

// run walks the whole tree; an error means the root could not be read or
// the walk was cancelled.
func (w *verifyWalk) run() error {
	// A descriptor of our own: reading a directory moves its offset.
	fd, err := openBeneath(w.a.rootFD, ".", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("verify: open the secondary root: %w", err)
	}
	root := &vdir{fd: fd}
	root.acquire()
	w.g.Go(func() error {
		defer root.release()
		return w.readDir(root, "")
	})
	return w.g.Wait()
}

// sendLoop cuts the items into chunks and sends them; a chunk goes out
// when full or when the walk has been slow for a while.
func (w *verifyWalk) sendLoop(reqID uint64) (int64, error) {
	var (
		batch []protocol.VerifyItem
		size  int
		count int64
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := w.a.rep.Reply(reqID, &protocol.VerifyChunk{Items: batch})
		batch, size = batch[:0], 0
		return err
	}
	t := time.NewTicker(verifyFlushEvery)
	defer t.Stop()
	for {
		select {
		case it, ok := <-w.out:
			if !ok {
				return count, flush()
			}
			batch = append(batch, it)
			size += it.EncodedSize()
			count++
			if len(batch) >= verifyChunkItems || size >= verifyChunkBytes {
				if err := flush(); err != nil {
					return count, err
				}
			}
		case <-t.C:
			if err := flush(); err != nil {
				return count, err
			}
		}
	}
}

func (w *verifyWalk) emit(it protocol.VerifyItem) error {
	if n := it.EncodedSize(); n > verifyMaxItemBytes {
		it = protocol.VerifyItem{Path: it.Path, Kind: it.Kind, Err: fmt.Sprintf("too large to describe (%d bytes of metadata)", n)}
	}
	select {
	case w.out <- it:
		return nil
	case <-w.ctx.Done():
		return w.ctx.Err()
	}
}

// vdir is an open directory shared by the jobs working on its entries; the
// last one to release it closes it.
type vdir struct {
	fd   int
	refs atomic.Int32
}

func (h *vdir) acquire() { h.refs.Add(1) }
func (h *vdir) release() {
	if h.refs.Add(-1) == 0 {
		unix.Close(h.fd)
	}
}

func vjoin(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func vitem(rel string, st *unix.Stat_t) protocol.VerifyItem {
	it := protocol.VerifyItem{
		Path:  rel,
		Kind:  tree.KindOf(st.Mode),
		Mode:  st.Mode & 07777,
		UID:   st.Uid,
		GID:   st.Gid,
		Size:  st.Size,
		Mtime: st.Mtim.Sec*1e9 + st.Mtim.Nsec,
	}
	if it.Kind == tree.KindChar || it.Kind == tree.KindBlock {
		it.Rdev = st.Rdev
	}
	if it.Kind != tree.KindDir && st.Nlink > 1 {
		it.LinkGroup = strconv.FormatUint(st.Dev, 16) + ":" + strconv.FormatUint(st.Ino, 16)
	}
	return it
}

// readDir lists the open directory h (relative path rel) and handles each
// entry: subdirectories on another goroutine when one is free, else inline;
// regular files on the bounded hashing goroutines; the rest inline.
func (w *verifyWalk) readDir(h *vdir, rel string) error {
	names, err := direntNames(h.fd)
	if err != nil {
		if rel == "" {
			return fmt.Errorf("verify: read the secondary root: %w", err)
		}
		return w.emit(protocol.VerifyItem{Path: rel, Err: "reading directory: " + verify.ErrString(err)})
	}
	for _, name := range names {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		if !tree.ValidName(name) {
			continue
		}
		crel := vjoin(rel, name)
		if w.ex[crel] {
			continue
		}
		var st unix.Stat_t
		if err := fstatatNoFollow(h.fd, name, &st); err != nil {
			if err := w.emit(protocol.VerifyItem{Path: crel, Err: verify.ErrString(err)}); err != nil {
				return err
			}
			continue
		}
		it := vitem(crel, &st)
		switch it.Kind {
		case tree.KindDir:
			h.acquire()
			select {
			case w.dirSem <- struct{}{}:
				w.g.Go(func() error {
					defer func() { <-w.dirSem }()
					return w.dir(h, name, it)
				})
			default:
				if err := w.dir(h, name, it); err != nil {
					return err
				}
			}
		case tree.KindRegular:
			h.acquire()
			select {
			case w.hashSem <- struct{}{}:
			case <-w.ctx.Done():
				h.release()
				return w.ctx.Err()
			}
			w.g.Go(func() error {
				defer func() { <-w.hashSem }()
				defer h.release()
				return w.file(h, name, it)
			})
		default:
			if err := w.other(h, name, it); err != nil {
				return err
			}
		}
	}
	return nil
}

var direntBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

func direntNames(fd int) ([]string, error) {
	bp := direntBufs.Get().(*[]byte)
	defer direntBufs.Put(bp)
	var names []string
	for {
		n, err := unix.ReadDirent(fd, *bp)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent((*bp)[:n], -1, names)
	}
}

func fstatatNoFollow(dirfd int, name string, st *unix.Stat_t) error {
	for {
		err := unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
		if err != unix.EINTR {
			return err
		}
	}
}

// dir opens the subdirectory name of parent beneath it, sends its item and
// reads it. It takes over a reference to parent.
func (w *verifyWalk) dir(parent *vdir, name string, it protocol.VerifyItem) error {
	fd, err := openBeneath(parent.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
	parent.release()
	if err != nil {
		it.Err = verify.ErrString(err)
		return w.emit(it)
	}
	h := &vdir{fd: fd}
	h.acquire()
	defer h.release()
	w.attrs(&it, xattr.OfFD(fd))
	if err := w.emit(it); err != nil {
		return err
	}
	return w.readDir(h, it.Path)
}

// file opens the regular file name of parent beneath it, re-stats it (the
// descriptor's view wins, so metadata and content agree), digests its
// content here, on the secondary, and reads its xattrs.
func (w *verifyWalk) file(parent *vdir, name string, it protocol.VerifyItem) error {
	fd, err := openVerifyFile(parent.fd, name)
	if err != nil {
		it.Err = verify.ErrString(err)
		return w.emit(it)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		it.Err = verify.ErrString(err)
		return w.emit(it)
	}
	it = vitem(it.Path, &st)
	if it.Kind == tree.KindRegular {
		var n int64
		it.Hash, n, err = digestFD(fd, it.Size)
		w.hashed.Add(n)
		if err != nil {
			it.Err = "reading: " + verify.ErrString(err)
			return w.emit(it)
		}
		it.HasHash = true
	}
	w.attrs(&it, xattr.OfFD(fd))
	return w.emit(it)
}

func openVerifyFile(dirfd int, name string) (int, error) {
	// O_NONBLOCK: never hang on a FIFO that replaced the file since lstat
	// (RESOLVE_NO_SYMLINKS already refuses a symlink put in its place).
	flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_NOATIME
	fd, err := openBeneath(dirfd, name, flags)
	if err == unix.EPERM {
		fd, err = openBeneath(dirfd, name, flags&^unix.O_NOATIME) // O_NOATIME needs ownership or CAP_FOWNER
	}
	return fd, err
}

var hashBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// digestFD computes the verify.Item digest (the first bytes of
// verify.NewDigest's sum, as verify.Digest does) of the regular file open
// as fd, stat'ed at size, with a pooled buffer; a short read of exactly
// size ends it without the read that would return EOF.
func digestFD(fd int, size int64) (sum [protocol.VerifyHashSize]byte, n int64, err error) {
	bp := hashBufs.Get().(*[]byte)
	defer hashBufs.Put(bp)
	buf := *bp
	h := verify.NewDigest()
	for {
		m, err := unix.Read(fd, buf)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return sum, n, err
		}
		if m == 0 {
			break
		}
		h.Write(buf[:m])
		n += int64(m)
		if m < len(buf) && n == size {
			break
		}
	}
	var full [64]byte
	copy(sum[:], h.Sum(full[:0]))
	return sum, n, nil
}

// other handles symlinks, FIFOs, devices and sockets, which are never
// opened.
func (w *verifyWalk) other(parent *vdir, name string, it protocol.VerifyItem) error {
	if it.Kind == tree.KindSymlink {
		t, err := readlinkSized(parent.fd, name, it.Size)
		if err != nil {
			it.Err = verify.ErrString(err)
			return w.emit(it)
		}
		it.Target = t
	}
	w.attrs(&it, xattr.OfLink(procPath(parent.fd)+"/"+name))
	return w.emit(it)
}

func readlinkSized(dirfd int, name string, size int64) (string, error) {
	n := int(size) + 1
	if n < 64 || n > 1<<16 {
		n = 256
	}
	for {
		buf := make([]byte, n)
		m, err := unix.Readlinkat(dirfd, name, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "", err
		}
		if m < len(buf) {
			return string(buf[:m]), nil
		}
		if n >= 1<<20 {
			return "", unix.ENAMETOOLONG
		}
		n *= 2
	}
}

// attrs fills in the xattrs verify compares (when asked) and the raw
// user.georep.stat (when asked), recording problems in it.Err exactly as
// verify.Local does.
func (w *verifyWalk) attrs(it *protocol.VerifyItem, x xattr.Source) {
	if !w.req.Xattrs && !w.req.FakeSuper {
		return
	}
	if !w.req.Xattrs {
		v, err := x.Value(verify.FakeStatXattr)
		switch {
		case err == nil:
			it.HasStat, it.FakeStat = true, v
		case !xattr.Absent(err):
			it.Err = "reading xattr " + verify.FakeStatXattr + ": " + verify.ErrString(err)
		}
		return
	}
	names, err := x.Names()
	if err != nil {
		if !xattr.Absent(err) {
			it.Err = "listing xattrs: " + verify.ErrString(err)
		}
		return
	}
	slices.Sort(names)
	for _, n := range names {
		wantStat := w.req.FakeSuper && n == verify.FakeStatXattr
		if !verify.ComparedXattr(n) && !wantStat {
			continue
		}
		v, err := x.Value(n)
		if err != nil {
			if err == unix.ENODATA {
				continue // removed meanwhile
			}
			it.Err = "reading xattr " + n + ": " + verify.ErrString(err)
			it.Xattrs, it.HasStat, it.FakeStat = nil, false, nil
			return
		}
		if wantStat {
			it.HasStat, it.FakeStat = true, v
			continue
		}
		it.Xattrs = append(it.Xattrs, protocol.Xattr{Name: n, Value: v})
	}
}
