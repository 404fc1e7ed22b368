// Package scan owns walking a local tree: parallel directory reads, statx and
// name_to_handle_at per entry, producing tree.Entries keyed by file identity.
// The primary's crawl and the one-shot sync use it; it never follows symlinks
// and never crosses into another filesystem.
package scan

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/filter"
	"github.com/georep/georep/internal/tree"
	"golang.org/x/sys/unix"
)

// Options tune a walk.
type Options struct {
	// Filter says which entries are skipped, with everything below them
	// (rsync's exclude rules); georep's private top-level ".georep" always
	// is. FilterBase is the walk root's path relative to the filter's root
	// ("" when the walk starts there), so that a subtree walk applies the
	// same anchored rules.
	Filter     *filter.Filter
	FilterBase string
	// ExcludePaths lists absolute paths whose subtrees are skipped (the state
	// dir when it lies inside the root).
	ExcludePaths []string
	// Workers is the number of directories read in parallel (default 2×CPUs).
	Workers int
	// OnMountPoint is called for each directory on another filesystem that
	// the walk does not enter.
	OnMountPoint func(path string)
	// OnError is called for an entry that vanished or could not be read; the
	// walk goes on. If nil, such errors end the walk.
	OnError func(path string, err error)
}

// Result is a whole walk.
type Result struct {
	Root    tree.Entry   // the root directory itself (Slot empty)
	Entries []tree.Entry // every entry below the root, parents before children within a directory's subtree not guaranteed
	FSID    fileid.FSID
	Dirs    int
	// Unreadable lists directories the walk could not read (EACCES): their
	// content is unknown, which is not the same as empty.
	Unreadable []Unreadable
}

// Unreadable is a directory whose content could not be listed.
type Unreadable struct {
	ID   fileid.ID
	Path string // relative to the root
	Err  error
}

// Stat describes one file by its directory fd and name, as the walk does.
func Stat(fsid fileid.FSID, dirfd int, name string) (tree.Entry, error) {
	var e tree.Entry
	var st unix.Statx_t
	flags := unix.AT_SYMLINK_NOFOLLOW | unix.AT_STATX_SYNC_AS_STAT
	if name == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	if err := unix.Statx(dirfd, name, flags, unix.STATX_BASIC_STATS, &st); err != nil {
		return e, fmt.Errorf("statx %q: %w", name, err)
	}
	id, err := fileid.Of(fsid, dirfd, name)
	if err != nil {
		return e, err
	}
	e.Name = name
	e.ID = id
	fill(&e, &st)
	if e.Kind == tree.KindSymlink {
		t, err := readlinkat(dirfd, name)
		if err != nil {
			return e, err
		}
		e.Target = t
	}
	return e, nil
}

func fill(e *tree.Entry, st *unix.Statx_t) {
	e.Kind = tree.KindOf(uint32(st.Mode))
	e.Meta = tree.Meta{
		Mode:  uint32(st.Mode) & 07777,
		UID:   st.Uid,
		GID:   st.Gid,
		Atime: st.Atime.Sec*1e9 + int64(st.Atime.Nsec),
		Mtime: st.Mtime.Sec*1e9 + int64(st.Mtime.Nsec),
	}
	e.Size = int64(st.Size)
	e.Ctime = st.Ctime.Sec*1e9 + int64(st.Ctime.Nsec)
	e.Nlink = st.Nlink
	e.Ino = st.Ino
	if e.Kind == tree.KindChar || e.Kind == tree.KindBlock {
		e.Rdev = unix.Mkdev(st.Rdev_major, st.Rdev_minor)
	}
}

func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", fmt.Errorf("readlink %q: %w", name, err)
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

type dirJob struct {
	rel string    // path relative to root ("" for the root)
	id  fileid.ID // the directory's ID
}

// Walk lists the tree under root.
func Walk(ctx context.Context, root string, opts Options) (*Result, error) {
	rootFD, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open source root %s: %w", root, err)
	}
	defer unix.Close(rootFD)
	fsid, err := fileid.FSIDOf(rootFD)
	if err != nil {
		return nil, err
	}
	var rootSt unix.Stat_t
	if err := unix.Fstat(rootFD, &rootSt); err != nil {
		return nil, fmt.Errorf("stat %s: %w", root, err)
	}
	rootEntry, err := Stat(fsid, rootFD, "")
	if err != nil {
		return nil, fmt.Errorf("source root %s: %w", root, err)
	}
	res := &Result{Root: rootEntry, FSID: fsid}
	excludeTop := map[string]bool{".georep": true}
	if opts.FilterBase != "" {
		excludeTop = nil // not the root of the tree
	}
	absRoot, _ := filepath.Abs(root)
	excludeRel := map[string]bool{}
	for _, p := range opts.ExcludePaths {
		if rel, err := filepath.Rel(absRoot, p); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
			excludeRel[rel] = true
		}
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = 2 * runtime.GOMAXPROCS(0)
	}

	var (
		mu      sync.Mutex
		cond    = sync.NewCond(&mu)
		queue   = []dirJob{{rel: "", id: rootEntry.ID}}
		pending = 1 // jobs queued or running
		firstEr error
		all     [][]tree.Entry
	)
	fail := func(err error) {
		mu.Lock()
		if firstEr == nil {
			firstEr = err
		}
		mu.Unlock()
		cond.Broadcast()
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []tree.Entry
			defer func() {
				mu.Lock()
				all = append(all, local)
				mu.Unlock()
			}()
			for {
				mu.Lock()
				for len(queue) == 0 && pending > 0 && firstEr == nil {
					cond.Wait()
				}
				if firstEr != nil || (len(queue) == 0 && pending == 0) {
					mu.Unlock()
					return
				}
				job := queue[len(queue)-1]
				queue = queue[:len(queue)-1]
				mu.Unlock()
				if err := ctx.Err(); err != nil {
					fail(err)
					return
				}
				entries, subdirs, err := readDir(rootFD, fsid, rootSt.Dev, job, excludeTop, excludeRel, opts)
				if err != nil && errors.Is(err, unix.EACCES) {
					mu.Lock()
					res.Unreadable = append(res.Unreadable, Unreadable{ID: job.id, Path: job.rel, Err: err})
					mu.Unlock()
					err = nil
				}
				if err != nil {
					if opts.OnError != nil && isVanished(err) {
						opts.OnError(filepath.Join(root, job.rel), err)
					} else {
						fail(err)
						return
					}
				}
				local = append(local, entries...)
				mu.Lock()
				queue = append(queue, subdirs...)
				pending += len(subdirs) - 1
				res.Dirs++
				mu.Unlock()
				cond.Broadcast()
			}
		}()
	}
	wg.Wait()
	if firstEr != nil {
		return nil, firstEr
	}
	n := 0
	for _, l := range all {
		n += len(l)
	}
	res.Entries = make([]tree.Entry, 0, n)
	for _, l := range all {
		res.Entries = append(res.Entries, l...)
	}
	return res, nil
}

func isVanished(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ESTALE)
}

// OpenDirAt opens the directory at rel below rootFD without following
// symlinks in any component. Long paths are walked component by component.
func OpenDirAt(rootFD int, rel string) (int, error) {
	if rel == "" {
		return unix.Dup(rootFD)
	}
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_XDEV}
	if len(rel) < 3500 {
		fd, err := unix.Openat2(rootFD, rel, &how)
		if err == nil || !errors.Is(err, unix.ENAMETOOLONG) {
			if err != nil {
				return -1, fmt.Errorf("open directory %q: %w", rel, err)
			}
			return fd, nil
		}
	}
	fd, err := unix.Dup(rootFD)
	if err != nil {
		return -1, err
	}
	for _, comp := range strings.Split(rel, "/") {
		nfd, err := unix.Openat2(fd, comp, &how)
		unix.Close(fd)
		if err != nil {
			return -1, fmt.Errorf("open directory %q: %w", rel, err)
		}
		fd = nfd
	}
	return fd, nil
}

func readDir(rootFD int, fsid fileid.FSID, dev uint64, job dirJob, excludeTop, excludeRel map[string]bool, opts Options) ([]tree.Entry, []dirJob, error) {
	fd, err := OpenDirAt(rootFD, job.rel)
	if err != nil {
		return nil, nil, err
	}
	f := os.NewFile(uintptr(fd), job.rel)
	defer f.Close()
	var entries []tree.Entry
	var subdirs []dirJob
	for {
		names, err := f.Readdirnames(1024)
		for _, name := range names {
			if job.rel == "" && excludeTop[name] {
				continue
			}
			rel := name
			if job.rel != "" {
				rel = job.rel + "/" + name
			}
			if excludeRel[rel] {
				continue
			}
			var st unix.Statx_t
			if err := unix.Statx(fd, name, unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_SYNC_AS_STAT, unix.STATX_BASIC_STATS, &st); err != nil {
				if opts.OnError != nil && isVanished(err) {
					opts.OnError(rel, err)
					continue
				}
				return nil, nil, fmt.Errorf("statx %q: %w", rel, err)
			}
			e := tree.Entry{Slot: tree.Slot{Parent: job.id, Name: name}}
			fill(&e, &st)
			if !opts.Filter.Empty() {
				frel := rel
				if opts.FilterBase != "" {
					frel = opts.FilterBase + "/" + rel
				}
				if opts.Filter.Excluded(frel, e.Kind == tree.KindDir) {
					continue
				}
			}
			if e.Kind == tree.KindDir && unix.Mkdev(st.Dev_major, st.Dev_minor) != dev {
				if opts.OnMountPoint != nil {
					opts.OnMountPoint(rel)
				}
				continue
			}
			id, err := fileid.Of(fsid, fd, name)
			if err != nil {
				if opts.OnError != nil && isVanished(err) {
					opts.OnError(rel, err)
					continue
				}
				return nil, nil, fmt.Errorf("%s: %w", rel, err)
			}
			e.ID = id
			if e.Kind == tree.KindSymlink {
				t, err := readlinkat(fd, name)
				if err != nil {
					if opts.OnError != nil && isVanished(err) {
						opts.OnError(rel, err)
						continue
					}
					return nil, nil, fmt.Errorf("%s: %w", rel, err)
				}
				e.Target = t
			}
			entries = append(entries, e)
			if e.Kind == tree.KindDir {
				subdirs = append(subdirs, dirJob{rel: rel, id: id})
			}
		}
		if err != nil {
			if err.Error() == "EOF" || errors.Is(err, os.ErrNotExist) || len(names) == 0 {
				break
			}
			return nil, nil, fmt.Errorf("read directory %q: %w", job.rel, err)
		}
	}
	return entries, subdirs, nil
}
