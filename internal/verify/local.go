package verify

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/georep/georep/internal/tree"
	"github.com/georep/georep/internal/xattr"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// Local returns a Source that walks the directory root on this machine. The
// walk reads directories and hashes files in parallel with a bounded number
// of goroutines, works relative to directory file descriptors (lstat
// semantics, symlinks are never followed, names may hold any byte but '/' and
// NUL, depth is not limited by PATH_MAX), and reports a path that vanishes or
// cannot be read mid-walk as an Item with Err set. Only a root that cannot be
// opened, a cancelled ctx or an error from fn make Items fail.
// Options.FakeSuper, when set, makes it honour user.georep.stat.
func Local(root string) Source { return &local{root: root} }

// LocalFakeSuper is Local for a replica written by a non-root secondary: it
// honours user.georep.stat (see Options.FakeSuper and FakeStatXattr) even when
// the Options it is given do not ask for it.
func LocalFakeSuper(root string) Source { return &local{root: root, fakeSuper: true} }

type local struct {
	root      string
	fakeSuper bool
}

// Concurrency of one Local walk.
func dirWorkers() int  { return 2*runtime.GOMAXPROCS(0) + 2 }
func hashWorkers() int { return 2*runtime.GOMAXPROCS(0) + 2 }

const readBufSize = 256 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// dirHandle is an open directory shared by the jobs that work on its entries;
// the last one to release it closes it.
type dirHandle struct {
	fd   int
	path string // for messages and the /proc fallback
	refs atomic.Int32
}

func (h *dirHandle) acquire() { h.refs.Add(1) }
func (h *dirHandle) release() {
	if h.refs.Add(-1) == 0 {
		unix.Close(h.fd)
	}
}

type walker struct {
	ctx       context.Context
	g         *errgroup.Group
	dirSem    chan struct{}
	hashSem   chan struct{}
	ex        map[string]bool
	xattrs    bool // read the compared xattrs
	fakeSuper bool
	emitMu    sync.Mutex
	fn        func(Item) error
	failed    error // what fn returned, once it failed; guarded by emitMu
}

func (l *local) Items(ctx context.Context, opts Options, fn func(Item) error) error {
	fd, err := openDir(unix.AT_FDCWD, l.root, false)
	if err != nil {
		return fmt.Errorf("open %s: %w", l.root, err)
	}
	root := &dirHandle{fd: fd, path: l.root}
	root.acquire()
	g, gctx := errgroup.WithContext(ctx)
	w := &walker{
		ctx:       gctx,
		g:         g,
		dirSem:    make(chan struct{}, dirWorkers()),
		hashSem:   make(chan struct{}, hashWorkers()),
		ex:        opts.excludeSet(),
		xattrs:    !opts.NoXattrs,
		fakeSuper: l.fakeSuper || opts.FakeSuper,
		fn:        fn,
	}
	g.Go(func() error {
		defer root.release()
		return w.readDir(root, "")
	})
	return g.Wait()
}

func openDir(dirfd int, name string, noFollow bool) (int, error) {
	flags := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC
	if noFollow {
		flags |= unix.O_NOFOLLOW
	}
	for {
		fd, err := unix.Openat(dirfd, name, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

func (w *walker) emit(it Item) error {
	w.emitMu.Lock()
	defer w.emitMu.Unlock()
	if w.failed != nil {
		return w.failed
	}
	if err := w.ctx.Err(); err != nil {
		return err
	}
	if err := w.fn(it); err != nil {
		w.failed = err
		return err
	}
	return nil
}

func errString(err error) string {
	if errors.Is(err, unix.ENOENT) {
		return ErrVanished
	}
	return err.Error()
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// itemOf builds an Item from a stat result.
func itemOf(rel string, st *unix.Stat_t) Item {
	it := Item{
		Path:  rel,
		Kind:  tree.KindOf(st.Mode),
		Mode:  st.Mode & 07777,
		UID:   st.Uid,
		GID:   st.Gid,
		Size:  st.Size,
		Mtime: st.Mtim.Sec*1e9 + st.Mtim.Nsec,
	}
	if it.Kind == tree.KindChar || it.Kind == tree.KindBlock {
		it.Rdev = uint64(st.Rdev)
	}
	if it.Kind != tree.KindDir && st.Nlink > 1 {
		it.LinkGroup = strconv.FormatUint(uint64(st.Dev), 16) + ":" + strconv.FormatUint(st.Ino, 16)
	}
	return it
}

// readDir lists the open directory h (relative path rel) and handles each
// entry. Subdirectories go to another goroutine when one is free, else they
// are read inline; regular files are hashed by the hash goroutines.
func (w *walker) readDir(h *dirHandle, rel string) error {
	names, err := readNames(h.fd)
	if err != nil {
		if rel == "" {
			return fmt.Errorf("read %s: %w", h.path, err)
		}
		return w.emit(Item{Path: rel, Err: "reading directory: " + errString(err)})
	}
	for _, name := range names {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		crel := join(rel, name)
		if w.ex[crel] {
			continue
		}
		var st unix.Stat_t
		if err := fstatat(h.fd, name, &st); err != nil {
			if err := w.emit(Item{Path: crel, Err: errString(err)}); err != nil {
				return err
			}
			continue
		}
		it := itemOf(crel, &st)
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

func fstatat(dirfd int, name string, st *unix.Stat_t) error {
	for {
		err := unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
		if err != unix.EINTR {
			return err
		}
	}
}

func readNames(fd int) ([]string, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := (*bp)[:64<<10]
	var names []string
	for {
		n, err := unix.ReadDirent(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}

// dir opens the subdirectory name of parent, emits its Item and reads it.
// It takes over a reference to parent, released once the subdirectory is open.
func (w *walker) dir(parent *dirHandle, name string, it Item) error {
	fd, err := openDir(parent.fd, name, true)
	path := parent.path + "/" + name
	parent.release()
	if err != nil {
		it.Err = errString(err)
		return w.emit(it)
	}
	h := &dirHandle{fd: fd, path: path}
	h.acquire()
	defer h.release()
	if err := w.attrs(&it, xattr.OfFD(fd)); err != nil {
		return err
	}
	if err := w.emit(it); err != nil {
		return err
	}
	return w.readDir(h, it.Path)
}

// file opens, re-stats (the fd's view wins, so metadata and content agree),
// reads the xattrs of and hashes the regular file name of parent.
func (w *walker) file(parent *dirHandle, name string, it Item) error {
	fd, err := openFile(parent.fd, name)
	if err != nil {
		it.Err = errString(err)
		return w.emit(it)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		it.Err = errString(err)
		return w.emit(it)
	}
	it = itemOf(it.Path, &st)
	if it.Kind == tree.KindRegular {
		if it.Hash, err = hashFD(fd, it.Size); err != nil {
			it.Err = "reading: " + errString(err)
			return w.emit(it)
		}
	}
	if err := w.attrs(&it, xattr.OfFD(fd)); err != nil {
		return err
	}
	return w.emit(it)
}

func openFile(dirfd int, name string) (int, error) {
	// O_NONBLOCK: never hang on a FIFO that replaced the file since lstat.
	flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
	noatime := true
	for {
		f := flags
		if noatime {
			f |= unix.O_NOATIME
		}
		fd, err := unix.Openat(dirfd, name, f, 0)
		switch {
		case err == unix.EINTR:
		case err == unix.EPERM && noatime:
			noatime = false // O_NOATIME needs ownership or CAP_FOWNER
		default:
			return fd, err
		}
	}
}

// hashFD digests the content of the regular file open as fd, whose size was
// size when it was stat'ed.
func hashFD(fd int, size int64) ([16]byte, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	h := sha256.New()
	var total int64
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return [16]byte{}, err
		}
		if n == 0 {
			break
		}
		h.Write(buf[:n])
		total += int64(n)
		if n < len(buf) && total == size {
			break // a short read of exactly the stat'ed size: skip the EOF read
		}
	}
	var d [16]byte
	var sum [sha256.Size]byte
	copy(d[:], h.Sum(sum[:0]))
	return d, nil
}

// other handles symlinks, FIFOs, devices and sockets.
func (w *walker) other(parent *dirHandle, name string, it Item) error {
	if it.Kind == tree.KindSymlink {
		t, err := readlinkat(parent.fd, name, it.Size)
		if err != nil {
			it.Err = errString(err)
			return w.emit(it)
		}
		it.Target = t
		it.OwnerUnknown = w.fakeSuper
	}
	if w.xattrs || w.fakeSuper {
		// There is no *at xattr call: go by path, through /proc when the
		// path is too long for the kernel.
		p := parent.path + "/" + name
		if len(p) >= unix.PathMax-1 {
			p = "/proc/self/fd/" + strconv.Itoa(parent.fd) + "/" + name
		}
		if err := w.attrs(&it, xattr.OfLink(p)); err != nil {
			return err
		}
	}
	return w.emit(it)
}

func readlinkat(dirfd int, name string, size int64) (string, error) {
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
		n *= 2
	}
}

// compared reports whether xattr name is one verify compares.
func compared(name string) bool {
	switch {
	case strings.HasPrefix(name, "user."):
		return !strings.HasPrefix(name, PrivateXattrPrefix)
	case strings.HasPrefix(name, "security."):
		return true
	case name == "system.posix_acl_access", name == "system.posix_acl_default":
		return true
	}
	return false
}

// attrs fills it.Xattrs (when wanted) and applies user.georep.stat (when
// honoured). Problems are recorded in it.Err; the error result is only for
// aborting the walk, which this never does today.
func (w *walker) attrs(it *Item, x xattr.Source) error {
	if !w.xattrs && !w.fakeSuper {
		return nil
	}
	var stat []byte
	if w.xattrs {
		names, err := x.Names()
		if err != nil {
			if !xattr.Absent(err) {
				it.Err = "listing xattrs: " + errString(err)
			}
			return nil
		}
		for _, n := range names {
			wantStat := w.fakeSuper && n == FakeStatXattr
			if !compared(n) && !wantStat {
				continue
			}
			v, err := x.Value(n)
			if err != nil {
				if err == unix.ENODATA {
					continue // removed meanwhile
				}
				it.Err = "reading xattr " + n + ": " + errString(err)
				return nil
			}
			if wantStat {
				stat = v
				continue
			}
			if it.Xattrs == nil {
				it.Xattrs = make(map[string][]byte)
			}
			it.Xattrs[n] = v
		}
	} else {
		v, err := x.Value(FakeStatXattr)
		switch {
		case err == nil:
			stat = v
		case !xattr.Absent(err):
			it.Err = "reading xattr " + FakeStatXattr + ": " + errString(err)
			return nil
		}
	}
	if stat != nil {
		if err := applyFakeStat(it, string(stat)); err != nil {
			it.Err = err.Error()
		}
	}
	return nil
}

// applyFakeStat overrides it with the values stored in user.georep.stat. The
// kind is overridden only for a regular file standing in for a special file
// (or when it already agrees); the stand-in's size is kept, so a non-empty
// stand-in shows as a "size" difference.
func applyFakeStat(it *Item, s string) error {
	kind, mode, rdev, uid, gid, err := DecodeFakeStat(s)
	if err != nil {
		return err
	}
	if kind != it.Kind {
		if it.Kind != tree.KindRegular || kind == tree.KindDir || kind == tree.KindSymlink {
			return fmt.Errorf("%s says %s but the file is a %s", FakeStatXattr, kind, it.Kind)
		}
		it.Kind = kind
		it.Hash = [16]byte{}
	}
	it.Mode, it.UID, it.GID = mode, uid, gid
	it.Rdev = 0
	if kind == tree.KindChar || kind == tree.KindBlock {
		it.Rdev = rdev
	}
	return nil
}
