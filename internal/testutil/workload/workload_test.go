package workload_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/georep/georep/internal/testutil"
	"github.com/georep/georep/internal/testutil/oracle"
	"github.com/georep/georep/internal/testutil/workload"
	"golang.org/x/sys/unix"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestPopulateLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "p")
	got, err := workload.Populate(dir, workload.PopulateOptions{Files: 100, Dirs: 30, Large: 2, LargeMiB: 3, Seed: 5})
	must(t, err)
	// cbrt(30) rounds to 3: 27 directories, d00/e00/f00 .. d02/e02/f02.
	if got.Dirs != 27 || got.Files != 100 {
		t.Fatalf("populated %s", got)
	}
	for _, rel := range []string{"d00/e00/f00/file000000.dat", "d02/e02/f02/file000026.dat", "d00/e00/f00/file000027.dat", "d02/e00/f00/file000099.dat"} {
		fi, err := os.Stat(filepath.Join(dir, rel))
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if fi.Size() < 1024 || fi.Size() > 16384 {
			t.Errorf("%s: %d bytes, want 1-16 KiB", rel, fi.Size())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "d03")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("d03 exists: %v", err)
	}
	seen := map[string]bool{}
	for n := range 2 {
		b, err := os.ReadFile(filepath.Join(dir, "large", fmt.Sprintf("big%02d.bin", n)))
		must(t, err)
		if len(b) != 3<<20 {
			t.Fatalf("big%02d.bin: %d bytes, want 3 MiB", n, len(b))
		}
		for m := range 3 {
			c := b[m<<20 : (m+1)<<20]
			if c[0] != byte(n) || c[1] != byte(m) {
				t.Errorf("big%02d.bin chunk %d starts %d %d", n, m, c[0], c[1])
			}
			if seen[string(c)] {
				t.Errorf("big%02d.bin chunk %d repeats an earlier chunk", n, m)
			}
			seen[string(c)] = true
		}
	}
	// Few directories still make two per level.
	small := filepath.Join(t.TempDir(), "s")
	got, err = workload.Populate(small, workload.PopulateOptions{Files: 3, Dirs: 1, Seed: 1})
	must(t, err)
	if got.Dirs != 1 {
		t.Fatalf("--dirs 1: %s", got)
	}
	if _, err := workload.Populate(small, workload.PopulateOptions{Files: 3, Dirs: 0}); err == nil {
		t.Error("--dirs 0 accepted")
	}
}

// TestSameSeedSameTree: two runs with the same seeds make the same tree
// (all but mtimes, which the clock gives); another seed another tree.
func TestSameSeedSameTree(t *testing.T) {
	base := t.TempDir()
	mk := func(name string, pseed, cseed uint64) string {
		dir := filepath.Join(base, name)
		_, err := workload.Populate(dir, workload.PopulateOptions{Files: 600, Dirs: 20, Seed: pseed})
		must(t, err)
		_, err = workload.Churn(dir, workload.ChurnOptions{Scale: 0.2, Seed: cseed})
		must(t, err)
		return dir
	}
	a, b, c := mk("a", 1, 2), mk("b", 1, 2), mk("c", 1, 3)
	o := oracle.Options{NoMtime: true}
	if r, err := oracle.Compare(a, b, o); err != nil || !r.OK() {
		t.Fatalf("same seeds, different trees: %v %s", err, r.Summary())
	}
	if r, err := oracle.Compare(a, c, o); err != nil || r.OK() {
		t.Fatalf("another churn seed, the same tree: %v", err)
	}
}

// TestChurnCoversEveryKind: at scale 1 on a tree large enough that no
// operation runs out of files, the churn makes workload.py's counts of every
// operation, and the tree then holds every kind of entry it promises.
func TestChurnCoversEveryKind(t *testing.T) {
	testutil.RequireRoot(t) // chown, ACLs naming other users
	dir := filepath.Join(t.TempDir(), "p")
	_, err := workload.Populate(dir, workload.PopulateOptions{Files: 4000, Dirs: 64, Seed: 1})
	must(t, err)
	counts, err := workload.Churn(dir, workload.DefaultChurn)
	must(t, err)
	t.Logf("churn: %s", counts)
	want := map[string]int{
		"create": 2000, "append": 1000, "overwrite": 800, "truncate": 200, "rename": 500, "rename-over": 100,
		"hardlink": 100, "symlink": 100, "chmod/chown": 500, "xattr": 200, "acl": 50, "utime": 100,
		"type-change": 20, "unlink": 4000 - 3770, "odd-name": len(workload.OddNames), "default-acl": 1,
		"rename-dir": 20, "rmdir-tree": 10,
	}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("%s: %d, want %d", k, counts[k], n)
		}
	}
	var st unix.Stat_t
	odd := filepath.Join(dir, "odd names")
	for _, n := range workload.OddNames {
		b, err := os.ReadFile(filepath.Join(odd, n))
		if err != nil || string(b) != strings.Repeat(n, 3) {
			t.Errorf("odd name %q: %v", n, err)
		}
	}
	must(t, unix.Lstat(filepath.Join(odd, "fifo"), &st))
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Error("no FIFO")
	}
	must(t, unix.Lstat(filepath.Join(odd, "sparse"), &st))
	if st.Size != 64<<20+3 || st.Blocks*512 > 1<<20 {
		t.Errorf("sparse file: size %d, %d blocks", st.Size, st.Blocks)
	}
	must(t, unix.Lstat(filepath.Join(odd, "empty"), &st))
	if st.Size != 0 {
		t.Error("empty file not empty")
	}
	deep := odd
	for n := range workload.DeepLevels {
		deep = filepath.Join(deep, fmt.Sprintf("level%02d", n))
	}
	if _, err := os.Stat(filepath.Join(deep, "deep.txt")); err != nil {
		t.Errorf("deep chain: %v", err)
	}
	if l, err := os.Readlink(filepath.Join(dir, "churn-new", "dangling")); err != nil || l != "/nonexistent/dangling" {
		t.Errorf("dangling symlink: %q %v", l, err)
	}
	resolved := 0
	for n := range 100 {
		if fi, err := os.Stat(filepath.Join(dir, "churn-new", fmt.Sprintf("sym%04d", n))); err == nil && fi.Mode().IsRegular() {
			resolved++
		}
	}
	if resolved < 25 { // directory renames and deletes (a third of the dirs) take the target of many
		t.Errorf("%d of 100 symlinks resolve to a file", resolved)
	}
	linked := 0
	for n := range 100 {
		if unix.Lstat(filepath.Join(dir, "churn-new", fmt.Sprintf("hard%04d", n)), &st) == nil && st.Nlink >= 2 {
			linked++
		}
	}
	if linked < 50 { // a directory delete takes the other name of some
		t.Errorf("%d of 100 hardlinks still share their inode", linked)
	}
	if _, err := unix.Getxattr(odd, "system.posix_acl_default", nil); err != nil {
		t.Errorf("default ACL on odd names/: %v", err)
	}
	// The files made in odd names/ inherit its default ACL.
	if _, err := unix.Getxattr(filepath.Join(odd, "with space"), "system.posix_acl_access", nil); err != nil {
		t.Errorf("inherited ACL: %v", err)
	}
	var renamedDirs, typeDirs, accessACLs, xattrs, owned int
	must(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), "fren") {
			renamedDirs++
		}
		if d.Name() == "was-a-file" {
			typeDirs++
		}
		if d.Type().IsRegular() && filepath.Dir(p) != odd {
			if _, err := unix.Getxattr(p, "system.posix_acl_access", nil); err == nil {
				accessACLs++
			}
			if _, err := unix.Getxattr(p, "user.georep-test", nil); err == nil {
				xattrs++
			}
			var st unix.Stat_t
			if unix.Lstat(p, &st) == nil && st.Uid >= 1000 && st.Uid <= 1010 {
				owned++
			}
		}
		return nil
	}))
	// Directory deletes (of a renamed directory's parent, too) may take
	// some of what was changed before them; most must remain.
	if renamedDirs < 15 || typeDirs < 5 || accessACLs < 25 || xattrs < 100 || owned < 250 {
		t.Errorf("renamed dirs %d, file-to-dir type changes %d, files with ACLs %d, with xattrs %d, chowned %d",
			renamedDirs, typeDirs, accessACLs, xattrs, owned)
	}
}

// TestChurnAgain: a churn runs again on a tree it churned before, with the
// same seed or another (its names are taken by then).
func TestChurnAgain(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "p")
	_, err := workload.Populate(dir, workload.PopulateOptions{Files: 800, Dirs: 27, Seed: 1})
	must(t, err)
	for _, seed := range []uint64{2, 2, 9} {
		if _, err := workload.Churn(dir, workload.ChurnOptions{Scale: 0.3, Seed: seed}); err != nil {
			t.Fatalf("churn seed %d again: %v", seed, err)
		}
	}
}

func TestSingle(t *testing.T) {
	dir := t.TempDir()
	must(t, workload.Single(dir, "probe-1"))
	b, err := os.ReadFile(filepath.Join(dir, "probe-1"))
	if err != nil || string(b) != "lag probe probe-1\n" {
		t.Fatalf("probe: %q %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "probe-1.tmp")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("temporary left behind: %v", err)
	}
	for _, bad := range []string{"", "a/b"} {
		if err := workload.Single(dir, bad); err == nil {
			t.Errorf("Single(%q) accepted", bad)
		}
	}
}

func TestMain_CommandLines(t *testing.T) {
	dir := t.TempDir()
	var out strings.Builder
	must(t, workload.Main([]string{"populate", "--files=5", dir, "--dirs", "1", "--seed", "3"}, &out))
	if !strings.Contains(out.String(), "populated "+dir+": 5 small files in 1 dirs") {
		t.Errorf("populate printed %q", out.String())
	}
	out.Reset()
	must(t, workload.Main([]string{"churn", dir, "--scale", "0.01"}, &out))
	if !strings.HasPrefix(out.String(), "churned "+dir+": ") {
		t.Errorf("churn printed %q", out.String())
	}
	must(t, workload.Main([]string{"single", dir, "x"}, &out))
	for _, bad := range [][]string{
		nil, {"bogus"}, {"populate"}, {"populate", dir, "--files"}, {"populate", dir, "--files", "many"},
		{"populate", dir, "--scale", "1"}, {"churn", dir, "extra"}, {"single", dir},
	} {
		if err := workload.Main(bad, &out); !errors.Is(err, workload.ErrUsage) {
			t.Errorf("Main(%q): %v, want ErrUsage", bad, err)
		}
	}
}
