package verify

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/georep/georep/internal/tree"
	"golang.org/x/sys/unix"
)

const baseTime = 1_700_000_000

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	must(t, os.WriteFile(p, []byte(content), mode))
	must(t, os.Chmod(p, mode))
}

// setMtime sets the mtime (and atime) of p without following symlinks.
func setMtime(t *testing.T, p string, sec, nsec int64) {
	t.Helper()
	ts := []unix.Timespec{{Sec: sec, Nsec: nsec}, {Sec: sec, Nsec: nsec}}
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
}

// copyMtime gives to the mtime of from (both without following symlinks).
func copyMtime(t *testing.T, from, to string) {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Lstat(from, &st))
	setMtime(t, to, st.Mtim.Sec, st.Mtim.Nsec)
}

// bumpNsec changes only the sub-second part of p's mtime.
func bumpNsec(t *testing.T, p string) {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Lstat(p, &st))
	setMtime(t, p, st.Mtim.Sec, (st.Mtim.Nsec+1)%1e9)
}

// fixTimes gives every entry under root a fixed mtime, deepest first so that
// directory mtimes stick.
func fixTimes(t *testing.T, root string) {
	t.Helper()
	var paths []string
	must(t, filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		paths = append(paths, p)
		return err
	}))
	for i := len(paths) - 1; i >= 0; i-- {
		setMtime(t, paths[i], baseTime+int64(i), 123456789)
	}
}

// build creates the same small tree under root every time.
func build(t *testing.T, root string) {
	t.Helper()
	j := func(p ...string) string { return filepath.Join(append([]string{root}, p...)...) }
	must(t, os.MkdirAll(j("a", "b", "c"), 0o755))
	must(t, os.MkdirAll(j("empty"), 0o700))
	writeFile(t, j("top.txt"), "hello\n", 0o644)
	writeFile(t, j("a", "one"), "one one one", 0o600)
	writeFile(t, j("a", "b", "two"), strings.Repeat("two", 100000), 0o640)
	writeFile(t, j("a", "b", "c", "three"), "", 0o755)
	writeFile(t, j("a", "hard1"), "linked", 0o644)
	must(t, os.Link(j("a", "hard1"), j("a", "b", "hard2")))
	must(t, os.Link(j("a", "hard1"), j("hard3")))
	must(t, os.Symlink("b/two", j("a", "link")))
	must(t, os.Symlink("/nonexistent/dangling", j("dangling")))
	must(t, unix.Mkfifo(j("fifo"), 0o644))
	must(t, os.Chmod(j("fifo"), 0o644))
	fixTimes(t, root)
}

// pair builds two identical trees and returns their roots.
func pair(t *testing.T) (string, string) {
	t.Helper()
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	must(t, os.Mkdir(src, 0o755))
	must(t, os.Mkdir(dst, 0o755))
	build(t, src)
	build(t, dst)
	return src, dst
}

func compare(t *testing.T, src, dst Source, opts Options) *Report {
	t.Helper()
	r, err := Compare(context.Background(), src, dst, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func printed(r *Report) string {
	var b bytes.Buffer
	r.Print(&b, 100)
	return b.String()
}

// expect checks that the report's counts are exactly want.
func expect(t *testing.T, r *Report, want map[string]int) {
	t.Helper()
	ok := len(r.Counts) == len(want)
	for k, v := range want {
		if r.Counts[k] != v {
			ok = false
		}
	}
	if !ok {
		t.Errorf("counts %v, want %v\n%s", r.Counts, want, printed(r))
	}
	if r.OK() != (len(want) == 0) {
		t.Errorf("OK() = %v with counts %v", r.OK(), r.Counts)
	}
	n := 0
	for _, v := range want {
		n += v
	}
	if len(r.Differences) != n {
		t.Errorf("%d differences, want %d", len(r.Differences), n)
	}
}

func userXattrsWork(t *testing.T, dir string) bool {
	p := filepath.Join(dir, ".xattr-probe")
	must(t, os.WriteFile(p, nil, 0o600))
	defer os.Remove(p)
	return unix.Setxattr(p, "user.probe", []byte("1"), 0) == nil
}

func TestIdentical(t *testing.T) {
	src, dst := pair(t)
	for _, opts := range []Options{{}, {MtimeNS: true, DirMtime: true}, {NoOwner: true, NoXattrs: true}} {
		r := compare(t, Local(src), Local(dst), opts)
		expect(t, r, nil)
		if r.SourceEntries != 14 || r.ReplicaEntries != 14 {
			t.Errorf("entries %d, %d; want 14", r.SourceEntries, r.ReplicaEntries)
		}
		if out := printed(r); out != "verify: 14 entries in source, 14 in replica; differences: none\n" {
			t.Errorf("printed %q", out)
		}
	}
}

func TestItems(t *testing.T) {
	src, _ := pair(t)
	items := map[string]Item{}
	must(t, Local(src).Items(context.Background(), Options{}, func(it Item) error {
		if _, dup := items[it.Path]; dup {
			t.Errorf("duplicate %q", it.Path)
		}
		items[it.Path] = it
		return nil
	}))
	check := func(p string, kind tree.Kind, mode uint32) Item {
		t.Helper()
		it, ok := items[p]
		if !ok {
			t.Fatalf("no item %q", p)
		}
		if it.Kind != kind || (mode != 0 && it.Mode != mode) || it.Err != "" {
			t.Errorf("%q: %+v", p, it)
		}
		return it
	}
	check("a", tree.KindDir, 0o755)
	check("a/b/c", tree.KindDir, 0o755)
	if it := check("top.txt", tree.KindRegular, 0o644); it.Size != 6 || it.Hash != mustDigest(t, "hello\n") || it.LinkGroup != "" || it.Mtime%1e9 != 123456789 {
		t.Errorf("top.txt: %+v", it)
	}
	if it := check("a/link", tree.KindSymlink, 0); it.Target != "b/two" {
		t.Errorf("a/link: %+v", it)
	}
	check("fifo", tree.KindFIFO, 0o644)
	h1, h2, h3 := check("a/hard1", tree.KindRegular, 0), check("a/b/hard2", tree.KindRegular, 0), check("hard3", tree.KindRegular, 0)
	if h1.LinkGroup == "" || h1.LinkGroup != h2.LinkGroup || h1.LinkGroup != h3.LinkGroup {
		t.Errorf("link groups %q %q %q", h1.LinkGroup, h2.LinkGroup, h3.LinkGroup)
	}
	if _, ok := items[""]; ok {
		t.Error("root reported")
	}
}

func mustDigest(t *testing.T, s string) [16]byte {
	d, err := Digest(strings.NewReader(s))
	must(t, err)
	return d
}

func TestDifferences(t *testing.T) {
	for _, c := range []struct {
		name   string
		mutate func(t *testing.T, dst string)
		opts   Options
		want   map[string]int
	}{
		{"missing", func(t *testing.T, d string) { must(t, os.Remove(filepath.Join(d, "a/one"))) }, Options{}, map[string]int{"missing": 1}},
		{"missing dir", func(t *testing.T, d string) { must(t, os.RemoveAll(filepath.Join(d, "a/b/c"))) }, Options{}, map[string]int{"missing": 2}},
		{"extra", func(t *testing.T, d string) { writeFile(t, filepath.Join(d, "a/new"), "x", 0o644) }, Options{}, map[string]int{"extra": 1}},
		{"type", func(t *testing.T, d string) {
			p := filepath.Join(d, "a/one")
			must(t, os.Remove(p))
			must(t, os.Mkdir(p, 0o600))
		}, Options{}, map[string]int{"type": 1}},
		{"content same size", func(t *testing.T, d string) {
			p := filepath.Join(d, "a/b/two")
			b, err := os.ReadFile(p)
			must(t, err)
			b[len(b)/2] ^= 1
			must(t, os.WriteFile(p, b, 0))
			copyMtime(t, filepath.Join(filepath.Dir(d), "src", "a/b/two"), p)
		}, Options{}, map[string]int{"content": 1}},
		{"content size", func(t *testing.T, d string) {
			f, err := os.OpenFile(filepath.Join(d, "top.txt"), os.O_APPEND|os.O_WRONLY, 0)
			must(t, err)
			f.WriteString("more")
			f.Close()
		}, Options{}, map[string]int{"content": 1, "mtime": 1}},
		{"mode", func(t *testing.T, d string) { must(t, os.Chmod(filepath.Join(d, "a/one"), 0o604)) }, Options{}, map[string]int{"mode": 1}},
		{"mode setuid", func(t *testing.T, d string) { must(t, os.Chmod(filepath.Join(d, "a/b/c/three"), 0o755|os.ModeSetuid)) }, Options{}, map[string]int{"mode": 1}},
		{"mode dir", func(t *testing.T, d string) { must(t, os.Chmod(filepath.Join(d, "empty"), 0o755)) }, Options{}, map[string]int{"mode": 1}},
		{"mode fifo", func(t *testing.T, d string) { must(t, os.Chmod(filepath.Join(d, "fifo"), 0o600)) }, Options{}, map[string]int{"mode": 1}},
		{"mtime", func(t *testing.T, d string) { setMtime(t, filepath.Join(d, "top.txt"), baseTime-100, 0) }, Options{}, map[string]int{"mtime": 1}},
		{"mtime ns ignored", func(t *testing.T, d string) { bumpNsec(t, filepath.Join(d, "top.txt")) }, Options{}, nil},
		{"mtime ns", func(t *testing.T, d string) { bumpNsec(t, filepath.Join(d, "top.txt")) }, Options{MtimeNS: true}, map[string]int{"mtime": 1}},
		{"dir mtime ignored", func(t *testing.T, d string) { setMtime(t, filepath.Join(d, "a/b"), 1, 0) }, Options{}, nil},
		{"dir mtime", func(t *testing.T, d string) { setMtime(t, filepath.Join(d, "a/b"), 1, 0) }, Options{DirMtime: true}, map[string]int{"mtime": 1}},
		{"symlink mtime ignored", func(t *testing.T, d string) { setMtime(t, filepath.Join(d, "a/link"), 1, 0) }, Options{DirMtime: true, MtimeNS: true}, nil},
		{"symlink target", func(t *testing.T, d string) {
			p := filepath.Join(d, "a/link")
			must(t, os.Remove(p))
			must(t, os.Symlink("b/tw0", p))
		}, Options{}, map[string]int{"symlink-target": 1}},
		{"hardlink split", func(t *testing.T, d string) {
			p := filepath.Join(d, "hard3")
			must(t, os.Remove(p))
			writeFile(t, p, "linked", 0o644)
			copyMtime(t, filepath.Join(d, "a/hard1"), p)
		}, Options{}, map[string]int{"hardlink": 3}},
		{"hardlink joined", func(t *testing.T, d string) {
			p := filepath.Join(d, "a/b/c/three")
			must(t, os.Remove(p))
			must(t, os.Link(filepath.Join(d, "a/one"), p))
		}, Options{}, map[string]int{"hardlink": 2, "content": 1, "mode": 1, "mtime": 1}},
		{"georep excluded", func(t *testing.T, d string) {
			g := filepath.Join(d, ".georep")
			must(t, os.MkdirAll(filepath.Join(g, "index"), 0o700))
			must(t, os.Link(filepath.Join(d, "top.txt"), filepath.Join(g, "index", "x")))
			must(t, os.Link(filepath.Join(d, "a/hard1"), filepath.Join(g, "index", "y")))
		}, Options{}, nil},
		{"georep only top level", func(t *testing.T, d string) {
			must(t, os.Mkdir(filepath.Join(d, "a", ".georep"), 0o700))
		}, Options{}, map[string]int{"extra": 1}},
		{"user exclude", func(t *testing.T, d string) {
			must(t, os.RemoveAll(filepath.Join(d, "a")))
			writeFile(t, filepath.Join(d, "junk"), "x", 0o644)
		}, Options{Excludes: []string{"a", "junk", "hard3"}}, nil},
		{"no owner", func(t *testing.T, d string) {
			if err := os.Lchown(filepath.Join(d, "top.txt"), 1234, 1234); err != nil {
				t.Skip("chown:", err)
			}
		}, Options{NoOwner: true}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			src, dst := pair(t)
			c.mutate(t, dst)
			r := compare(t, Local(src), Local(dst), c.opts)
			expect(t, r, c.want)
		})
	}
}

func TestOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	src, dst := pair(t)
	must(t, os.Lchown(filepath.Join(dst, "top.txt"), 1234, 0))
	must(t, os.Lchown(filepath.Join(dst, "a/link"), 0, 1234))
	must(t, os.Lchown(filepath.Join(dst, "a"), 1234, 1234))
	r := compare(t, Local(src), Local(dst), Options{})
	expect(t, r, map[string]int{"owner": 3})
	out := printed(r)
	for _, line := range []string{"owner: 'top.txt' 0:0 vs 1234:0\n", "owner: 'a/link' 0:0 vs 0:1234\n", "owner: 'a' 0:0 vs 1234:1234\n"} {
		if !strings.Contains(out, line) {
			t.Errorf("output lacks %q:\n%s", line, out)
		}
	}
	expect(t, compare(t, Local(src), Local(dst), Options{NoOwner: true}), nil)
}

func TestDevices(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mknod")
	}
	src, dst := pair(t)
	for _, c := range []struct {
		root string
		dev  uint64
	}{{src, unix.Mkdev(1, 3)}, {dst, unix.Mkdev(1, 5)}} {
		if err := unix.Mknod(filepath.Join(c.root, "null"), unix.S_IFCHR|0o644, int(c.dev)); err != nil {
			t.Skip("mknod:", err)
		}
		must(t, unix.Mknod(filepath.Join(c.root, "blk"), unix.S_IFBLK|0o600, int(unix.Mkdev(7, 0))))
		must(t, unix.Chmod(filepath.Join(c.root, "null"), 0o644))
	}
	r := compare(t, Local(src), Local(dst), Options{})
	expect(t, r, map[string]int{"rdev": 1})
	if out := printed(r); !strings.Contains(out, "rdev: 'null' 1,3 vs 1,5\n") {
		t.Errorf("output:\n%s", out)
	}
}

func TestXattrs(t *testing.T) {
	src, dst := pair(t)
	if !userXattrsWork(t, dst) {
		t.Skip("filesystem refuses user xattrs")
	}
	set := func(root, p, name, v string) {
		t.Helper()
		must(t, unix.Lsetxattr(filepath.Join(root, p), name, []byte(v), 0))
	}
	// Equal xattrs, including a big value and one on a directory.
	for _, root := range []string{src, dst} {
		set(root, "top.txt", "user.same", "v")
		set(root, "a", "user.dir", strings.Repeat("x", 3000))
		set(root, "a/one", "user.georep.private", root) // never compared
	}
	expect(t, compare(t, Local(src), Local(dst), Options{}), nil)

	set(dst, "top.txt", "user.same", "w")
	set(dst, "a/one", "user.added", "")
	set(src, "a/b/two", "user.gone", "1")
	r := compare(t, Local(src), Local(dst), Options{})
	expect(t, r, map[string]int{"xattr": 3})
	out := printed(r)
	for _, s := range []string{"xattr: 'top.txt' user.same differs", "xattr: 'a/one' user.added extra", "xattr: 'a/b/two' user.gone missing"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	expect(t, compare(t, Local(src), Local(dst), Options{NoXattrs: true}), nil)
}

// posixACL encodes a POSIX access ACL the way system.posix_acl_access holds it.
func posixACL(userID uint32) []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, 2) // version
	entry := func(tag, perm uint16, id uint32) {
		b = binary.LittleEndian.AppendUint16(b, tag)
		b = binary.LittleEndian.AppendUint16(b, perm)
		b = binary.LittleEndian.AppendUint32(b, id)
	}
	const undefined = 1<<32 - 1
	entry(0x01, 6, undefined) // USER_OBJ rw
	entry(0x02, 4, userID)    // USER r
	entry(0x04, 4, undefined) // GROUP_OBJ r
	entry(0x10, 4, undefined) // MASK r
	entry(0x20, 4, undefined) // OTHER r
	return b
}

func TestACLAndSecurityXattrs(t *testing.T) {
	src, dst := pair(t)
	p := "top.txt" // mode 0644 matches the ACL below
	for _, root := range []string{src, dst} {
		if err := unix.Setxattr(filepath.Join(root, p), "system.posix_acl_access", posixACL(1000), 0); err != nil {
			t.Skip("filesystem refuses ACLs:", err)
		}
	}
	expect(t, compare(t, Local(src), Local(dst), Options{}), nil)
	must(t, unix.Setxattr(filepath.Join(dst, p), "system.posix_acl_access", posixACL(1001), 0))
	r := compare(t, Local(src), Local(dst), Options{})
	expect(t, r, map[string]int{"xattr": 1})
	if !strings.Contains(printed(r), "system.posix_acl_access differs") {
		t.Error(printed(r))
	}
	must(t, unix.Setxattr(filepath.Join(dst, p), "system.posix_acl_access", posixACL(1000), 0))

	// Default ACL on a directory.
	for _, root := range []string{src, dst} {
		must(t, unix.Setxattr(filepath.Join(root, "empty"), "system.posix_acl_default", posixACL(77), 0))
	}
	expect(t, compare(t, Local(src), Local(dst), Options{}), nil)
	must(t, unix.Removexattr(filepath.Join(dst, "empty"), "system.posix_acl_default"))
	expect(t, compare(t, Local(src), Local(dst), Options{}), map[string]int{"xattr": 1})

	// security.* (needs root, and an LSM or filesystem that stores it).
	if err := unix.Setxattr(filepath.Join(src, "a/one"), "security.georeptest", []byte("label"), 0); err != nil {
		t.Log("security xattrs not settable here:", err)
		return
	}
	expect(t, compare(t, Local(src), Local(dst), Options{}), map[string]int{"xattr": 2})
}

func TestAwkwardNames(t *testing.T) {
	src, dst := pair(t)
	names := []string{"new\nline", "\xff\xfe-not-utf8", "tab\there", "ünïcödé-名前", "it's", " lead space", strings.Repeat("x", 255), "-dash", "back\\slash"}
	for _, root := range []string{src, dst} {
		d := filepath.Join(root, "odd\nnames")
		must(t, os.Mkdir(d, 0o755))
		for _, n := range names {
			writeFile(t, filepath.Join(d, n), n, 0o644)
			setMtime(t, filepath.Join(d, n), baseTime, 0)
		}
		must(t, os.Symlink("new\nline", filepath.Join(d, "sym\x01")))
	}
	r := compare(t, Local(src), Local(dst), Options{})
	expect(t, r, nil)
	if r.SourceEntries != 14+1+len(names)+1 {
		t.Errorf("source entries %d", r.SourceEntries)
	}
	must(t, os.Remove(filepath.Join(dst, "odd\nnames", "\xff\xfe-not-utf8")))
	must(t, os.WriteFile(filepath.Join(dst, "odd\nnames", "new\nline"), []byte("new\nlinE"), 0))
	setMtime(t, filepath.Join(dst, "odd\nnames", "new\nline"), baseTime, 0)
	must(t, os.Chmod(filepath.Join(dst, "odd\nnames", "it's"), 0o600))
	must(t, os.Chmod(filepath.Join(dst, "odd\nnames", "ünïcödé-名前"), 0o600))
	r = compare(t, Local(src), Local(dst), Options{})
	expect(t, r, map[string]int{"missing": 1, "content": 1, "mode": 2})
	want := []Difference{
		{"missing", "odd\nnames/\xff\xfe-not-utf8", ""},
		{"mode", "odd\nnames/it's", "0o644 vs 0o600"},
		{"content", "odd\nnames/new\nline", "size 8 vs 8"},
		{"mode", "odd\nnames/ünïcödé-名前", "0o644 vs 0o600"},
	}
	for i, d := range r.Differences {
		if i < len(want) && d != want[i] {
			t.Errorf("difference %d: %+v, want %+v", i, d, want[i])
		}
	}
	got := printed(r)
	wantOut := `missing: "odd\nnames/\xff\xfe-not-utf8"` + "\n" +
		`mode: "odd\nnames/it's" 0o644 vs 0o600` + "\n" +
		`content: "odd\nnames/new\nline" size 8 vs 8` + "\n" +
		`mode: "odd\nnames/ünïcödé-名前" 0o644 vs 0o600` + "\n" +
		"verify: 25 entries in source, 24 in replica; differences: content 1, missing 1, mode 2\n"
	if got != wantOut {
		t.Errorf("printed\n%s\nwant\n%s", got, wantOut)
	}
}

func TestPrint(t *testing.T) {
	r := &Report{SourceEntries: 3, ReplicaEntries: 4, Counts: map[string]int{}}
	r.add("content", "a/b", "size 3 vs 4")
	r.add("missing", "c d", "")
	r.add("missing", "ünï", "")
	var b bytes.Buffer
	r.Print(&b, 2)
	want := "content: 'a/b' size 3 vs 4\nmissing: 'c d'\nverify: 3 entries in source, 4 in replica; differences: content 1, missing 2\n"
	if b.String() != want {
		t.Errorf("got %q\nwant %q", b.String(), want)
	}
	b.Reset()
	r.Print(&b, -1)
	if b.String() != "verify: 3 entries in source, 4 in replica; differences: content 1, missing 2\n" {
		t.Errorf("got %q", b.String())
	}
	b.Reset()
	r.Print(&b, 0)
	if strings.Count(b.String(), "\n") != 4 {
		t.Errorf("got %q", b.String())
	}
}

func fakeSuperPair(t *testing.T) (string, string) {
	t.Helper()
	src, dst := pair(t)
	if !userXattrsWork(t, dst) {
		t.Skip("filesystem refuses user xattrs")
	}
	return src, dst
}

func TestFakeSuper(t *testing.T) {
	src, dst := fakeSuperPair(t)
	uid, gid := uint32(os.Geteuid()), uint32(os.Getegid())
	// The primary has a FIFO, mode 0644, uid 0 gid 0 (when we are root; our
	// own ids otherwise). The replica stores it as an empty regular file.
	if uid == 0 {
		must(t, os.Lchown(filepath.Join(src, "fifo"), 0, 0))
	}
	fifo := filepath.Join(dst, "fifo")
	must(t, os.Remove(fifo))
	writeFile(t, fifo, "", 0o600)
	copyMtime(t, filepath.Join(src, "fifo"), fifo)
	stat := "10644 0,0 0:0"
	if uid != 0 {
		stat = EncodeFakeStat(tree.KindFIFO, 0o644, 0, uid, gid)
	}
	must(t, unix.Setxattr(fifo, FakeStatXattr, []byte(stat), 0))

	expect(t, compare(t, Local(src), Local(dst), Options{FakeSuper: true}), nil)
	expect(t, compare(t, Local(src), LocalFakeSuper(dst), Options{}), nil)
	expect(t, compare(t, Local(src), Local(dst), Options{FakeSuper: true, NoXattrs: true}), nil)
	expect(t, compare(t, Local(src), Local(dst), Options{}), map[string]int{"type": 1})
	// FakeSuper applies to the replica only: swapped, the primary is taken
	// literally.
	expect(t, compare(t, Local(dst), Local(src), Options{FakeSuper: true}), map[string]int{"type": 1})

	// The stat also overrides mode and owner of a real regular file and of a
	// directory, and a wrong stat is a difference.
	must(t, unix.Setxattr(filepath.Join(dst, "a/one"), FakeStatXattr, []byte(EncodeFakeStat(tree.KindRegular, 0o600, 0, uid, gid)), 0))
	must(t, os.Chmod(filepath.Join(dst, "a/one"), 0o400)) // after: a non-root owner needs write permission to set it
	must(t, unix.Setxattr(filepath.Join(dst, "a"), FakeStatXattr, []byte(EncodeFakeStat(tree.KindDir, 0o711, 0, uid, 4321)), 0))
	r := compare(t, Local(src), Local(dst), Options{FakeSuper: true})
	expect(t, r, map[string]int{"mode": 1, "owner": 1})
	if out := printed(r); !strings.Contains(out, "mode: 'a' 0o755 vs 0o711") || !strings.Contains(out, "owner: 'a' ") {
		t.Error(out)
	}
	// A non-empty stand-in for a FIFO shows as a size difference.
	must(t, os.WriteFile(fifo, []byte("junk"), 0))
	copyMtime(t, filepath.Join(src, "fifo"), fifo)
	expect(t, compare(t, Local(src), Local(dst), Options{FakeSuper: true}), map[string]int{"mode": 1, "owner": 1, "size": 1})
	// A malformed stat is reported.
	must(t, unix.Setxattr(fifo, FakeStatXattr, []byte("10644 0,0"), 0))
	r = compare(t, Local(src), Local(dst), Options{FakeSuper: true})
	expect(t, r, map[string]int{"mode": 1, "owner": 1, "error": 1})
}

func TestFakeSuperOwnerAndDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown and mknod on the primary")
	}
	src, dst := fakeSuperPair(t)
	if err := unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))); err != nil {
		t.Skip("mknod:", err)
	}
	must(t, unix.Chmod(filepath.Join(src, "null"), 0o644))
	must(t, os.Lchown(filepath.Join(src, "top.txt"), 1234, 1234))
	// The replica could not mknod or chown: it keeps the values in the xattr.
	null := filepath.Join(dst, "null")
	writeFile(t, null, "", 0o600)
	must(t, unix.Setxattr(null, FakeStatXattr, []byte("20644 1,3 0:0\x00"), 0)) // rsync's NUL
	must(t, unix.Setxattr(filepath.Join(dst, "top.txt"), FakeStatXattr, []byte(EncodeFakeStat(tree.KindRegular, 0o644, 0, 1234, 1234)), 0))
	for _, p := range []string{src, dst} {
		setMtime(t, filepath.Join(p, "null"), baseTime, 0)
	}
	expect(t, compare(t, Local(src), Local(dst), Options{FakeSuper: true}), nil)
	must(t, unix.Setxattr(null, FakeStatXattr, []byte("20644 1,5 0:0"), 0))
	expect(t, compare(t, Local(src), Local(dst), Options{FakeSuper: true}), map[string]int{"rdev": 1})
	must(t, unix.Setxattr(null, FakeStatXattr, []byte("60644 1,3 0:0"), 0))
	expect(t, compare(t, Local(src), Local(dst), Options{FakeSuper: true}), map[string]int{"type": 1})
}

// deepTree makes a chain of directories whose path exceeds PATH_MAX, with a
// file and a symlink at the bottom.
func deepTree(t *testing.T, root string) {
	t.Helper()
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	name := strings.Repeat("d", 250)
	for i := 0; i < 20; i++ {
		must(t, unix.Mkdirat(fd, name, 0o755))
		nfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		must(t, err)
		unix.Close(fd)
		fd = nfd
	}
	f, err := unix.Openat(fd, "bottom", unix.O_WRONLY|unix.O_CREAT, 0o644)
	must(t, err)
	unix.Write(f, []byte("deep"))
	unix.Close(f)
	must(t, unix.Symlinkat("bottom", fd, "link"))
	unix.Close(fd)
}

func TestDeepTree(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	deepTree(t, src)
	deepTree(t, dst)
	r := compare(t, Local(src), Local(dst), Options{NoOwner: true})
	if r.SourceEntries != 22 {
		t.Errorf("%d entries\n%s", r.SourceEntries, printed(r))
	}
	// Only the mtimes of the bottom file may differ (it was written twice).
	for _, d := range r.Differences {
		if d.Kind != "mtime" || !strings.HasSuffix(d.Path, "/bottom") {
			t.Errorf("unexpected %+v", d)
		}
	}
}

type fakeSource []Item

func (f fakeSource) Items(ctx context.Context, opts Options, fn func(Item) error) error {
	for _, it := range f {
		if err := fn(it); err != nil {
			return err
		}
	}
	return nil
}

func TestVanishedAndErrors(t *testing.T) {
	file := func(p string) Item { return Item{Path: p, Kind: tree.KindRegular, Mode: 0o644} }
	src := fakeSource{file("a"), file("b"), file("c"), file(".georep/x"), file("/d/")}
	dst := fakeSource{{Path: "a", Err: ErrVanished}, {Path: "b", Err: "permission denied"}, file("c"), file("d")}
	r := compare(t, src, dst, Options{})
	expect(t, r, map[string]int{"vanished": 1, "error": 1})
	if r.SourceEntries != 4 {
		t.Errorf("source entries %d", r.SourceEntries)
	}

	// A file vanishing between listing and opening is reported, not fatal.
	dir := t.TempDir()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	h := &dirHandle{fd: fd, path: dir}
	h.acquire()
	defer h.release()
	var got []Item
	w := &walker{Walk: Walk{Open: openat, Excludes: ExcludeSet(nil)}, ctx: context.Background(),
		visit: func(e *WalkEntry) error { got = append(got, e.Item); return nil }}
	must(t, w.file(h, "gone", Item{Path: "gone", Kind: tree.KindRegular}))
	h.acquire()
	must(t, w.dir(h, "gonedir", Item{Path: "gonedir", Kind: tree.KindDir}))
	must(t, w.other(h, "gonelink", Item{Path: "gonelink", Kind: tree.KindSymlink}))
	if len(got) != 3 || got[0].Err != ErrVanished || got[1].Err != ErrVanished || got[2].Err != ErrVanished {
		t.Errorf("got %+v", got)
	}
}

func TestAbort(t *testing.T) {
	src, _ := pair(t)
	stop := errors.New("stop")
	n := 0
	err := Local(src).Items(context.Background(), Options{}, func(Item) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Errorf("err %v after %d items", err, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Compare(ctx, Local(src), Local(src), Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled compare: %v", err)
	}
	if _, err := Compare(context.Background(), Local(src), Local(filepath.Join(src, "nope")), Options{}); err == nil {
		t.Error("missing replica root: no error")
	}
}

// TestManyFiles exercises the parallel walk and hashing (run with -race).
func TestManyFiles(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	for _, root := range []string{src, dst} {
		for d := 0; d < 20; d++ {
			dir := filepath.Join(root, "d"+string(rune('a'+d)), "sub")
			must(t, os.MkdirAll(dir, 0o755))
			for f := 0; f < 50; f++ {
				p := filepath.Join(dir, strings.Repeat("f", f+1))
				must(t, os.WriteFile(p, bytes.Repeat([]byte{byte(d), byte(f)}, 1000*f), 0o644))
				setMtime(t, p, baseTime, 0)
			}
		}
	}
	expect(t, compare(t, Local(src), Local(dst), Options{}), nil)
	p := filepath.Join(dst, "dk", "sub", "fffff")
	must(t, os.WriteFile(p, bytes.Repeat([]byte{0, 4}, 4000), 0))
	setMtime(t, p, baseTime, 0)
	r := compare(t, Local(src), Local(dst), Options{})
	expect(t, r, map[string]int{"content": 1})
	if r.SourceEntries != 20*51+20 {
		t.Errorf("entries %d", r.SourceEntries)
	}
}

// tamper changes, in dst (a copy of src), one file's content with its
// size and mtime kept, and another file's mode: the two differences the
// oracle tests expect every comparison to find.
func tamper(t *testing.T, src, dst string) {
	t.Helper()
	var files []string
	must(t, filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if d.Type().IsRegular() && unix.Lstat(p, &st) == nil && st.Nlink == 1 && st.Size > 0 && !strings.Contains(p, "/.georep/") {
			files = append(files, p)
		}
		return nil
	}))
	slices.Sort(files)
	if len(files) < 2 {
		t.Fatalf("only %d files", len(files))
	}
	b, err := os.ReadFile(files[0])
	must(t, err)
	b[0] ^= 0xff
	must(t, os.WriteFile(files[0], b, 0))
	copyMtime(t, filepath.Join(src, strings.TrimPrefix(files[0], dst)), files[0])
	fi, err := os.Lstat(files[1])
	must(t, err)
	mode := os.FileMode(0o600)
	if fi.Mode().Perm() == mode {
		mode = 0o640
	}
	must(t, os.Chmod(files[1], mode))
}
