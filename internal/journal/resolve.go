package journal

import (
	"encoding/binary"
	"errors"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/georep/georep/internal/fileid"
	"golang.org/x/sys/unix"
)

// dirEntry is what the processor knows about one directory.
type dirEntry struct {
	roots uint64 // bit i set: the directory is root i or lies beneath it (and is not excluded)
	stale bool   // the directory no longer exists: its events are dropped
	// exclNames lists the names in this directory whose full path is an
	// excluded path (rare: only the parents of excluded paths have any).
	exclNames []string
	id        fileid.ID // hex ID, filled when the directory is inside a root
	// path is the canonical path when known ("" after a walk-up or a
	// failed resolution); it is right until the next directory rename,
	// which drops the whole cache.
	path string
}

// maxCacheEntries bounds the directory cache; when full it starts over.
const maxCacheEntries = 1 << 17

// excludedName reports whether name in d is an excluded path.
func (d *dirEntry) excludedName(name []byte) bool {
	for _, n := range d.exclNames {
		if n == string(name) {
			return true
		}
	}
	return false
}

// within reports whether path p is dir or lies beneath it, comparing whole
// components (/a/bc is not within /a/b).
func within(p, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == dir || len(p) > len(dir) && p[len(dir)] == '/' && p[:len(dir)] == dir
}

// classify computes the roots mask and the excluded names of the directory
// at canonical path p.
func (j *Journal) classify(p string) (uint64, []string) {
	for _, e := range j.excludes {
		if within(p, e) {
			return 0, nil
		}
	}
	var mask uint64
	for i, r := range j.roots {
		if within(p, r.path) {
			mask |= 1 << uint(i)
		}
	}
	if mask == 0 {
		return 0, nil
	}
	var names []string
	for _, e := range j.excludes {
		if filepath.Dir(e) == p && e != p {
			names = append(names, filepath.Base(e))
		}
	}
	return mask, names
}

// lookupDir returns the cache entry of the directory with identity key key,
// resolving it on a miss.
func (p *processor) lookupDir(key []byte) *dirEntry {
	if d, ok := p.cache[string(key)]; ok {
		return d
	}
	j := p.j
	d := &dirEntry{}
	if len(key) < 12 || [8]byte(key[:8]) != [8]byte(j.fsid) {
		// Another filesystem id (e.g. a btrfs subvolume of the same
		// superblock): never one of our roots.
	} else {
		roots, excl, path, err := p.resolve(key)
		d.path = path
		switch {
		case errors.Is(err, fileid.ErrStale):
			d.stale = true
		case err != nil:
			// Unknown: keep the events for every root (a spurious record is
			// harmless, a missing one is not).
			j.log.Warn("journal: cannot resolve a directory; keeping its events for every root", "id", fileid.ID(hexKey(key)).Short(), "err", err)
			d.roots = j.allRoots
		default:
			d.roots, d.exclNames = roots, excl
		}
	}
	if d.roots != 0 {
		d.id = fileid.ID(hexKey(key))
	}
	if len(p.cache) >= maxCacheEntries {
		clear(p.cache)
		j.st.cacheClears.Add(1)
	}
	p.cache[string(key)] = d
	j.st.resolves.Add(1)
	return d
}

// learnDir caches what an entry event tells about the directory key: it is
// named name in parent, as of this point of the event stream. That is more
// accurate than resolving it later (by then it may have moved or gone), and
// lets the events inside a directory that was created (or moved in) and
// removed before the processor got to them be kept.
func (p *processor) learnDir(key []byte, parent *dirEntry, name []byte) {
	if _, ok := p.cache[string(key)]; ok || parent.stale {
		return
	}
	d := &dirEntry{}
	switch {
	case parent.path != "":
		d.path = parent.path + "/" + string(name)
		if parent.path == "/" {
			d.path = "/" + string(name)
		}
		d.roots, d.exclNames = p.j.classify(d.path)
	case parent.excludedName(name):
	default:
		d.roots = parent.roots
	}
	if d.roots != 0 {
		d.id = fileid.ID(hexKey(key))
	}
	if len(p.cache) >= maxCacheEntries {
		p.clearCache()
	}
	p.cache[string(key)] = d
}

// resolve classifies the directory with identity key key by its canonical
// path (as seen through the mount of the first root), or returns
// fileid.ErrStale when it no longer exists.
func (p *processor) resolve(key []byte) (roots uint64, exclNames []string, path string, err error) {
	j := p.j
	typ := int32(binary.LittleEndian.Uint32(key[8:12]))
	fd, err := unix.OpenByHandleAt(j.mountFD, unix.NewFileHandle(typ, key[12:]), unix.O_PATH|unix.O_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.ESTALE) || errors.Is(err, unix.ENOENT) {
			return 0, nil, "", fileid.ErrStale
		}
		return 0, nil, "", err
	}
	defer unix.Close(fd)
	n, err := unix.Readlink("/proc/self/fd/"+strconv.Itoa(fd), p.linkBuf)
	if err == nil && n < len(p.linkBuf) && n > 0 && p.linkBuf[0] == '/' {
		path := string(p.linkBuf[:n])
		if strings.HasSuffix(path, " (deleted)") {
			var st unix.Stat_t
			if unix.Fstat(fd, &st) == nil && st.Nlink == 0 {
				return 0, nil, "", fileid.ErrStale
			}
		}
		roots, excl := j.classify(path)
		return roots, excl, path, nil
	}
	// The path is too long for readlink, or unreachable from the mount:
	// walk up by "..", matching directory identities against the roots.
	roots, err = p.walkUp(fd)
	return roots, nil, "", err
}

// walkUp finds which roots contain the directory open at fd by climbing its
// ancestors and comparing identities with those of the roots and of the
// excluded paths.
func (p *processor) walkUp(fd int) (uint64, error) {
	j := p.j
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	if st.Nlink == 0 {
		return 0, fileid.ErrStale
	}
	dev := st.Dev
	cur, err := unix.Dup(fd)
	if err != nil {
		return 0, err
	}
	defer func() { unix.Close(cur) }()
	var roots uint64
	for depth := 0; depth < 8192; depth++ {
		h, _, err := unix.NameToHandleAt(cur, "", unix.AT_EMPTY_PATH)
		if err != nil {
			return 0, err
		}
		k := string(fsKey(j.fsid, h.Type(), h.Bytes()))
		if _, ok := j.excludeKeys[k]; ok {
			return 0, nil
		}
		if i, ok := j.rootKeys[k]; ok {
			roots |= 1 << uint(i)
		}
		parent, err := unix.Openat(cur, "..", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return 0, err
		}
		var ps, cs unix.Stat_t
		if unix.Fstat(parent, &ps) != nil || unix.Fstat(cur, &cs) != nil || ps.Dev != dev || ps.Ino == cs.Ino {
			unix.Close(parent)
			break
		}
		unix.Close(cur)
		cur = parent
	}
	return roots, nil
}

// fsKey is the identity key of a handle on the filesystem with id fsid (as
// fileid.FSIDOf returns it).
func fsKey(fsid fileid.FSID, typ int32, handle []byte) []byte {
	b := make([]byte, 0, 12+len(handle))
	b = append(b, fsid[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(typ))
	return append(b, handle...)
}

const hexDigits = "0123456789abcdef"

// hexKey hex-encodes an identity key: it is then a fileid.ID.
func hexKey(k []byte) string {
	b := make([]byte, 2*len(k))
	for i, c := range k {
		b[2*i] = hexDigits[c>>4]
		b[2*i+1] = hexDigits[c&15]
	}
	return string(b)
}
