// Package oracle owns the repository's independent tree oracle: it decides
// whether a replica matches its primary, entry by entry, the way
// shared/bench/verify.py does, with code that shares nothing with georep's
// own comparison (internal/verify), so that the tests do not inherit
// georep's bugs through their judge.
//
// It compares presence, type, content (byte for byte), permission bits,
// owner and group, mtime (whole seconds, or nanoseconds), directory mtimes
// (optionally), symlink targets, device numbers, user.* xattrs, POSIX ACLs
// (access and default) and hardlink groups (the same paths must share an
// inode on both sides). A top-level .georep is left out on both sides, and
// so is what an rsync-style exclude pattern matches (see Pattern).
//
// It is used in-process by internal/testutil (VerifyPy) and as a command by
// tools/treeverify, whose command line is verify.py's.
package oracle

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Options says what Compare checks beyond presence, type, content, mode,
// symlink targets, device numbers and hardlink groups.
type Options struct {
	NoOwner  bool     // do not compare owner and group
	NoXattrs bool     // do not compare user.* xattrs nor ACLs
	NoACLs   bool     // do not compare POSIX ACLs
	MtimeNs  bool     // compare mtimes to the nanosecond, not the second
	NoMtime  bool     // do not compare mtimes at all
	DirMtime bool     // compare directories' mtimes too
	Exclude  []string // rsync-style patterns, left out on both sides
}

// Kinds of difference, in the order a report lists them per entry.
const (
	Missing       = "missing"        // in the source only
	Extra         = "extra"          // in the replica only
	Type          = "type"           // file vs dir, symlink ...
	Content       = "content"        // regular file data
	SymlinkTarget = "symlink-target" // readlink differs
	Rdev          = "rdev"           // device numbers of a device file
	Mode          = "mode"           // permission bits (and setuid, setgid, sticky)
	Owner         = "owner"          // uid:gid
	Mtime         = "mtime"          // modification time
	Xattr         = "xattr"          // user.* extended attributes
	ACL           = "acl"            // POSIX access or default ACL
	Hardlink      = "hardlink"       // the paths sharing the inode differ
	Vanished      = "vanished"       // gone while being compared
)

// Difference is one way in which an entry of the replica differs.
type Difference struct {
	Kind   string
	Path   string // relative to the roots
	Detail string
}

func (d Difference) String() string {
	s := fmt.Sprintf("%s: %q", d.Kind, d.Path)
	if d.Detail != "" {
		s += " " + d.Detail
	}
	return s
}

// Report is the result of Compare.
type Report struct {
	SourceEntries, ReplicaEntries int
	Differences                   []Difference // missing, extra, then per path in byte order
}

// OK tells whether the trees match.
func (r *Report) OK() bool { return len(r.Differences) == 0 }

// Counts is the number of differences of each kind.
func (r *Report) Counts() map[string]int {
	m := map[string]int{}
	for _, d := range r.Differences {
		m[d.Kind]++
	}
	return m
}

// Summary is verify.py's last line: entries on both sides and a count per
// kind of difference ("none" when there is none).
func (r *Report) Summary() string {
	c := r.Counts()
	kinds := make([]string, 0, len(c))
	for k := range c {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%s %d", k, c[k])
	}
	s := strings.Join(parts, ", ")
	if s == "" {
		s = "none"
	}
	return fmt.Sprintf("verify: %d entries in source, %d in replica; differences: %s", r.SourceEntries, r.ReplicaEntries, s)
}

// Write prints the first show differences, one a line, then Summary.
func (r *Report) Write(w io.Writer, show int) error {
	for i, d := range r.Differences {
		if i == show {
			break
		}
		if _, err := fmt.Fprintln(w, d); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintln(w, r.Summary())
	return err
}

// entry is one scanned path.
type entry struct {
	rel string
	abs string
	st  unix.Stat_t
}

func (e *entry) kind() string { return kindOf(e.st.Mode) }

func kindOf(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFCHR:
		return "chardev"
	case unix.S_IFBLK:
		return "blockdev"
	case unix.S_IFSOCK:
		return "socket"
	}
	return "unknown"
}

// Compare compares the replica dst with the source src. An error means the
// comparison could not be made (the source root missing, a root that is not
// a directory, a directory that cannot be read, a bad pattern);
// differences are in the report. A replica root that does not exist is an
// empty replica: everything is missing, the root (".") too.
func Compare(src, dst string, o Options) (*Report, error) {
	pats, err := patterns(o.Exclude)
	if err != nil {
		return nil, err
	}
	s, err := scan(src, pats)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	// A replica not made yet is an empty one, as verify.py sees it (a test
	// polls until the replica has converged).
	var r *Report
	d, err := scan(dst, pats)
	if errors.Is(err, errNoRoot) {
		d, r = map[string]*entry{}, &Report{Differences: []Difference{{Kind: Missing, Path: ".", Detail: "the replica root does not exist"}}}
	} else if err != nil {
		return nil, fmt.Errorf("replica: %w", err)
	} else {
		r = &Report{}
	}
	r.SourceEntries, r.ReplicaEntries = len(s), len(d)
	var both []string
	for _, rel := range sortedKeys(s) {
		if _, ok := d[rel]; ok {
			both = append(both, rel)
		} else {
			r.Differences = append(r.Differences, Difference{Kind: Missing, Path: rel})
		}
	}
	for _, rel := range sortedKeys(d) {
		if _, ok := s[rel]; !ok {
			r.Differences = append(r.Differences, Difference{Kind: Extra, Path: rel})
		}
	}
	sg, dg := hardlinkGroups(s), hardlinkGroups(d)

	// Compare the common entries in parallel (content reads dominate),
	// keeping each entry's differences in its slot so that the report's
	// order does not depend on scheduling.
	per := make([][]Difference, len(both))
	errs := make([]error, len(both))
	var wg sync.WaitGroup
	next := make(chan int)
	for range max(2, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for i := range next {
				rel := both[i]
				per[i], errs[i] = compareEntry(s[rel], d[rel], o)
				if sg[rel] != dg[rel] {
					per[i] = append(per[i], Difference{Kind: Hardlink, Path: rel,
						Detail: fmt.Sprintf("linked with %s vs %s", describeGroup(sg[rel]), describeGroup(dg[rel]))})
				}
			}
		})
	}
	for i := range both {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, ds := range per {
		r.Differences = append(r.Differences, ds...)
	}
	return r, nil
}

// errNoRoot marks a scan of a root that does not exist (tested by the
// error, not by looking again: the replica may be made meanwhile).
var errNoRoot = errors.New("the root does not exist")

func patterns(excl []string) ([]Pattern, error) {
	pats := []Pattern{mustPattern("/.georep")}
	for _, e := range excl {
		p, err := ParsePattern(e)
		if err != nil {
			return nil, err
		}
		pats = append(pats, p)
	}
	return pats, nil
}

func mustPattern(s string) Pattern {
	p, err := ParsePattern(s)
	if err != nil {
		panic(err)
	}
	return p
}

func sortedKeys(m map[string]*entry) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// scan lstats every entry under root but root itself, leaving out (and not
// entering) what a pattern excludes. Any error but an entry vanishing
// during the walk ends the scan: a directory that cannot be read must not
// pass for an empty one.
func scan(root string, pats []Pattern) (map[string]*entry, error) {
	fi, err := os.Lstat(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %w", errNoRoot, err)
	}
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", root)
	}
	out := map[string]*entry{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != root && gone(err) {
				return nil
			}
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		isDir := d.IsDir()
		if slices.ContainsFunc(pats, func(pt Pattern) bool { return pt.Match(rel, isDir) }) {
			if isDir {
				return filepath.SkipDir
			}
			return nil
		}
		e := &entry{rel: rel, abs: p}
		if err := unix.Lstat(p, &e.st); err != nil {
			if gone(err) {
				return nil
			}
			return &fs.PathError{Op: "lstat", Path: p, Err: err}
		}
		out[rel] = e
		return nil
	})
	return out, err
}

// gone tells whether err says that a path went away (or a directory on
// it was replaced) while the tree was being read: a tree that changes
// under the oracle is reported as it was seen, not as an error.
func gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR)
}

// group is a hardlink group: the sorted paths sharing one inode, joined by
// NUL (comparable, so groups compare with ==).
type group string

func describeGroup(g group) string {
	if g == "" {
		return "nothing"
	}
	return fmt.Sprintf("%q", strings.Split(string(g), "\x00"))
}

// hardlinkGroups maps every non-directory that shares its inode with
// another scanned path to its group.
func hardlinkGroups(m map[string]*entry) map[string]group {
	type ino struct{ dev, ino uint64 }
	by := map[ino][]string{}
	for rel, e := range m {
		if e.st.Mode&unix.S_IFMT != unix.S_IFDIR && e.st.Nlink > 1 {
			k := ino{e.st.Dev, e.st.Ino}
			by[k] = append(by[k], rel)
		}
	}
	out := map[string]group{}
	for _, rels := range by {
		if len(rels) < 2 {
			continue
		}
		sort.Strings(rels)
		g := group(strings.Join(rels, "\x00"))
		for _, rel := range rels {
			out[rel] = g
		}
	}
	return out
}

// compareEntry lists how the replica's entry d differs from the source's s.
func compareEntry(s, d *entry, o Options) ([]Difference, error) {
	var out []Difference
	diff := func(kind, format string, args ...any) {
		out = append(out, Difference{Kind: kind, Path: s.rel, Detail: fmt.Sprintf(format, args...)})
	}
	vanished := func(err error) ([]Difference, error) {
		if gone(err) {
			return []Difference{{Kind: Vanished, Path: s.rel}}, nil
		}
		return nil, err
	}
	ks, kd := s.kind(), d.kind()
	if ks != kd {
		diff(Type, "%s vs %s", ks, kd)
		return out, nil
	}
	switch ks {
	case "file":
		if s.st.Size != d.st.Size {
			diff(Content, "size %d vs %d", s.st.Size, d.st.Size)
		} else if same, err := sameContent(s.abs, d.abs); err != nil {
			return vanished(err)
		} else if !same {
			diff(Content, "same size %d, other bytes", s.st.Size)
		}
	case "symlink":
		ts, err := os.Readlink(s.abs)
		if err != nil {
			return vanished(err)
		}
		td, err := os.Readlink(d.abs)
		if err != nil {
			return vanished(err)
		}
		if ts != td {
			diff(SymlinkTarget, "%q vs %q", ts, td)
		}
	case "chardev", "blockdev":
		if s.st.Rdev != d.st.Rdev {
			diff(Rdev, "%d:%d vs %d:%d", unix.Major(s.st.Rdev), unix.Minor(s.st.Rdev), unix.Major(d.st.Rdev), unix.Minor(d.st.Rdev))
		}
	}
	if ks != "symlink" {
		if ms, md := s.st.Mode&0o7777, d.st.Mode&0o7777; ms != md {
			diff(Mode, "%#o vs %#o", ms, md)
		}
	}
	if !o.NoOwner && (s.st.Uid != d.st.Uid || s.st.Gid != d.st.Gid) {
		diff(Owner, "%d:%d vs %d:%d", s.st.Uid, s.st.Gid, d.st.Uid, d.st.Gid)
	}
	if !o.NoMtime && ks != "symlink" && (ks != "dir" || o.DirMtime) {
		sm, dm := s.st.Mtim.Sec, d.st.Mtim.Sec
		if o.MtimeNs {
			sm, dm = s.st.Mtim.Nano(), d.st.Mtim.Nano()
		}
		if sm != dm {
			diff(Mtime, "%d vs %d", sm, dm)
		}
	}
	if !o.NoXattrs && (ks == "file" || ks == "dir") {
		xs, err := readXattrs(s.abs, "user.")
		if err != nil {
			return vanished(err)
		}
		xd, err := readXattrs(d.abs, "user.")
		if err != nil {
			return vanished(err)
		}
		if k := diffXattrs(xs, xd); k != "" {
			diff(Xattr, "%s", k)
		}
		if !o.NoACLs {
			as, err := readACLs(s.abs, ks == "dir")
			if err != nil {
				return vanished(err)
			}
			ad, err := readACLs(d.abs, ks == "dir")
			if err != nil {
				return vanished(err)
			}
			if k := diffXattrs(as, ad); k != "" {
				diff(ACL, "%s", k)
			}
		}
	}
	return out, nil
}

// bufPool holds the read buffers of sameContent (one pair per comparing
// goroutine at a time; allocating them per file cost more than the reads).
var bufPool = sync.Pool{New: func() any { return &[2][]byte{make([]byte, 128<<10), make([]byte, 128<<10)} }}

// sameContent compares two files byte for byte.
func sameContent(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	bufs := bufPool.Get().(*[2][]byte)
	defer bufPool.Put(bufs)
	ba, bb := bufs[0], bufs[1]
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		endA := errors.Is(ea, io.EOF) || errors.Is(ea, io.ErrUnexpectedEOF)
		endB := errors.Is(eb, io.EOF) || errors.Is(eb, io.ErrUnexpectedEOF)
		switch {
		case ea != nil && !endA:
			return false, ea
		case eb != nil && !endB:
			return false, eb
		case endA || endB:
			return endA && endB, nil
		}
	}
}

// diffXattrs describes how two attribute sets differ ("" when they do
// not): the names missing, extra or with another value in the replica.
func diffXattrs(s, d map[string]string) string {
	var parts []string
	for _, k := range sortedNames(s) {
		if v, ok := d[k]; !ok {
			parts = append(parts, "missing "+k)
		} else if v != s[k] {
			parts = append(parts, "other value of "+k)
		}
	}
	for _, k := range sortedNames(d) {
		if _, ok := s[k]; !ok {
			parts = append(parts, "extra "+k)
		}
	}
	return strings.Join(parts, ", ")
}

func sortedNames(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// readXattrs reads the attributes of p (not following a symlink) whose
// names start with prefix. A filesystem without xattrs has none.
func readXattrs(p, prefix string) (map[string]string, error) {
	out := map[string]string{}
	var names []byte
	for size := 1024; ; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Llistxattr(p, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return out, nil
		}
		if err != nil {
			return nil, &fs.PathError{Op: "listxattr", Path: p, Err: err}
		}
		names = buf[:n]
		break
	}
	for _, name := range strings.Split(strings.TrimSuffix(string(names), "\x00"), "\x00") {
		if name == "" || !strings.HasPrefix(name, prefix) {
			continue
		}
		v, err := getXattr(p, name)
		if errors.Is(err, unix.ENODATA) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out[name] = v
	}
	return out, nil
}

func getXattr(p, name string) (string, error) {
	for size := 256; ; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) && size < 1<<20 {
			continue
		}
		if err != nil {
			return "", &fs.PathError{Op: "getxattr " + name, Path: p, Err: err}
		}
		return string(buf[:n]), nil
	}
}

// readACLs reads the access ACL, and a directory's default ACL, as raw
// xattr values (the kernel stores an ACL only when it says more than the
// permission bits, so equal ACLs have equal values).
func readACLs(p string, dir bool) (map[string]string, error) {
	out := map[string]string{}
	names := []string{"system.posix_acl_access"}
	if dir {
		names = append(names, "system.posix_acl_default")
	}
	for _, n := range names {
		v, err := getXattr(p, n)
		if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[n] = v
	}
	return out, nil
}
