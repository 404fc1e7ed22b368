package secondary

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/tree"
	"golang.org/x/sys/unix"
)

// Confinement: every path the agent opens goes through openat2 with
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS from the root
// descriptor, and every name from the primary is a single component checked
// by tree.ValidName, used only with *at() calls that do not follow a final
// symlink. So no name, "..", or symlink planted on the secondary can make
// the agent touch anything outside its root.

// ErrReserved reports an attempt to touch georep's private area.
var ErrReserved = errors.New("name is reserved for georep's index (.georep at the root)")

// ErrBadName reports a name that cannot be a directory entry.
var ErrBadName = errors.New("invalid entry name (empty, '.', '..', '/' or NUL inside, or longer than 255 bytes)")

func openBeneath(dirfd int, rel string, flags int) (int, error) {
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := unix.Openat2(dirfd, rel, &how)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		return fd, err
	}
}

// openRel opens rel, a path from the root that dirPath gives: one in the
// staging area is resolved from the staging area's descriptor (not through
// the name .georep, which a local user may have swapped).
func (a *Agent) openRel(rel string, flags int) (int, error) {
	if rel == tmpDir {
		return openBeneath(a.tmpFD, ".", flags)
	}
	if r, ok := strings.CutPrefix(rel, tmpDir+"/"); ok {
		return openBeneath(a.tmpFD, r, flags)
	}
	return openBeneath(a.rootFD, rel, flags)
}

// checkName validates a name coming from the primary for slot s.
func (a *Agent) checkName(s tree.Slot) error {
	if !tree.ValidName(s.Name) {
		return fmt.Errorf("%q: %w", s.Name, ErrBadName)
	}
	if s.Parent == a.rootID && s.Name == metaDir {
		return ErrReserved
	}
	return nil
}

// dirFD returns a descriptor of the directory id (O_PATH is not enough for
// *at() calls that create entries, so it is a real O_RDONLY descriptor).
// Descriptors are cached: a directory descriptor stays right across renames.
func (a *Agent) dirFD(id fileid.ID) (int, error) {
	if id == a.rootID {
		return a.rootFD, nil
	}
	gen := a.dirGen.Load()
	a.fdMu.Lock()
	if c, ok := a.fdCache[id]; ok {
		// Checked since the last message arrived: still good.
		if c.gen == gen {
			a.fdMu.Unlock()
			return c.fd, nil
		}
		// Once per message, a cached descriptor is checked to be still
		// the directory its path beneath the root leads to: one removed,
		// or moved out of the root by a local user, is not written in.
		if a.sameAsPath(id, c.fd) {
			a.fdCache[id] = cachedDir{fd: c.fd, gen: gen}
			a.fdMu.Unlock()
			return c.fd, nil
		}
		a.graveyard = append(a.graveyard, c.fd)
		delete(a.fdCache, id)
	}
	a.fdMu.Unlock()
	if _, known := a.idx.dir(id); !known {
		return -1, fmt.Errorf("directory %s: %w", id.Short(), errUnknownDir)
	}
	fd, err := a.openDir(id)
	if err != nil {
		// The index may be stale after a crash or a change made behind our
		// back: re-derive directory records from the tree once.
		if rerr := a.reindexDirs(); rerr != nil {
			return -1, fmt.Errorf("%v (reindex: %v)", err, rerr)
		}
		fd, err = a.openDir(id)
		if err != nil {
			return -1, err
		}
	}
	a.fdMu.Lock()
	if len(a.fdCache) >= 512 {
		for k, v := range a.fdCache {
			a.graveyard = append(a.graveyard, v.fd)
			delete(a.fdCache, k)
			if len(a.fdCache) < 384 {
				break
			}
		}
	}
	a.fdCache[id] = cachedDir{fd: fd, gen: gen}
	a.fdMu.Unlock()
	return fd, nil
}

// sameAsPath reports whether fd is the live directory that id's path in the
// index resolves to beneath the root.
func (a *Agent) sameAsPath(id fileid.ID, fd int) bool {
	p, err := a.idx.dirPath(id)
	if err != nil {
		return false
	}
	pfd, err := a.openRel(p, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return false
	}
	defer unix.Close(pfd)
	var have, want unix.Stat_t
	if unix.Fstat(fd, &have) != nil || unix.Fstat(pfd, &want) != nil {
		return false
	}
	return have.Nlink > 0 && have.Ino == want.Ino && have.Dev == want.Dev
}

// cachedDir is a cached directory descriptor and the dirGen at which it
// was last known to name a live directory.
type cachedDir struct {
	fd  int
	gen uint64
}

// Cached descriptors are handed out without reference counts, so one that
// leaves the cache may still be in use by the op (or the file writes) that
// got it: it goes to the graveyard, closed only when no work is running.

func (a *Agent) forgetFD(id fileid.ID) {
	a.fdMu.Lock()
	if c, ok := a.fdCache[id]; ok {
		a.graveyard = append(a.graveyard, c.fd)
		delete(a.fdCache, id)
	}
	a.fdMu.Unlock()
}

func (a *Agent) forgetAllFDs() {
	a.fdMu.Lock()
	for k, v := range a.fdCache {
		a.graveyard = append(a.graveyard, v.fd)
		delete(a.fdCache, k)
	}
	a.fdMu.Unlock()
}

// buryFDs closes the descriptors that left the cache. Call it only when no
// operation or file write is running.
func (a *Agent) buryFDs() {
	a.fdMu.Lock()
	for _, fd := range a.graveyard {
		unix.Close(fd)
	}
	a.graveyard = a.graveyard[:0]
	a.fdMu.Unlock()
}

func (a *Agent) openDir(id fileid.ID) (int, error) {
	rec, ok := a.idx.dir(id)
	if !ok {
		return -1, fmt.Errorf("directory %s: %w", id.Short(), errUnknownDir)
	}
	p, err := a.idx.dirPath(id)
	if err != nil {
		return -1, err
	}
	fd, err := a.openRel(p, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return -1, fmt.Errorf("open directory %s (%q): %w", id.Short(), p, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Ino != rec.ino {
		unix.Close(fd)
		return -1, fmt.Errorf("directory %s: %q is another directory now: %w", id.Short(), p, errUnknownDir)
	}
	return fd, nil
}

// slotFD returns the parent descriptor for a slot after validating the name.
func (a *Agent) slotFD(s tree.Slot) (int, error) {
	if err := a.checkName(s); err != nil {
		return -1, err
	}
	return a.dirFD(s.Parent)
}

// statAt lstat()s a name in a directory.
func statAt(dirfd int, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	return st, err
}

func errno(err error) uint32 {
	var e unix.Errno
	if errors.As(err, &e) {
		return uint32(e)
	}
	return 0
}

// ErrNotRegular reports file content asked of (or sent for) something in
// the index that is not a regular file: a device node, a FIFO, a socket or
// a symlink is never read or written as content.
var ErrNotRegular = errors.New("not a regular file")

// openContent opens name beneath dirfd to read or write file content. The
// entry is first opened O_PATH (which opens no device and never blocks on
// a FIFO) without following any symlink; only once fstat shows a regular
// file is it reopened, as that same inode, with flags. Every content read
// or write in the agent goes through here.
func openContent(dirfd int, name string, flags int) (*os.File, unix.Stat_t, error) {
	var st unix.Stat_t
	pfd, err := openBeneath(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return nil, st, err
	}
	defer unix.Close(pfd)
	if err := unix.Fstat(pfd, &st); err != nil {
		return nil, st, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, st, fmt.Errorf("%w (%s)", ErrNotRegular, tree.KindOf(st.Mode))
	}
	var fd int
	for {
		fd, err = unix.Open(procPath(pfd), flags|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		return nil, st, err
	}
	var st2 unix.Stat_t
	if err := unix.Fstat(fd, &st2); err != nil || st2.Ino != st.Ino || st2.Dev != st.Dev || st2.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, st, fmt.Errorf("%w (changed while opened)", ErrNotRegular)
	}
	return os.NewFile(uintptr(fd), name), st2, nil
}
