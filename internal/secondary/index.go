package secondary

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/georep/georep/internal/fileid"
	"golang.org/x/sys/unix"
)

// Layout of the private area at the secondary root:
//
//	.georep/root          the primary root's ID (the secondary root stands for it)
//	.georep/stime         the last stime the primary committed
//	.georep/ids/XX/ID     a hardlink of every non-directory georep made
//	.georep/dirs/XX/ID    a symlink per directory: "ino parentID hex(name) [handle]"
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
	// Names inside .georep, used with the descriptor of .georep (metaFD).
	rootIDName = "root"
	stimeName  = "stime"
	lockName   = "lock"
)

// ErrForeignIndex reports a .georep (or a directory in it) that is not the
// agent's own: owned by another user, or one that others may write in.
var ErrForeignIndex = errors.New("georep's index directory is not the agent's own")

// openMeta opens .georep and its ids/, dirs/ and tmp/ beneath the root
// (creating them when create is set), each without following a symlink and
// checked to belong to the agent's user with no group or other write
// permission (a writing session repairs the mode of its own directories).
// A read-only session on a root georep never wrote gets none of them.
func (a *Agent) openMeta(create bool) error {
	if a.metaFD < 0 {
		if create {
			if err := unix.Mkdirat(a.rootFD, metaDir, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("create %s/%s: %w", a.opts.Root, metaDir, err)
			}
		}
		fd, err := openBeneath(a.rootFD, metaDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
		if err != nil {
			if !create && errors.Is(err, unix.ENOENT) {
				return nil
			}
			return fmt.Errorf("secondary %s/%s is not a directory georep can use: %w", a.opts.Root, metaDir, err)
		}
		if err := a.checkOwnDir(fd, metaDir, create); err != nil {
			unix.Close(fd)
			return err
		}
		a.metaFD = fd
	}
	for _, d := range []struct {
		fd   *int
		name string
	}{{&a.idsFD, "ids"}, {&a.dirsFD, "dirs"}, {&a.tmpFD, "tmp"}} {
		if *d.fd >= 0 {
			continue
		}
		if create {
			if err := unix.Mkdirat(a.metaFD, d.name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("create %s/%s/%s: %w", a.opts.Root, metaDir, d.name, err)
			}
		}
		fd, err := openBeneath(a.metaFD, d.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
		if err != nil {
			if !create && errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("secondary %s/%s/%s is not a directory georep can use: %w", a.opts.Root, metaDir, d.name, err)
		}
		if err := a.checkOwnDir(fd, metaDir+"/"+d.name, create); err != nil {
			unix.Close(fd)
			return err
		}
		*d.fd = fd
	}
	return nil
}

// checkOwnDir checks that the directory fd (rel under the root) is the
// agent's: its owner is the agent's user (or root, for a read-only
// session) and nobody else may write in it.
// A wrong mode is repaired when fix is set (the agent owns it).
func (a *Agent) checkOwnDir(fd int, rel string, fix bool) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	// A read-only (verify) session may also read an index root made.
	if euid := uint32(os.Geteuid()); st.Uid != euid && !(a.readOnly && st.Uid == 0) {
		return fmt.Errorf("%s/%s belongs to uid %d, not to the agent (uid %d): %w", a.opts.Root, rel, st.Uid, euid, ErrForeignIndex)
	}
	if st.Mode&0o022 != 0 {
		if !fix {
			return fmt.Errorf("%s/%s has mode %#o (others may write in it): %w", a.opts.Root, rel, st.Mode&07777, ErrForeignIndex)
		}
		if err := unix.Fchmod(fd, 0o700); err != nil {
			return fmt.Errorf("%s/%s: %w", a.opts.Root, rel, err)
		}
		a.log.Warn("index directory was writable by others; mode set to 0700", "dir", rel, "mode", fmt.Sprintf("%#o", st.Mode&07777))
	}
	return nil
}

// closeIndexDirs closes the descriptors of ids/ and dirs/ and their shards
// (before the index is reset).
func (a *Agent) closeIndexDirs() {
	a.shardMu.Lock()
	for k, fd := range a.shards {
		unix.Close(fd)
		delete(a.shards, k)
	}
	for k, fd := range a.dshards {
		unix.Close(fd)
		delete(a.dshards, k)
	}
	a.shardMu.Unlock()
	for _, p := range []*int{&a.idsFD, &a.dirsFD} {
		if *p >= 0 {
			unix.Close(*p)
			*p = -1
		}
	}
}

// shardFD returns a descriptor of the index shard directory of id
// (.georep/ids/XX), made when missing (not in a read-only session).
func (a *Agent) shardFD(id fileid.ID) (int, error) {
	return a.shardOf(a.idsFD, a.shards, id)
}

// dirShardFD returns a descriptor of the directory-record shard of id
// (.georep/dirs/XX).
func (a *Agent) dirShardFD(id fileid.ID) (int, error) {
	return a.shardOf(a.dirsFD, a.dshards, id)
}

func (a *Agent) shardOf(parent int, cache map[string]int, id fileid.ID) (int, error) {
	if !id.Valid() {
		return -1, fmt.Errorf("index: %w", errBadID)
	}
	if parent < 0 {
		return -1, unix.ENOENT
	}
	sh := shard(id)
	a.shardMu.Lock()
	defer a.shardMu.Unlock()
	if fd, ok := cache[sh]; ok {
		return fd, nil
	}
	if !a.readOnly {
		if err := unix.Mkdirat(parent, sh, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, err
		}
	}
	fd, err := openBeneath(parent, sh, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW)
	if err != nil {
		return -1, err
	}
	cache[sh] = fd
	return fd, nil
}

var errBadID = errors.New("invalid file id")

// indexStat lstat()s the index entry of file id.
func (a *Agent) indexStat(id fileid.ID) (unix.Stat_t, error) {
	sfd, err := a.shardFD(id)
	if err != nil {
		return unix.Stat_t{}, err
	}
	return statAt(sfd, idName(id))
}

// openIndexContent opens the content of file id (see openContent).
func (a *Agent) openIndexContent(id fileid.ID, flags int) (*os.File, unix.Stat_t, error) {
	sfd, err := a.shardFD(id)
	if err != nil {
		return nil, unix.Stat_t{}, err
	}
	return openContent(sfd, idName(id), flags)
}

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
	if len(n) < 2 {
		return "00" // not a valid ID: callers check; never a panic
	}
	return n[len(n)-2:]
}

func fileIndexPath(id fileid.ID) string { return idsDir + "/" + shard(id) + "/" + idName(id) }
func dirIndexPath(id fileid.ID) string  { return dirsDir + "/" + shard(id) + "/" + idName(id) }
func stagePath(id fileid.ID) string     { return tmpDir + "/" + idName(id) }

type dirRec struct {
	ino    uint64
	parent fileid.ID // stagedParent when in the staging area
	name   string
	// handle is the secondary's own file handle of the directory (hex;
	// inode and generation): a record whose inode number another
	// directory reuses is told apart by it. Empty when unknown.
	handle string
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
	s := strconv.FormatUint(r.ino, 10) + " " + string(r.parent) + " " + hex.EncodeToString([]byte(r.name))
	if r.handle != "" {
		s += " " + r.handle
	}
	return s
}

// handleOf is the secondary's file handle of name in dirfd (hex), or ""
// when the filesystem gives none.
func handleOf(dirfd int, name string) string {
	h, _, err := unix.NameToHandleAt(dirfd, name, 0)
	if err != nil {
		return ""
	}
	b := binary.LittleEndian.AppendUint32(nil, uint32(h.Type()))
	return hex.EncodeToString(append(b, h.Bytes()...))
}

func decodeDirRec(s string) (*dirRec, error) {
	f := strings.Split(s, " ")
	if len(f) != 3 && len(f) != 4 {
		return nil, fmt.Errorf("bad directory record %q", s)
	}
	handle := ""
	if len(f) == 4 {
		if _, err := hex.DecodeString(f[3]); err != nil || f[3] == "" {
			return nil, fmt.Errorf("bad directory record %q", s)
		}
		handle = f[3]
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
	return &dirRec{ino: ino, parent: parent, name: string(name), handle: handle}, nil
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
	if err := a.loadFileIndex(ix); err != nil {
		return err
	}
	shards, err := readNames(a.dirsFD, ".")
	if err != nil {
		return fmt.Errorf("read index %s: %w", dirsDir, err)
	}
	for _, sh := range shards {
		sfd, err := openBeneath(a.dirsFD, sh, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
		if err != nil {
			continue // not a shard directory
		}
		names, err := readNames(sfd, ".")
		if err != nil {
			unix.Close(sfd)
			return fmt.Errorf("read index %s/%s: %w", dirsDir, sh, err)
		}
		for _, n := range names {
			p := dirsDir + "/" + sh + "/" + n
			t, err := readlinkAt(sfd, n)
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
			if owner, ok := ix.byIno[rec.ino]; ok {
				if _, isFile := ix.files[owner]; isFile {
					// The file index is kept by the kernel (hardlinks); a
					// directory record naming a file's inode number is
					// stale (the directory went, its inode was reused).
					a.log.Debug("dropping a stale directory record", "id", id.Short())
					if !a.readOnly {
						unix.Unlinkat(a.rootFD, p, 0)
					}
					continue
				}
			}
			ix.dirs[id] = rec
			ix.byIno[rec.ino] = id
		}
		unix.Close(sfd)
	}
	a.idx = ix
	return nil
}

// loadFileIndex reads the file index (.georep/ids/XX/ID hardlinks): ID ->
// inode. The shards are read in parallel, and the inode numbers come from
// the directory entries themselves (d_ino), which on the filesystems a
// secondary lives on are the files' inode numbers: one getdents per shard
// instead of a stat per file. Each shard checks that on its first regular
// entry and stats every entry when they differ (overlayfs can).
func (a *Agent) loadFileIndex(ix *index) error {
	shards, err := readNames(a.idsFD, ".")
	if err != nil {
		return fmt.Errorf("read index %s: %w", idsDir, err)
	}
	type shardFiles struct {
		ids  []fileid.ID
		inos []uint64
		err  error
	}
	out := make([]shardFiles, len(shards))
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range min(4, max(1, runtime.NumCPU())) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(shards) {
					return
				}
				rel := idsDir + "/" + shards[i]
				sfd, err := openBeneath(a.idsFD, shards[i], unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
				if err != nil {
					continue // not a shard directory
				}
				ents, err := readDirents(sfd, ".")
				if err != nil {
					unix.Close(sfd)
					out[i].err = fmt.Errorf("read index %s: %w", rel, err)
					continue
				}
				trustIno := false
				checked := false
				for _, d := range ents {
					id := fileid.ID(d.name)
					if !id.Valid() {
						continue
					}
					ino := d.ino
					if !checked || !trustIno || d.typ != unix.DT_REG {
						var st unix.Stat_t
						if err := unix.Fstatat(sfd, d.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
							continue
						}
						if !checked && d.typ == unix.DT_REG {
							checked, trustIno = true, st.Ino == d.ino
						}
						ino = st.Ino
					}
					out[i].ids = append(out[i].ids, id)
					out[i].inos = append(out[i].inos, ino)
				}
				unix.Close(sfd)
			}
		}()
	}
	wg.Wait()
	for _, sf := range out {
		if sf.err != nil {
			return sf.err
		}
		for j, id := range sf.ids {
			ix.files[id] = sf.inos[j]
			ix.byIno[sf.inos[j]] = id
		}
	}
	return nil
}

// dirent is one entry of a directory as getdents64 returns it.
type dirent struct {
	ino  uint64
	typ  uint8
	name string
}

// readDirents lists rel under dirfd with inode numbers and types ("." and
// ".." left out).
func readDirents(dirfd int, rel string) ([]dirent, error) {
	if dirfd < 0 {
		return nil, nil // an index directory a read-only session did not find
	}
	fd, err := openBeneath(dirfd, rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, err
	}
	defer unix.Close(fd)
	var out []dirent
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return out, nil
		}
		out = parseDirents(buf[:n], out)
	}
}

// parseDirents decodes linux_dirent64 records (ino u64, off s64, reclen
// u16, type u8, NUL-terminated name) and appends them to out.
func parseDirents(b []byte, out []dirent) []dirent {
	for len(b) >= 19 {
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		if reclen < 19 || reclen > len(b) {
			break
		}
		name := b[19:reclen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if nm := string(name); nm != "." && nm != ".." {
			out = append(out, dirent{ino: binary.NativeEndian.Uint64(b[0:8]), typ: b[18], name: nm})
		}
		b = b[reclen:]
	}
	return out
}

// readNames lists the names in rel under dirfd (none when it is missing).
func readNames(dirfd int, rel string) ([]string, error) {
	ents, err := readDirents(dirfd, rel)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.name
	}
	return names, nil
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
// lookup is the ID of the entry st describes: lookupIno, less a record
// that names an entry of the other kind (stale: a directory removed
// behind georep's back whose inode number a file now has, or the reverse).
func (ix *index) lookup(st *unix.Stat_t) fileid.ID {
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	ix.mu.Lock()
	defer ix.mu.Unlock()
	id := ix.byIno[st.Ino]
	if id == "" || id == ix.root {
		return id
	}
	if _, ok := ix.dirs[id]; ok && !isDir {
		return ""
	}
	if _, ok := ix.files[id]; ok && isDir {
		return ""
	}
	return id
}

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
