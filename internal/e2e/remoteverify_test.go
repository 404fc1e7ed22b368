package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/protocol"
	"github.com/georep/georep/internal/secondary"
	"github.com/georep/georep/internal/testutil"
	"github.com/georep/georep/internal/tree"
	"github.com/georep/georep/internal/verify"
	"golang.org/x/sys/unix"
)

// rvAgent is a secondary agent served in this process over pipes, with the
// handshake done: what verify.Remote gets from worker.Connect over ssh.
type rvAgent struct {
	conn   *protocol.Conn
	client io.Closer
	served chan error // Serve's result
	cancel context.CancelFunc
}

func (s *rvAgent) Conn() *protocol.Conn { return s.conn }

func (s *rvAgent) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	s.conn.Call(ctx, &protocol.Bye{})
	cancel()
	s.conn.Close()
	s.client.Close()
	return nil
}

type rvPipe struct {
	io.Reader
	io.Writer
	close func()
}

func (p rvPipe) Close() error { p.close(); return nil }

// rvStartAgent serves root with a fresh agent and says Hello as the primary
// tree primary would. keepalive is the primary's ping interval (0: none).
func rvStartAgent(t testing.TB, primary, root string, idle, keepalive time.Duration) *rvAgent {
	t.Helper()
	rootID, err := fileid.OfPath(primary)
	if err != nil {
		testutil.CannotRun(t, "file handles unavailable here: %v", err)
	}
	toAgentR, toAgentW := io.Pipe()
	fromAgentR, fromAgentW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	a := &rvAgent{served: make(chan error, 1), cancel: cancel}
	agentSide := rvPipe{Reader: toAgentR, Writer: fromAgentW, close: func() { toAgentR.Close(); fromAgentW.Close() }}
	go func() {
		err := secondary.Serve(ctx, agentSide, secondary.Options{Root: root, Software: "test", IdleTimeout: idle})
		fromAgentW.CloseWithError(errors.New("agent ended"))
		a.served <- err
	}()
	client := rvPipe{Reader: fromAgentR, Writer: toAgentW, close: func() { toAgentW.Close(); fromAgentR.Close() }}
	a.client = client
	a.conn = protocol.NewConn(client)
	hctx, hcancel := context.WithTimeout(ctx, 10*time.Second)
	defer hcancel()
	if _, err := a.conn.Call(hctx, &protocol.Hello{Version: protocol.Version, Software: "test", RootID: rootID, Session: "rvtest"}); err != nil {
		t.Fatalf("hello: %v", err)
	}
	if keepalive > 0 {
		go a.conn.Keepalive(ctx, keepalive, time.Minute)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-a.served:
		case <-time.After(10 * time.Second):
			t.Errorf("the agent did not end within 10s of its session")
		}
	})
	return a
}

// rvItems collects what a Source yields, by path.
func rvItems(t testing.TB, src verify.Source, opts verify.Options) map[string]verify.Item {
	t.Helper()
	got := map[string]verify.Item{}
	err := src.Items(context.Background(), opts, func(it verify.Item) error {
		if _, dup := got[it.Path]; dup && it.Err == "" {
			return fmt.Errorf("path %q twice", it.Path)
		}
		got[it.Path] = it
		return nil
	})
	if err != nil {
		t.Fatalf("Items: %v", err)
	}
	delete(got, verify.AlwaysExcluded)
	return got
}

// rvOddTree makes a tree with every kind of entry verify distinguishes.
// locked adds a directory only root can read (both sides then report the
// same error item for it when not root).
func rvOddTree(t testing.TB, root string, locked bool) (xattrs bool) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	w := func(rel, data string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(root, rel)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, []byte(data), mode))
		must(os.Chmod(p, mode))
	}
	w("a.txt", "hello", 0o644)
	w("empty", "", 0o600)
	w("sub/deeper/b.bin", strings.Repeat("x", 300<<10), 0o640)
	w("sub/setuid", "s", 0o4755)
	w("new\nline \xff\xfe/file", "odd", 0o644)
	must(os.Link(filepath.Join(root, "a.txt"), filepath.Join(root, "sub", "a-link")))
	must(os.Symlink("/nonexistent/target", filepath.Join(root, "dangling")))
	must(os.Symlink("..", filepath.Join(root, "sub", "up")))
	must(os.Symlink("/etc", filepath.Join(root, "escape")))
	must(syscall.Mkfifo(filepath.Join(root, "fifo"), 0o640))
	must(os.Mkdir(filepath.Join(root, "emptydir"), 0o711))
	if locked {
		w("locked/x", "x", 0o000)
		must(os.Chmod(filepath.Join(root, "locked"), 0o000))
		t.Cleanup(func() { os.Chmod(filepath.Join(root, "locked"), 0o755) })
	}
	if os.Geteuid() == 0 {
		must(syscall.Mknod(filepath.Join(root, "null"), syscall.S_IFCHR|0o666, 1<<8|3))
		must(os.Lchown(filepath.Join(root, "a.txt"), 1234, 5678))
	}
	deep := root
	for range 40 {
		deep = filepath.Join(deep, "level-with-a-long-name-to-make-paths-long-xxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
	}
	must(os.MkdirAll(deep, 0o755))
	must(os.WriteFile(filepath.Join(deep, "deep.txt"), []byte("deep"), 0o644))
	// Fake-super stand-ins and owners, one broken on purpose.
	w("standin-null", "", 0o600)
	w("owned", "data", 0o600)
	w("broken-stat", "", 0o600)
	if err := unix.Setxattr(filepath.Join(root, "a.txt"), "user.k", []byte("v"), 0); err != nil {
		t.Logf("no user xattrs on this filesystem (%v): xattr cases skipped", err)
		return false
	}
	must(unix.Setxattr(filepath.Join(root, "sub"), "user.dir", []byte("d"), 0))
	must(unix.Setxattr(filepath.Join(root, "standin-null"), verify.FakeStatXattr, []byte(verify.EncodeFakeStat(tree.KindChar, 0o666, unix.Mkdev(1, 3), 0, 0)), 0))
	must(unix.Setxattr(filepath.Join(root, "owned"), verify.FakeStatXattr, []byte(verify.EncodeFakeStat(tree.KindRegular, 0o640, 0, 1000, 1001)), 0))
	must(unix.Setxattr(filepath.Join(root, "broken-stat"), verify.FakeStatXattr, []byte("garbage"), 0))
	must(unix.Setxattr(filepath.Join(root, "emptydir"), verify.FakeStatXattr, []byte(verify.EncodeFakeStat(tree.KindDir, 0o755, 0, 7, 8)), 0))
	return true
}

// TestRemoteSourceMatchesLocal: for every kind of entry, and with each
// option that reaches the walk, the Items that the agent's listing yields
// are exactly those verify.Local yields on the same directory.
func TestRemoteSourceMatchesLocal(t *testing.T) {
	dir := t.TempDir()
	p, s := filepath.Join(dir, "P"), filepath.Join(dir, "S")
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	hasX := rvOddTree(t, s, true)
	cases := []struct {
		name string
		opts verify.Options
	}{
		{"default", verify.Options{}},
		{"fake-super", verify.Options{FakeSuper: true}},
		{"fake-super-no-xattrs", verify.Options{FakeSuper: true, NoXattrs: true}},
		{"no-xattrs", verify.Options{NoXattrs: true}},
		{"excludes", verify.Options{Excludes: []string{"sub", "/dangling/"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// A session per listing, as the command makes.
			agent := rvStartAgent(t, p, s, 0, 0)
			var stats verify.RemoteStats
			remote := verify.Remote(verify.RemoteConfig{Name: "in-process", Done: func(st verify.RemoteStats) { stats = st },
				Connect: func(context.Context) (verify.RemoteSession, error) { return agent, nil }})
			got := rvItems(t, remote, c.opts)
			want := rvItems(t, verify.Local(s), c.opts)
			if len(got) != len(want) || len(got) < 10 {
				t.Errorf("%d items from the agent, %d from Local", len(got), len(want))
			}
			for path, w := range want {
				g, ok := got[path]
				if !ok {
					t.Errorf("%q: missing from the agent's listing", path)
					continue
				}
				if !reflect.DeepEqual(g, w) {
					t.Errorf("%q:\n agent %+v\n local %+v", path, g, w)
				}
			}
			for path := range got {
				if _, ok := want[path]; !ok {
					t.Errorf("%q: only in the agent's listing", path)
				}
			}
			if stats.Items != int64(len(got)) || (c.opts.Excludes == nil && stats.HashedBytes < 300<<10) {
				t.Errorf("stats %+v for %d items", stats, len(got))
			}
			if c.opts.FakeSuper && hasX {
				if it := got["standin-null"]; it.Kind != tree.KindChar || it.Rdev != unix.Mkdev(1, 3) {
					t.Errorf("fake-super stand-in read as %+v", it)
				}
				if it := got["broken-stat"]; it.Err == "" {
					t.Errorf("a malformed %s gave no error: %+v", verify.FakeStatXattr, it)
				}
			}
			if it := got["escape"]; it.Kind != tree.KindSymlink || it.Target != "/etc" {
				t.Errorf("planted symlink listed as %+v", it)
			}
			for path := range got {
				if strings.HasPrefix(path, "escape/") || strings.HasPrefix(path, "sub/up/") {
					t.Errorf("the walk followed a symlink: %q", path)
				}
			}
		})
	}
}

// TestRemoteVerifyCompare runs Compare with the agent as the replica:
// identical trees match; a changed byte, mode and a missing file are the
// differences reported, as for a local replica.
func TestRemoteVerifyCompare(t *testing.T) {
	dir := t.TempDir()
	p, s := filepath.Join(dir, "P"), filepath.Join(dir, "S")
	rvOddTree(t, p, false)
	rvOddTree(t, s, false)
	// Same content, same times.
	rvCopyTimes(t, p, s)
	compare := func() *verify.Report {
		t.Helper()
		agent := rvStartAgent(t, p, s, 0, 0)
		remote := verify.Remote(verify.RemoteConfig{Connect: func(context.Context) (verify.RemoteSession, error) { return agent, nil }})
		rep, err := verify.Compare(context.Background(), verify.Local(p), remote, verify.Options{})
		if err != nil {
			t.Fatal(err)
		}
		lrep, err := verify.Compare(context.Background(), verify.Local(p), verify.Local(s), verify.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(rep.Differences, lrep.Differences) {
			t.Errorf("remote and local replicas differ differently:\n remote %v\n local  %v", rep.Differences, lrep.Differences)
		}
		return rep
	}
	if rep := compare(); !rep.OK() {
		var b bytes.Buffer
		rep.Print(&b, 50)
		t.Fatalf("identical trees do not match:\n%s", b.String())
	}
	f := filepath.Join(s, "sub", "deeper", "b.bin")
	st, _ := os.Stat(f)
	fh, err := os.OpenFile(f, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteAt([]byte("y"), 1000)
	fh.Close()
	os.Chtimes(f, st.ModTime(), st.ModTime())
	os.Chmod(filepath.Join(s, "empty"), 0o644)
	os.Remove(filepath.Join(s, "new\nline \xff\xfe", "file"))
	rep := compare()
	want := map[string]int{"content": 1, "mode": 1, "missing": 1}
	if !reflect.DeepEqual(rep.Counts, want) {
		t.Errorf("counts %v, want %v: %v", rep.Counts, want, rep.Differences)
	}
}

// rvCopyTimes gives every entry of dst the mtime of the same path in src.
func rvCopyTimes(t testing.TB, src, dst string) {
	t.Helper()
	var dirs []string
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(src, p)
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil {
			return nil
		}
		ts := []unix.Timespec{st.Atim, st.Mtim}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			dirs = append(dirs, target) // after their content
			return nil
		}
		unix.UtimesNanoAt(unix.AT_FDCWD, target, ts, unix.AT_SYMLINK_NOFOLLOW)
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		rel, _ := filepath.Rel(dst, dirs[i])
		var st unix.Stat_t
		if unix.Lstat(filepath.Join(src, rel), &st) == nil {
			unix.UtimesNanoAt(unix.AT_FDCWD, dirs[i], []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
		}
	}
}

// TestRemoteVerifyOutlivesIdleTimeout: a listing that lasts several times
// the agent's idle timeout completes: the agent keeps reading (and hearing
// the primary's pings) while its walk streams the listing.
func TestRemoteVerifyOutlivesIdleTimeout(t *testing.T) {
	dir := t.TempDir()
	p, s := filepath.Join(dir, "P"), filepath.Join(dir, "S")
	os.MkdirAll(p, 0o755)
	for i := range 4000 {
		sub := filepath.Join(s, fmt.Sprintf("d%02d", i%40))
		os.MkdirAll(sub, 0o755)
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%05d", i)), bytes.Repeat([]byte{byte(i)}, 2048), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// 60 ms (with pings every 10 ms) failed now and then on a loaded 2-core
	// machine under -race: a scheduling stall longer than the idle timeout
	// is not what this test is about.
	const idle = 200 * time.Millisecond
	agent := rvStartAgent(t, p, s, idle, 20*time.Millisecond)
	remote := verify.Remote(verify.RemoteConfig{Jobs: 1, Connect: func(context.Context) (verify.RemoteSession, error) { return agent, nil }})
	start := time.Now()
	n := 0
	err := remote.Items(context.Background(), verify.Options{}, func(verify.Item) error { n++; return nil })
	took := time.Since(start)
	if err != nil {
		t.Fatalf("listing failed after %s (idle timeout %s): %v", took, idle, err)
	}
	if n != 4040 {
		t.Errorf("%d items, want 4040", n)
	}
	t.Logf("%d items in %s, %.1fx the agent's idle timeout", n, took, took.Seconds()/idle.Seconds())
}

// TestRemoteVerifyAbort: when the consumer gives up, Items returns its
// error and the agent ends its session instead of walking on.
func TestRemoteVerifyAbort(t *testing.T) {
	dir := t.TempDir()
	p, s := filepath.Join(dir, "P"), filepath.Join(dir, "S")
	os.MkdirAll(p, 0o755)
	for i := range 3000 {
		os.MkdirAll(filepath.Join(s, fmt.Sprintf("d%d", i%30)), 0o755)
		os.WriteFile(filepath.Join(s, fmt.Sprintf("d%d", i%30), fmt.Sprint(i)), []byte("x"), 0o644)
	}
	agent := rvStartAgent(t, p, s, 0, 0)
	remote := verify.Remote(verify.RemoteConfig{Connect: func(context.Context) (verify.RemoteSession, error) { return agent, nil }})
	stop := errors.New("enough")
	n := 0
	err := remote.Items(context.Background(), verify.Options{}, func(verify.Item) error {
		if n++; n == 10 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Items returned %v, want the consumer's error", err)
	}
	select {
	case <-agent.served:
		agent.served <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not end its session after the primary gave up")
	}
}

// rvRun runs `georep verify args...` and returns its exit code, output and
// duration.
func rvRun(t testing.TB, bin string, args ...string) (int, string, time.Duration) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"verify"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), took
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), took
	}
	t.Fatalf("georep verify %v: %v\n%s", args, err, out.String())
	return -1, "", 0
}

var rvSummary = regexp.MustCompile(`(?m)^verify: (\d+) entries in source, (\d+) in replica; differences: (.*)$`)

// rvPickFiles returns n regular files of the replica (outside .georep)
// with a single link in the tree, so that changing one changes one path.
func rvPickFiles(t testing.TB, root string, n int) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || len(out) >= n {
			return filepath.SkipDir
		}
		rel, _ := filepath.Rel(root, p)
		if rel == verify.AlwaysExcluded {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if d.Type().IsRegular() && unix.Lstat(p, &st) == nil && st.Nlink == 2 && st.Size > 16 &&
			!strings.ContainsAny(rel, "'\n\\\"") {
			out = append(out, rel)
		}
		return nil
	})
	if len(out) < n {
		t.Fatalf("found only %d single-link files in %s", len(out), root)
	}
	return out
}

// TestRemoteVerifyOverSSH: `georep verify SRC user@host:/path` through a
// real sshd on the 20,000-file tree: identical → exit 0; one modified byte
// (same size and mtime), one changed mode and one missing file on the
// secondary → exit 1 naming exactly those, as a local verify does.
func TestRemoteVerifyOverSSH(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.GeorepBin(t)
	sshd := testutil.StartSSHD(t, testutil.SSHDOptions{})
	dir := workdir(t)
	p, s, st := filepath.Join(dir, "P"), filepath.Join(dir, "S"), filepath.Join(dir, "state")
	testutil.Workload(t, "populate", p, "--files", "20000")
	dst := sshd.UserHost() + ":" + s
	ssh := []string{"--ssh-command", sshd.SSHCommand(), "--remote-georep", bin}
	runSync(t, bin, append([]string{p, dst, "--state-dir", st}, ssh...)...)

	code, out, remoteTook := rvRun(t, bin, append([]string{p, dst, "-v"}, ssh...)...)
	if code != 0 {
		t.Fatalf("remote verify of identical trees: exit %d\n%s", code, tail(out, 3000))
	}
	m := rvSummary.FindStringSubmatch(out)
	if m == nil || m[1] != m[2] || m[3] != "none" {
		t.Fatalf("unexpected summary:\n%s", tail(out, 3000))
	}
	lcode, lout, localTook := rvRun(t, bin, p, s)
	if lcode != 0 {
		t.Fatalf("local verify: exit %d\n%s", lcode, lout)
	}
	t.Logf("verify of %s entries: remote over ssh %.2fs, local %.2fs", m[1], remoteTook.Seconds(), localTook.Seconds())
	if line := regexp.MustCompile(`replica listed by its agent.*`).FindString(out); line != "" {
		t.Logf("%s", line)
	}

	files := rvPickFiles(t, s, 3)
	changed, chmodded, removed := files[0], files[1], files[2]
	f := filepath.Join(s, changed)
	var before unix.Stat_t
	if err := unix.Stat(f, &before); err != nil {
		t.Fatal(err)
	}
	fh, err := os.OpenFile(f, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	fh.ReadAt(b, before.Size/2)
	fh.WriteAt([]byte{b[0] ^ 0x5a}, before.Size/2)
	fh.Close()
	if err := unix.UtimesNano(f, []unix.Timespec{before.Atim, before.Mtim}); err != nil {
		t.Fatal(err)
	}
	var mst unix.Stat_t
	unix.Stat(filepath.Join(s, chmodded), &mst)
	if err := os.Chmod(filepath.Join(s, chmodded), os.FileMode(mst.Mode&0o777^0o070)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(s, removed)); err != nil {
		t.Fatal(err)
	}

	code, out, _ = rvRun(t, bin, append([]string{p, dst}, ssh...)...)
	if code != 1 {
		t.Fatalf("remote verify with three differences: exit %d, want 1\n%s", code, tail(out, 3000))
	}
	for _, want := range []string{"content: '" + changed + "'", "mode: '" + chmodded + "'", "missing: '" + removed + "'",
		"differences: content 1, missing 1, mode 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("remote verify output lacks %q:\n%s", want, tail(out, 3000))
		}
	}
	_, lout, _ = rvRun(t, bin, p, s)
	if rvSummary.FindString(lout) != rvSummary.FindString(out) {
		t.Errorf("remote and local verify disagree:\n remote: %s\n local:  %s", rvSummary.FindString(out), rvSummary.FindString(lout))
	}
}

// TestRemoteVerifyFakeSuperOverSSH: a secondary reached as a non-root user
// keeps owners and the device file in user.georep.stat; `georep verify
// --fake-super` over ssh reads them there and finds the replica identical
// (without --fake-super it does not).
func TestRemoteVerifyFakeSuperOverSSH(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.GeorepBin(t)
	sshd := testutil.StartSSHD(t, testutil.SSHDOptions{User: testutil.TestUserName()})
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755) // the test's temp root is 0700
	p, s := filepath.Join(dir, "P"), filepath.Join(dir, "S")
	if err := os.MkdirAll(s, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chown", sshd.User, s).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	testutil.Workload(t, "populate", p, "--files", "500", "--dirs", "8")
	testutil.Workload(t, "churn", p, "--scale", "0.1")
	if err := syscall.Mknod(filepath.Join(p, "null"), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(p, "null"), 1234, 5678); err != nil {
		t.Fatal(err)
	}
	dst := sshd.UserHost() + ":" + s
	ssh := []string{"--ssh-command", sshd.SSHCommand(), "--remote-georep", bin}
	sum := runSync(t, bin, append([]string{p, dst, "--no-owner", "--state-dir", filepath.Join(dir, "st")}, ssh...)...)
	if sum.Stats.Failures != 0 {
		t.Fatalf("%d failures", sum.Stats.Failures)
	}
	code, out, took := rvRun(t, bin, append([]string{"--fake-super", p, dst}, ssh...)...)
	if code != 0 {
		t.Fatalf("georep verify --fake-super over ssh as %s: exit %d\n%s", sshd.User, code, tail(out, 3000))
	}
	t.Logf("fake-super verify over ssh: %.2fs: %s", took.Seconds(), rvSummary.FindString(out))
	code, out, _ = rvRun(t, bin, append([]string{p, dst, "--show", "100000"}, ssh...)...)
	if code != 1 || !strings.Contains(out, "owner: ") || !strings.Contains(out, "type: 'null' chardev vs file") {
		t.Errorf("without --fake-super the non-root replica should differ in owners and the device: exit %d\n%s", code, tail(out, 2000))
	}
	if code, lout, _ := rvRun(t, bin, "--fake-super", p, s); code != 0 {
		t.Errorf("local --fake-super verify of the same replica: exit %d\n%s", code, tail(lout, 2000))
	}
}
