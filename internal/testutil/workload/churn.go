package workload

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// ChurnOptions says how much Churn changes.
type ChurnOptions struct {
	Scale float64 // 1.0: 2,000 creates, 1,000 appends, 500 renames ... (workload.py's counts)
	Seed  uint64
}

// DefaultChurn is workload.py's churn default: scale 1, seed 2.
var DefaultChurn = ChurnOptions{Scale: 1, Seed: 2}

// Counts is how many operations of each kind a churn made.
type Counts map[string]int

func (c Counts) String() string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, c[k])
	}
	return strings.Join(parts, ", ")
}

// OddNames are the awkward file names the churn creates in "odd names/":
// spaces, a newline, a tab, bytes that are not UTF-8, Unicode, a leading
// dash, a hidden file, the longest name ext4 allows, and characters that
// quoting and URL-escaping code gets wrong.
var OddNames = []string{
	"with space", "new\nline", "tab\there", "\xff\xfe-not-utf8", "ünïcödé-名前",
	"-leading-dash", ".hidden", strings.Repeat("x", 255), "percent%20sign", "back\\slash",
}

// DeepLevels is the depth of the directory chain under "odd names/".
const DeepLevels = 30

// Churn applies to the tree under dir a mix of every operation a replicator
// must carry, in workload.py's order and counts (scaled by o.Scale): creates,
// appends, in-place overwrites, truncates, renames within and across
// directories and over existing files, hardlinks, symlinks (one dangling),
// chmod, chown (as root), user xattrs, utimes, unlinks, awkward names, an
// empty and a sparse file, a FIFO, a 30-level directory chain, directory
// renames and deletes of whole directories; and beyond workload.py, POSIX
// ACLs (access and default) and type changes (a file replaced by a
// directory or by a symlink). It only takes regular
// files and directories as found, skips .georep* directories, and can run
// again on a tree it churned before. ACLs and xattrs are skipped (not
// counted) where the filesystem refuses them.
func Churn(dir string, o ChurnOptions) (Counts, error) {
	c := &churner{root: dir, r: newRNG(o.Seed), s: o.Scale, counts: Counts{}}
	if o.Scale < 0 {
		return nil, fmt.Errorf("churn: --scale %v is negative", o.Scale)
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("churn: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("churn: %s is not a directory", dir)
	}
	if err := c.run(); err != nil {
		return c.counts, fmt.Errorf("churn %s: %w", dir, err)
	}
	return c.counts, nil
}

type churner struct {
	root   string
	r      rng
	s      float64
	counts Counts
	pool   []string // regular files not used by an operation yet
}

// n scales a workload.py count, truncating as Python's int() does.
func (c *churner) n(base int) int { return int(float64(base) * c.s) }

func (c *churner) bump(kind string) { c.counts[kind]++ }

func (c *churner) take(n int) []string {
	n = min(n, len(c.pool))
	got := c.pool[:n:n]
	c.pool = c.pool[n:]
	return got
}

func (c *churner) run() error {
	files, dirs, err := scanTree(c.root)
	if err != nil {
		return err
	}
	c.r.Shuffle(len(files), func(i, j int) { files[i], files[j] = files[j], files[i] })
	var ds []string
	for _, d := range dirs {
		if d != c.root {
			ds = append(ds, d)
		}
	}
	newd := filepath.Join(c.root, "churn-new")
	if err := os.MkdirAll(newd, 0o755); err != nil {
		return err
	}
	if len(ds) == 0 {
		ds = []string{newd}
	}
	c.pool = files

	for n := range c.n(2000) {
		d := ds[c.r.IntN(len(ds))]
		if err := writeFile(filepath.Join(d, fmt.Sprintf("new%06d.dat", n)), c.r.bytes(c.r.between(0, 32768))); err != nil {
			return err
		}
		c.bump("create")
	}
	for _, p := range c.take(c.n(1000)) {
		if err := appendFile(p, c.r.bytes(c.r.between(1, 4096))); err != nil {
			return err
		}
		c.bump("append")
	}
	for _, p := range c.take(c.n(800)) {
		if err := c.overwrite(p); err != nil {
			return err
		}
		c.bump("overwrite")
	}
	for _, p := range c.take(c.n(200)) {
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if err := os.Truncate(p, int64(c.r.between(0, int(fi.Size())))); err != nil {
			return err
		}
		c.bump("truncate")
	}
	for n, p := range c.take(c.n(500)) {
		d := filepath.Dir(p)
		if n%2 == 0 {
			d = ds[c.r.IntN(len(ds))]
		}
		if err := os.Rename(p, filepath.Join(d, fmt.Sprintf("renamed%05d.dat", n))); err != nil {
			return err
		}
		c.bump("rename")
	}
	victims := c.take(c.n(100) * 2)
	for i := 0; i+1 < len(victims); i += 2 {
		if err := os.Rename(victims[i], victims[i+1]); err != nil {
			return err
		}
		c.bump("rename-over")
	}
	for n, p := range c.take(c.n(100)) {
		q := filepath.Join(newd, fmt.Sprintf("hard%04d", n))
		if q == p { // a link this churn made before, taken again
			continue
		}
		if err := replaceWith(q, func(q string) error { return os.Link(p, q) }); err != nil {
			return err
		}
		c.bump("hardlink")
	}
	for n, p := range c.take(c.n(100)) {
		rel, err := filepath.Rel(newd, p)
		if err != nil {
			return err
		}
		if err := replaceWith(filepath.Join(newd, fmt.Sprintf("sym%04d", n)), func(q string) error { return os.Symlink(rel, q) }); err != nil {
			return err
		}
		c.bump("symlink")
	}
	if err := replaceWith(filepath.Join(newd, "dangling"), func(q string) error { return os.Symlink("/nonexistent/dangling", q) }); err != nil {
		return err
	}
	modes := []os.FileMode{0o600, 0o640, 0o755, 0o444}
	for _, p := range c.take(c.n(500)) {
		if err := os.Chmod(p, modes[c.r.IntN(len(modes))]); err != nil {
			return err
		}
		if os.Geteuid() == 0 {
			if err := os.Lchown(p, c.r.between(1000, 1010), c.r.between(1000, 1010)); err != nil {
				return err
			}
		}
		c.bump("chmod/chown")
	}
	for _, p := range c.take(c.n(200)) {
		err := unix.Lsetxattr(p, "user.georep-test", c.r.bytes(c.r.between(1, 64)), 0)
		if err == nil {
			c.bump("xattr")
		} else if !unsupported(err) {
			return fmt.Errorf("setxattr %s: %w", p, err)
		}
	}
	for _, p := range c.take(c.n(50)) {
		ok, err := setACL(p, accessACL, EncodeACL(c.r.between(1000, 1010), c.r.between(1000, 1010)))
		if err != nil {
			return err
		}
		if ok {
			c.bump("acl")
		}
	}
	for _, p := range c.take(c.n(100)) {
		t := int64(1_600_000_000 + c.r.between(0, 100_000_000))
		ts := []unix.Timespec{{Sec: t}, {Sec: t}}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("utime %s: %w", p, err)
		}
		c.bump("utime")
	}
	if err := c.typeChanges(); err != nil {
		return err
	}
	for _, p := range c.take(c.n(1000)) {
		if err := os.Remove(p); err != nil {
			return err
		}
		c.bump("unlink")
	}
	if err := c.oddNames(); err != nil {
		return err
	}
	return c.dirRenamesAndDeletes()
}

// typeChanges replaces files by a directory (holding a file) or a symlink
// of the same name.
func (c *churner) typeChanges() error {
	for i, p := range c.take(c.n(20)) {
		if err := os.Remove(p); err != nil {
			return err
		}
		if i%2 == 0 {
			if err := os.Mkdir(p, 0o755); err != nil {
				return err
			}
			if err := writeFile(filepath.Join(p, "was-a-file"), c.r.bytes(c.r.between(0, 2048))); err != nil {
				return err
			}
		} else if err := os.Symlink("was-a-file", p); err != nil {
			return err
		}
		c.bump("type-change")
	}
	return nil
}

func (c *churner) overwrite(p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(c.r.bytes(512), int64(c.r.between(0, max(0, int(fi.Size())-1))))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func appendFile(p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// oddNames makes "odd names/": OddNames (inheriting a default ACL of the
// directory where the filesystem has ACLs), an empty file, a 64 MiB sparse
// file, a FIFO, and a DeepLevels-deep directory chain. A later churn
// replaces what an earlier one made.
func (c *churner) oddNames() error {
	odd := filepath.Join(c.root, "odd names")
	if err := os.MkdirAll(odd, 0o755); err != nil {
		return err
	}
	if ok, err := setACL(odd, defaultACL, EncodeDefaultACL(1001, 1002)); err != nil {
		return err
	} else if ok {
		c.bump("default-acl")
	}
	for _, name := range OddNames {
		if err := replaceWith(filepath.Join(odd, name), func(q string) error {
			return writeFile(q, []byte(strings.Repeat(name, 3)))
		}); err != nil {
			return err
		}
		c.bump("odd-name")
	}
	if err := replaceWith(filepath.Join(odd, "empty"), func(q string) error { return writeFile(q, nil) }); err != nil {
		return err
	}
	if err := replaceWith(filepath.Join(odd, "sparse"), func(q string) error {
		f, err := os.Create(q)
		if err != nil {
			return err
		}
		_, err = f.WriteAt([]byte("end"), 64<<20)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}); err != nil {
		return err
	}
	if err := replaceWith(filepath.Join(odd, "fifo"), func(q string) error { return unix.Mkfifo(q, 0o644) }); err != nil {
		return err
	}
	deep := odd
	for n := range DeepLevels {
		deep = filepath.Join(deep, fmt.Sprintf("level%02d", n))
	}
	if err := os.MkdirAll(deep, 0o755); err != nil {
		return err
	}
	return replaceWith(filepath.Join(deep, "deep.txt"), func(q string) error { return writeFile(q, []byte("deep\n")) })
}

// dirRenamesAndDeletes renames int(20*scale) of the f* directories within
// their parent and deletes int(10*scale) more with all they hold. Unlike
// workload.py it passes over a directory below one already renamed or
// deleted (its path is gone) for the next, and picks a free name when
// fren%03d is taken.
func (c *churner) dirRenamesAndDeletes() error {
	_, dirs, err := scanTree(c.root)
	if err != nil {
		return err
	}
	var ds []string
	for _, d := range dirs {
		// workload.py's f* directories: populate's fKK and earlier churns'
		// frenNNN, not files turned into directories (file000123.dat).
		if b := filepath.Base(d); d != c.root && strings.HasPrefix(b, "f") && !strings.HasSuffix(b, ".dat") {
			ds = append(ds, d)
		}
	}
	c.r.Shuffle(len(ds), func(i, j int) { ds[i], ds[j] = ds[j], ds[i] })
	var gone []string
	below := func(d string) bool {
		return slices.ContainsFunc(gone, func(g string) bool { return strings.HasPrefix(d, g+"/") })
	}
	renames, deletes := c.n(20), c.n(30)
	done := 0
	for _, d := range ds {
		if done == deletes {
			break
		}
		if below(d) {
			continue
		}
		gone = append(gone, d)
		if done < renames {
			if err := os.Rename(d, freeName(filepath.Dir(d), fmt.Sprintf("fren%03d", done))); err != nil {
				return err
			}
			c.bump("rename-dir")
		} else {
			if err := os.RemoveAll(d); err != nil {
				return err
			}
			c.bump("rmdir-tree")
		}
		done++
	}
	return nil
}

// freeName returns dir/name, or dir/name-N for the first N not taken.
func freeName(dir, name string) string {
	p := filepath.Join(dir, name)
	for n := 2; ; n++ {
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			return p
		}
		p = filepath.Join(dir, fmt.Sprintf("%s-%d", name, n))
	}
}

// replaceWith makes p with mk, removing whatever a previous run left there.
func replaceWith(p string, mk func(string) error) error {
	if err := os.RemoveAll(p); err != nil {
		return err
	}
	return mk(p)
}

// scanTree lists the regular files (not symlinks) and the directories
// under root, root included, sorted, leaving out .georep* directories and
// what they hold, at any depth (as workload.py does).
func scanTree(root string) (files, dirs []string, err error) {
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if p != root && strings.HasPrefix(d.Name(), ".georep") {
				return filepath.SkipDir
			}
			dirs = append(dirs, p)
		case d.Type().IsRegular():
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	sort.Strings(dirs)
	return files, dirs, err
}

// unsupported tells whether an xattr call failed because the filesystem or
// the file type does not take it.
func unsupported(err error) bool {
	return errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPERM)
}

// The POSIX ACL xattrs and their binary form (linux/posix_acl_xattr.h):
// a little-endian version 2 header, then (tag, perm, id) entries sorted
// by tag and id.
const (
	accessACL  = "system.posix_acl_access"
	defaultACL = "system.posix_acl_default"

	aclVersion  = 2
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
	aclUndefID  = 0xffffffff
)

type aclEntry struct {
	tag, perm uint16
	id        uint32
}

// EncodeACL returns the xattr value of a file's ACL granting the owner rw,
// a named user uid rw, the owning group r, a named group gid r (mask rw)
// and others r.
func EncodeACL(uid, gid int) []byte { return encodeACL(uid, gid, 6, 4) }

// EncodeDefaultACL returns the xattr value of a directory's default ACL
// as setfacl -d -m u::rwx,u:UID:rwx,g::rx,g:GID:rx,o::rx makes it: what is
// created below inherits it (directories with rwx for the owner).
func EncodeDefaultACL(uid, gid int) []byte { return encodeACL(uid, gid, 7, 5) }

func encodeACL(uid, gid int, rw, r uint16) []byte {
	es := []aclEntry{
		{aclUserObj, rw, aclUndefID},
		{aclUser, rw, uint32(uid)},
		{aclGroupObj, r, aclUndefID},
		{aclGroup, r, uint32(gid)},
		{aclMask, rw, aclUndefID},
		{aclOther, r, aclUndefID},
	}
	b := binary.LittleEndian.AppendUint32(nil, aclVersion)
	for _, e := range es {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	return b
}

// setACL sets the xattr attr (an ACL) on p; false when the filesystem has
// no ACLs.
func setACL(p, attr string, value []byte) (bool, error) {
	err := unix.Lsetxattr(p, attr, value, 0)
	switch {
	case err == nil:
		return true, nil
	case unsupported(err):
		return false, nil
	}
	return false, fmt.Errorf("set %s on %s: %w", attr, p, err)
}
