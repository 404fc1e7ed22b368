package secondary

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/georep/georep/internal/fileid"
	"golang.org/x/sys/unix"
)

// Layout of the private area at the secondary root:
//
//	.georep/root          the primary root's ID (the secondary root stands for it)
//	.georep/stime         the last stime the primary committed
//	.georep/ids/XX/ID     a hardlink of every non-directory georep made
//	.georep/dirs/XX/ID    a symlink per directory: "ino parentID hex(name)"
//	.georep/tmp/          staging: entries between two places, files being written
//
// The hardlinks make the kernel keep the ID → inode mapping crash-consistent
// by itself; directory records carry the inode so a stale record is noticed
// and repaired from the tree.
const (
	metaDir    = ".georep"
	idsDir     = ".georep/ids"
	dirsDir    = ".georep/dirs"
	tmpDir     = ".georep/tmp"
	rootIDFile = ".georep/root"
	stimeFile  = ".georep/stime"
)

// stagedParent marks a directory record that sits in the staging area.
const stagedParent fileid.ID = "staged"

// idName is the file name used for an ID in the index and staging area.
func idName(id fileid.ID) string {
	if len(id) <= 200 {
		return string(id)
	}
	h := sha256.Sum256([]byte(id))
	return "h" + hex.EncodeToString(h[:])
}

func shard(id fileid.ID) string {
	n := idName(id)
	return n[len(n)-2:]
}

func fileIndexPath(id fileid.ID) string { return idsDir + "/" + shard(id) + "/" + idName(id) }
func dirIndexPath(id fileid.ID) string  { return dirsDir + "/" + shard(id) + "/" + idName(id) }
func stagePath(id fileid.ID) string     { return tmpDir + "/" + idName(id) }

type dirRec struct {
	ino    uint64
	parent fileid.ID // stagedParent when in the staging area
	name   string
}

// index is the in-memory view of the ID index.
type index struct {
	mu    sync.Mutex
	root  fileid.ID
	byIno map[uint64]fileid.ID
	files map[fileid.ID]uint64 // non-directories: inode
	dirs  map[fileid.ID]*dirRec
	names map[fileid.ID]string // long IDs: index name -> ID is not reversible, keep the ID
}

func newIndex() *index {
	return &index{byIno: map[uint64]fileid.ID{}, files: map[fileid.ID]uint64{}, dirs: map[fileid.ID]*dirRec{}, names: map[fileid.ID]string{}}
}

func encodeDirRec(r *dirRec) string {
	return strconv.FormatUint(r.ino, 10) + " " + string(r.parent) + " " + hex.EncodeToString([]byte(r.name))
}

func decodeDirRec(s string) (*dirRec, error) {
	f := strings.Split(s, " ")
	if len(f) != 3 {
		return nil, fmt.Errorf("bad directory record %q", s)
	}
	ino, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("bad directory record %q", s)
	}
	name, err := hex.DecodeString(f[2])
	if err != nil {
		return nil, fmt.Errorf("bad directory record %q", s)
	}
	parent := fileid.ID(f[1])
	if parent != stagedParent && !parent.Valid() {
		return nil, fmt.Errorf("bad directory record %q", s)
	}
	return &dirRec{ino: ino, parent: parent, name: string(name)}, nil
}

// load reads the index from disk. Unreadable records are reported and
// skipped: the tree walk (List) re-derives what it can.
func (a *Agent) loadIndex() error {
	ix := newIndex()
	ix.root = a.rootID
	var st unix.Stat_t
	if err := unix.Fstat(a.rootFD, &st); err != nil {
		return err
	}
	ix.byIno[st.Ino] = a.rootID
	for _, sub := range []string{idsDir, dirsDir} {
		isDir := sub == dirsDir
		shards, err := readNames(a.rootFD, sub)
		if err != nil {
			return fmt.Errorf("read index %s: %w", sub, err)
		}
		for _, sh := range shards {
			names, err := readNames(a.rootFD, sub+"/"+sh)
			if err != nil {
				return fmt.Errorf("read index %s/%s: %w", sub, sh, err)
			}
			for _, n := range names {
				p := sub + "/" + sh + "/" + n
				if isDir {
					t, err := readlinkAt(a.rootFD, p)
					if err != nil {
						continue
					}
					rec, err := decodeDirRec(t)
					if err != nil {
						a.log.Warn("skipping a bad directory record", "path", p, "err", err)
						continue
					}
					id := fileid.ID(n)
					if !id.Valid() {
						continue
					}
					ix.dirs[id] = rec
					ix.byIno[rec.ino] = id
					continue
				}
				var fst unix.Stat_t
				if err := unix.Fstatat(a.rootFD, p, &fst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
					continue
				}
				id := fileid.ID(n)
				if !id.Valid() {
					continue
				}
				ix.files[id] = fst.Ino
				ix.byIno[fst.Ino] = id
			}
		}
	}
	a.idx = ix
	return nil
}

func readNames(dirfd int, rel string) ([]string, error) {
	fd, err := openBeneath(dirfd, rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, err
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	return f.Readdirnames(-1)
}

func readlinkAt(dirfd int, rel string) (string, error) {
	buf := make([]byte, 8192)
	n, err := unix.Readlinkat(dirfd, rel, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// lookupIno returns the ID of an inode, or "".
func (ix *index) lookupIno(ino uint64) fileid.ID {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.byIno[ino]
}

func (ix *index) dir(id fileid.ID) (dirRec, bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	r, ok := ix.dirs[id]
	if !ok {
		return dirRec{}, false
	}
	return *r, true
}

func (ix *index) file(id fileid.ID) (uint64, bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ino, ok := ix.files[id]
	return ino, ok
}

// dirPath returns the path of directory id relative to the root.
func (ix *index) dirPath(id fileid.ID) (string, error) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	var parts []string
	cur := id
	for depth := 0; ; depth++ {
		if cur == ix.root {
			break
		}
		if depth > 4096 {
			return "", fmt.Errorf("directory %s: parent chain too deep or cyclic", id.Short())
		}
		r, ok := ix.dirs[cur]
		if !ok {
			return "", fmt.Errorf("directory %s: %w", cur.Short(), errUnknownDir)
		}
		if r.parent == stagedParent {
			parts = append(parts, stagePath(cur))
			break
		}
		parts = append(parts, r.name)
		cur = r.parent
	}
	if len(parts) == 0 {
		return ".", nil
	}
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return strings.Join(parts, "/"), nil
}

var errUnknownDir = errors.New("directory not in the secondary's index")
