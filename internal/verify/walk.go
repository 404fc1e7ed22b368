package verify

import (
	"context"
	"crypto/sha256"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/georep/georep/internal/tree"
	"github.com/georep/georep/internal/xattr"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// Walk is the tree walk behind every verify listing: the local Source here
// and the secondary's verify service (internal/secondary) both run it, each
// turning its entries into its own items.
//
// It reads directories and hashes files in parallel with a bounded number
// of goroutines, works relative to directory descriptors (lstat semantics,
// symlinks never followed, names may hold any byte but '/' and NUL, depth
// not limited by PATH_MAX), and hands a path that vanishes or cannot be
// read mid-walk to the visitor as an Item with Err set.
type Walk struct {
	// Open opens name beneath dirfd (flags as for openat; a final symlink
	// must not be followed). nil: openat(2).
	Open func(dirfd int, name string, flags int) (int, error)
	// RootPath is the root's path: the attributes of entries that are
	// never opened (symlinks, FIFOs, devices) are read by path under it,
	// or through /proc/self/fd when it is "" or the path is too long.
	RootPath string
	// RootLabel names the root in the error when it cannot be read.
	RootLabel string
	// Excludes says which entries are left out, with everything under
	// them (nil: none).
	Excludes *Exclusions
	// HashJobs bounds the files hashed at once (0: a default fitted to the
	// machine).
	HashJobs int
	// Hashed, when set, counts the bytes read for hashes.
	Hashed *atomic.Int64
}

// WalkEntry is one path of a walk.
type WalkEntry struct {
	// Item holds the entry's lstat (a regular file's from its open
	// descriptor, so metadata and content agree), the Hash of a regular
	// file, the Target of a symlink, or Err. Xattrs are left to the visitor.
	Item Item
	// Hashed: Item.Hash is the digest of the content.
	Hashed bool
	// Attrs reads the entry's attributes during the visit; HasAttrs is
	// false when the entry could not be opened or read (Item.Err is set).
	Attrs    xattr.Source
	HasAttrs bool
}

// Run walks the tree of the open directory rootFD (which it closes) and
// calls visit for every entry below it, from several goroutines at once.
// Only a root that cannot be read, a cancelled ctx or an error from visit
// make it fail.
func (wk Walk) Run(ctx context.Context, rootFD int, visit func(*WalkEntry) error) error {
	if wk.Open == nil {
		wk.Open = openat
	}
	jobs := wk.HashJobs
	if jobs <= 0 {
		jobs = 2*runtime.GOMAXPROCS(0) + 2
	}
	g, gctx := errgroup.WithContext(ctx)
	w := &walker{Walk: wk, ctx: gctx, g: g, visit: visit,
		dirSem:  make(chan struct{}, 2*runtime.GOMAXPROCS(0)+2),
		hashSem: make(chan struct{}, jobs)}
	root := &dirHandle{fd: rootFD, path: wk.RootPath}
	root.acquire()
	g.Go(func() error {
		defer root.release()
		return w.readDir(root, "")
	})
	return g.Wait()
}

type walker struct {
	Walk
	ctx     context.Context
	g       *errgroup.Group
	dirSem  chan struct{}
	hashSem chan struct{}
	visit   func(*WalkEntry) error
}

// dirHandle is an open directory shared by the jobs that work on its entries;
// the last one to release it closes it.
type dirHandle struct {
	fd   int
	path string // "" when the walk has no root path
	refs atomic.Int32
}

func (h *dirHandle) acquire() { h.refs.Add(1) }
func (h *dirHandle) release() {
	if h.refs.Add(-1) == 0 {
		unix.Close(h.fd)
	}
}

func openat(dirfd int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

func (w *walker) failed(it Item) error { return w.visit(&WalkEntry{Item: it}) }

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
			return fmt.Errorf("read %s: %w", w.RootLabel, err)
		}
		return w.failed(Item{Path: rel, Err: "reading directory: " + errString(err)})
	}
	for _, name := range names {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		if !tree.ValidName(name) {
			continue
		}
		crel := join(rel, name)
		if crel == AlwaysExcluded {
			continue
		}
		var st unix.Stat_t
		if err := fstatat(h.fd, name, &st); err != nil {
			if err := w.failed(Item{Path: crel, Err: errString(err)}); err != nil {
				return err
			}
			continue
		}
		it := itemOf(crel, &st)
		if w.Excludes.Skip(crel, it.Kind == tree.KindDir) {
			continue
		}
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

const readBufSize = 256 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

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

// dir opens the subdirectory name of parent, visits it and reads it. It
// takes over a reference to parent, released once the subdirectory is open.
func (w *walker) dir(parent *dirHandle, name string, it Item) error {
	fd, err := w.Open(parent.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
	path := ""
	if parent.path != "" {
		path = parent.path + "/" + name
	}
	parent.release()
	if err != nil {
		it.Err = errString(err)
		return w.failed(it)
	}
	h := &dirHandle{fd: fd, path: path}
	h.acquire()
	defer h.release()
	if err := w.visit(&WalkEntry{Item: it, Attrs: xattr.OfFD(fd), HasAttrs: true}); err != nil {
		return err
	}
	return w.readDir(h, it.Path)
}

// file opens, re-stats (the descriptor's view wins, so metadata and content
// agree) and hashes the regular file name of parent, and visits it.
func (w *walker) file(parent *dirHandle, name string, it Item) error {
	fd, err := w.openFile(parent.fd, name)
	if err != nil {
		it.Err = errString(err)
		return w.failed(it)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		it.Err = errString(err)
		return w.failed(it)
	}
	it = itemOf(it.Path, &st)
	hashed := false
	if it.Kind == tree.KindRegular {
		var n int64
		it.Hash, n, err = hashFD(fd, it.Size)
		if w.Hashed != nil {
			w.Hashed.Add(n)
		}
		if err != nil {
			it.Err = "reading: " + errString(err)
			return w.failed(it)
		}
		hashed = true
	}
	return w.visit(&WalkEntry{Item: it, Hashed: hashed, Attrs: xattr.OfFD(fd), HasAttrs: true})
}

func (w *walker) openFile(dirfd int, name string) (int, error) {
	// O_NONBLOCK: never hang on a FIFO that replaced the file since lstat.
	flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK
	fd, err := w.Open(dirfd, name, flags|unix.O_NOATIME)
	if err == unix.EPERM {
		fd, err = w.Open(dirfd, name, flags) // O_NOATIME needs ownership or CAP_FOWNER
	}
	return fd, err
}

// hashFD digests the content of the regular file open as fd, whose size was
// size when it was stat'ed: the first 16 bytes of NewDigest's sum. It
// returns the bytes read.
func hashFD(fd int, size int64) ([16]byte, int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	h := NewDigest()
	var total int64
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return [16]byte{}, total, err
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
	return d, total, nil
}

// other visits symlinks, FIFOs, devices and sockets, which are never
// opened: their attributes are read by path.
func (w *walker) other(parent *dirHandle, name string, it Item) error {
	if it.Kind == tree.KindSymlink {
		t, err := readlinkat(parent.fd, name, it.Size)
		if err != nil {
			it.Err = errString(err)
			return w.failed(it)
		}
		it.Target = t
	}
	// There is no *at xattr call: go by path, through /proc when there is
	// no root path or the path is too long for the kernel.
	p := parent.path + "/" + name
	if parent.path == "" || len(p) >= unix.PathMax-1 {
		p = "/proc/self/fd/" + strconv.Itoa(parent.fd) + "/" + name
	}
	return w.visit(&WalkEntry{Item: it, Attrs: xattr.OfLink(p), HasAttrs: true})
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
		if n >= 1<<20 {
			return "", unix.ENAMETOOLONG
		}
		n *= 2
	}
}
