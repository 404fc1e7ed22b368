package oracle_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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

// sample makes a small tree with one entry of every kind the oracle looks
// at: files, a directory, symlinks (one dangling), a hardlinked pair, a
// FIFO, user xattrs, an access ACL and a directory's default ACL, odd names.
func sample(t *testing.T, root string) {
	t.Helper()
	w := func(rel, data string) {
		t.Helper()
		p := filepath.Join(root, rel)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(data), 0o644))
	}
	w("a.txt", "alpha")
	w("d/b.txt", "bravo bravo")
	w("d/e/c.txt", "charlie")
	w("d/with space\nand newline", "odd")
	w("d/\xff\xfe", "not utf-8")
	w("h1", "shared inode")
	must(t, os.Link(filepath.Join(root, "h1"), filepath.Join(root, "d", "h2")))
	must(t, os.Symlink("a.txt", filepath.Join(root, "sym")))
	must(t, os.Symlink("/nonexistent/x", filepath.Join(root, "dangling")))
	must(t, unix.Mkfifo(filepath.Join(root, "fifo"), 0o600))
	must(t, unix.Setxattr(filepath.Join(root, "a.txt"), "user.k", []byte("v1"), 0))
	must(t, unix.Setxattr(filepath.Join(root, "d"), "user.dir", []byte("dv"), 0))
	must(t, unix.Setxattr(filepath.Join(root, "d/b.txt"), "system.posix_acl_access", workload.EncodeACL(1001, 1002), 0))
	must(t, unix.Setxattr(filepath.Join(root, "d/e"), "system.posix_acl_default", workload.EncodeDefaultACL(1003, 1004), 0))
	// A .georep at the top is georep's, on either side: never compared.
	w(".georep/ids/x", "index")
}

// copyTree copies src to dst with everything (cp -a keeps hardlinks,
// xattrs, ACLs, owners and nanosecond times).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v: %s", err, out)
	}
}

func compare(t *testing.T, src, dst string, o oracle.Options) *oracle.Report {
	t.Helper()
	r, err := oracle.Compare(src, dst, o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func kinds(r *oracle.Report) []string {
	var ks []string
	for _, d := range r.Differences {
		if !slices.Contains(ks, d.Kind) {
			ks = append(ks, d.Kind)
		}
	}
	return ks
}

// TestCompareCatchesEachKind: a faithful copy matches; each kind of
// difference made in the copy is reported as that kind, and only under the
// options that ask for it.
func TestCompareCatchesEachKind(t *testing.T) {
	testutil.RequireRoot(t) // chown, mknod, ACLs naming other users
	base := t.TempDir()
	src := filepath.Join(base, "src")
	sample(t, src)
	must(t, unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	old := time.Unix(1_600_000_000, 123456789)
	must(t, os.Chtimes(filepath.Join(src, "d", "e"), old, old))

	p := func(dst, rel string) string { return filepath.Join(dst, rel) }
	cases := []struct {
		name   string
		mutate func(t *testing.T, dst string)
		opts   oracle.Options
		want   []string // kinds; nil: the trees still match
	}{
		{"identical", func(*testing.T, string) {}, oracle.Options{MtimeNs: true, DirMtime: true}, nil},
		{"missing file", func(t *testing.T, d string) { must(t, os.Remove(p(d, "d/e/c.txt"))) }, oracle.Options{}, []string{oracle.Missing}},
		{"missing dir", func(t *testing.T, d string) { must(t, os.RemoveAll(p(d, "d/e"))) }, oracle.Options{}, []string{oracle.Missing}},
		{"extra file", func(t *testing.T, d string) { must(t, os.WriteFile(p(d, "d/new"), nil, 0o644)) }, oracle.Options{}, []string{oracle.Extra}},
		{"type file to dir", func(t *testing.T, d string) {
			must(t, os.Remove(p(d, "a.txt")))
			must(t, os.Mkdir(p(d, "a.txt"), 0o644))
		}, oracle.Options{NoMtime: true}, []string{oracle.Type}},
		{"type symlink to file", func(t *testing.T, d string) {
			must(t, os.Remove(p(d, "sym")))
			must(t, os.WriteFile(p(d, "sym"), []byte("alpha"), 0o777))
		}, oracle.Options{NoMtime: true}, []string{oracle.Type}},
		{"content same size", func(t *testing.T, d string) { overwriteKeepTimes(t, p(d, "a.txt"), "alphA") },
			oracle.Options{MtimeNs: true}, []string{oracle.Content}},
		{"content other size", func(t *testing.T, d string) { overwriteKeepTimes(t, p(d, "d/b.txt"), "bravo") },
			oracle.Options{MtimeNs: true}, []string{oracle.Content}},
		{"symlink target", func(t *testing.T, d string) {
			must(t, os.Remove(p(d, "dangling")))
			must(t, os.Symlink("/nonexistent/y", p(d, "dangling")))
		}, oracle.Options{}, []string{oracle.SymlinkTarget}},
		{"mode", func(t *testing.T, d string) { must(t, os.Chmod(p(d, "d/e/c.txt"), 0o600)) }, oracle.Options{}, []string{oracle.Mode}},
		{"setgid bit", func(t *testing.T, d string) { must(t, os.Chmod(p(d, "d"), 0o755|os.ModeSetgid)) }, oracle.Options{}, []string{oracle.Mode}},
		{"owner", func(t *testing.T, d string) { must(t, os.Lchown(p(d, "a.txt"), 1234, 0)) }, oracle.Options{}, []string{oracle.Owner}},
		{"owner ignored", func(t *testing.T, d string) { must(t, os.Lchown(p(d, "a.txt"), 1234, 5678)) }, oracle.Options{NoOwner: true}, nil},
		{"symlink owner", func(t *testing.T, d string) { must(t, os.Lchown(p(d, "sym"), 0, 4321)) }, oracle.Options{}, []string{oracle.Owner}},
		{"mtime seconds", func(t *testing.T, d string) { touch(t, p(d, "a.txt"), time.Unix(1_500_000_000, 0)) }, oracle.Options{}, []string{oracle.Mtime}},
		{"mtime ns seen with MtimeNs", func(t *testing.T, d string) { shiftNs(t, p(d, "d/b.txt")) }, oracle.Options{MtimeNs: true}, []string{oracle.Mtime}},
		{"mtime ns unseen in seconds", func(t *testing.T, d string) { shiftNs(t, p(d, "d/b.txt")) }, oracle.Options{}, nil},
		{"mtime ignored", func(t *testing.T, d string) { touch(t, p(d, "a.txt"), time.Unix(1_500_000_000, 0)) }, oracle.Options{NoMtime: true}, nil},
		{"dir mtime seen with DirMtime", func(t *testing.T, d string) { touch(t, p(d, "d/e"), time.Unix(1_500_000_000, 0)) }, oracle.Options{DirMtime: true}, []string{oracle.Mtime}},
		{"dir mtime unseen", func(t *testing.T, d string) { touch(t, p(d, "d/e"), time.Unix(1_500_000_000, 0)) }, oracle.Options{}, nil},
		{"xattr value", func(t *testing.T, d string) { must(t, unix.Setxattr(p(d, "a.txt"), "user.k", []byte("v2"), 0)) }, oracle.Options{}, []string{oracle.Xattr}},
		{"xattr missing", func(t *testing.T, d string) { must(t, unix.Removexattr(p(d, "d"), "user.dir")) }, oracle.Options{}, []string{oracle.Xattr}},
		{"xattr extra", func(t *testing.T, d string) { must(t, unix.Setxattr(p(d, "d/e/c.txt"), "user.more", nil, 0)) }, oracle.Options{}, []string{oracle.Xattr}},
		{"xattr ignored", func(t *testing.T, d string) { must(t, unix.Setxattr(p(d, "a.txt"), "user.k", []byte("v2"), 0)) }, oracle.Options{NoXattrs: true}, nil},
		{"trusted xattr not compared", func(t *testing.T, d string) { must(t, unix.Setxattr(p(d, "a.txt"), "trusted.k", []byte("x"), 0)) }, oracle.Options{}, nil},
		{"access acl missing", func(t *testing.T, d string) { must(t, unix.Removexattr(p(d, "d/b.txt"), "system.posix_acl_access")) },
			oracle.Options{}, []string{oracle.ACL}}, // the mode keeps the mask as its group bits
		{"access acl other user", func(t *testing.T, d string) {
			must(t, unix.Setxattr(p(d, "d/b.txt"), "system.posix_acl_access", workload.EncodeACL(1009, 1002), 0))
		}, oracle.Options{}, []string{oracle.ACL}},
		{"default acl missing", func(t *testing.T, d string) { must(t, unix.Removexattr(p(d, "d/e"), "system.posix_acl_default")) },
			oracle.Options{}, []string{oracle.ACL}},
		{"acl ignored", func(t *testing.T, d string) { must(t, unix.Removexattr(p(d, "d/e"), "system.posix_acl_default")) },
			oracle.Options{NoACLs: true}, nil},
		{"hardlink broken", func(t *testing.T, d string) {
			must(t, os.Remove(p(d, "d/h2")))
			copyTree(t, p(d, "h1"), p(d, "d/h2"))
		}, oracle.Options{MtimeNs: true}, []string{oracle.Hardlink}},
		{"hardlink added", func(t *testing.T, d string) {
			must(t, os.Remove(p(d, "d/e/c.txt")))
			must(t, os.Link(p(d, "a.txt"), p(d, "d/e/c.txt")))
		}, oracle.Options{NoMtime: true, NoXattrs: true}, []string{oracle.Content, oracle.Hardlink}},
		{"device numbers", func(t *testing.T, d string) {
			must(t, os.Remove(p(d, "null")))
			must(t, unix.Mknod(p(d, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))))
		}, oracle.Options{NoMtime: true}, []string{oracle.Rdev}},
		{"fifo to file", func(t *testing.T, d string) {
			must(t, os.Remove(p(d, "fifo")))
			must(t, os.WriteFile(p(d, "fifo"), nil, 0o600))
		}, oracle.Options{NoMtime: true}, []string{oracle.Type}},
		{"odd name changed", func(t *testing.T, d string) { must(t, os.Rename(p(d, "d/\xff\xfe"), p(d, "d/\xff\xfd"))) },
			oracle.Options{}, []string{oracle.Missing, oracle.Extra}},
		{"excluded difference", func(t *testing.T, d string) { must(t, os.RemoveAll(p(d, "d/e"))) },
			oracle.Options{Exclude: []string{"e/"}}, nil},
		{"exclude of a file only", func(t *testing.T, d string) { must(t, os.RemoveAll(p(d, "d/e"))) },
			oracle.Options{Exclude: []string{"/d/e/c.txt"}}, []string{oracle.Missing}},
		{"georep index ignored", func(t *testing.T, d string) { must(t, os.RemoveAll(p(d, ".georep"))) }, oracle.Options{}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "dst")
			copyTree(t, src, dst)
			c.mutate(t, dst)
			r := compare(t, src, dst, c.opts)
			got := kinds(r)
			slices.Sort(got)
			want := slices.Clone(c.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("kinds of difference %q, want %q; report:\n%s", got, want, report(r))
			}
			if r.OK() != (len(c.want) == 0) {
				t.Errorf("OK() = %v with differences %q", r.OK(), got)
			}
		})
	}
}

func report(r *oracle.Report) string {
	var b strings.Builder
	r.Write(&b, 50)
	return b.String()
}

func touch(t *testing.T, p string, at time.Time) {
	t.Helper()
	ts := []unix.Timespec{unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(at.UnixNano())}
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
}

// shiftNs moves p's mtime within its second.
func shiftNs(t *testing.T, p string) {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Lstat(p, &st))
	ns := st.Mtim.Nsec + 1
	if ns >= 1e9 {
		ns = st.Mtim.Nsec - 1
	}
	touch(t, p, time.Unix(st.Mtim.Sec, ns))
}

// overwriteKeepTimes writes data into p and puts its times back.
func overwriteKeepTimes(t *testing.T, p, data string) {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Lstat(p, &st))
	must(t, os.WriteFile(p, []byte(data), 0))
	touch(t, p, time.Unix(st.Mtim.Sec, st.Mtim.Nsec))
}

// TestCompareWorkloadCopy: the churned workload tree (every kind of entry
// the generator makes) copied with cp -a matches at nanosecond and
// directory-mtime precision; one change in it does not.
func TestCompareWorkloadCopy(t *testing.T) {
	testutil.RequireRoot(t)
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	testutil.Workload(t, "populate", src, "--files", "600", "--dirs", "27", "--seed", "3")
	testutil.Workload(t, "churn", src, "--scale", "0.1", "--seed", "4")
	copyTree(t, src, dst)
	r := compare(t, src, dst, oracle.Options{MtimeNs: true, DirMtime: true})
	if !r.OK() || r.SourceEntries < 600 || r.SourceEntries != r.ReplicaEntries {
		t.Fatalf("a cp -a copy: %s", report(r))
	}
	must(t, os.Remove(filepath.Join(dst, "odd names", "fifo")))
	if r := compare(t, src, dst, oracle.Options{}); r.OK() || r.Counts()[oracle.Missing] != 1 {
		t.Fatalf("a removed FIFO: %s", report(r))
	}
}

// TestCompareRefusesWhatItCannotRead: a source root that does not exist, a
// root that is not a directory, or a directory that cannot be read, is an
// error, never an empty tree; a replica root not made yet is an empty
// replica, never a match.
func TestCompareRefusesWhatItCannotRead(t *testing.T) {
	src := t.TempDir()
	sample(t, src)
	if _, err := oracle.Compare(filepath.Join(t.TempDir(), "nope"), src, oracle.Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing source root: got %v, want ErrNotExist", err)
	}
	// A replica not made yet is empty (a test polls until it converges).
	if r, err := oracle.Compare(src, filepath.Join(t.TempDir(), "nope"), oracle.Options{}); err != nil {
		t.Errorf("missing replica root: %v", err)
	} else if r.OK() || r.Counts()[oracle.Missing] != r.SourceEntries+1 || r.Differences[0].Path != "." {
		t.Errorf("missing replica root: %s", report(r))
	}
	if _, err := oracle.Compare(src, filepath.Join(src, "a.txt"), oracle.Options{}); err == nil {
		t.Error("a file as the replica root: no error")
	}
	if os.Geteuid() != 0 { // root reads a mode-000 directory
		dst := filepath.Join(t.TempDir(), "dst")
		copyTree(t, src, dst)
		must(t, os.Chmod(filepath.Join(dst, "d"), 0))
		defer os.Chmod(filepath.Join(dst, "d"), 0o755)
		if _, err := oracle.Compare(src, dst, oracle.Options{}); !errors.Is(err, os.ErrPermission) {
			t.Errorf("unreadable directory: got %v, want a permission error", err)
		}
	}
}

// TestReportOrderAndSummary: differences are listed missing, extra, then by
// path, and the summary is verify.py's line.
func TestReportOrderAndSummary(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	for _, n := range []string{"b", "a", "c"} {
		must(t, os.WriteFile(filepath.Join(src, n), []byte(n), 0o644))
	}
	must(t, os.WriteFile(filepath.Join(dst, "a"), []byte("A"), 0o644))
	must(t, os.WriteFile(filepath.Join(dst, "z"), nil, 0o644))
	r := compare(t, src, dst, oracle.Options{NoMtime: true})
	var got []string
	for _, d := range r.Differences {
		got = append(got, d.Kind+" "+d.Path)
	}
	want := []string{"missing b", "missing c", "extra z", "content a"}
	if !slices.Equal(got, want) {
		t.Errorf("differences %q, want %q", got, want)
	}
	if s, w := r.Summary(), "verify: 3 entries in source, 2 in replica; differences: content 1, extra 1, missing 2"; s != w {
		t.Errorf("summary %q, want %q", s, w)
	}
}

func TestParseArgs(t *testing.T) {
	a, err := oracle.ParseArgs([]string{"--mtime-ns", "S", "--exclude", "x/", "D", "--exclude=/y", "--no-owner", "--dir-mtime", "--no-xattrs", "--no-acls", "--show", "3"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Src != "S" || a.Dst != "D" || !a.MtimeNs || !a.NoOwner || !a.DirMtime || !a.NoXattrs || !a.NoACLs || a.Show != 3 ||
		!slices.Equal(a.Exclude, []string{"x/", "/y"}) {
		t.Errorf("parsed %+v", a)
	}
	for _, bad := range [][]string{
		{"S"}, {"S", "D", "E"}, {"S", "D", "--bogus"}, {"S", "D", "--exclude"}, {"S", "D", "--exclude", "/"},
		{"S", "D", "--show", "-1"}, {"S", "D", "--mtime-ns=1"},
	} {
		if _, err := oracle.ParseArgs(bad); !errors.Is(err, oracle.ErrUsage) {
			t.Errorf("ParseArgs(%q): %v, want ErrUsage", bad, err)
		}
	}
}

// FuzzParseArgs: no command line makes verify.py's parser panic; what it
// refuses is a usage error, what it accepts has both roots and only
// patterns that parse.
func FuzzParseArgs(f *testing.F) {
	for _, s := range []string{"S\x00D", "S\x00D\x00--exclude\x00*.o", "--mtime-ns\x00S\x00--exclude=/x/\x00D", "S\x00D\x00--show\x00x", "--\x00--S\x00D"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Split(line, "\x00")
		a, err := oracle.ParseArgs(args)
		if err != nil {
			if !errors.Is(err, oracle.ErrUsage) {
				t.Fatalf("ParseArgs(%q): %v, not a usage error", args, err)
			}
			return
		}
		if a.Show < 0 {
			t.Fatalf("ParseArgs(%q): show %d", args, a.Show)
		}
		for _, e := range a.Exclude {
			if _, err := oracle.ParsePattern(e); err != nil {
				t.Fatalf("ParseArgs(%q) accepted the pattern %q: %v", args, e, err)
			}
		}
	})
}
