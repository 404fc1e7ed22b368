package testutil

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSSHDEcho(t *testing.T) {
	t.Parallel()
	s := StartSSHD(t, SSHDOptions{})
	out, err := s.Run(t, "echo", "hi")
	if err != nil {
		t.Fatal(err)
	}
	if out != "hi\n" {
		t.Fatalf("echo hi through ssh: got %q", out)
	}
	// Arguments arrive as single words, whatever they hold.
	out, err = s.Run(t, "printf", "%s|", "a b", "it's", "$HOME")
	if err != nil {
		t.Fatal(err)
	}
	if want := "a b|it's|$HOME|"; out != want {
		t.Fatalf("quoting: got %q, want %q", out, want)
	}
	// The user's ~/.bashrc is not run (root's starts pyenv here: slow, and
	// lock-contended under parallel logins).
	if out, err := s.Run(t, "printenv", "PATH"); err != nil || strings.Contains(out, "/.pyenv/") {
		t.Fatalf("remote PATH %q (%v): ~/.bashrc was run", out, err)
	}
	// SSHCommand is usable as a command line, as georep's --ssh-command is.
	b, err := exec.Command("sh", "-c", s.SSHCommand()+" "+s.UserHost()+" echo via-command").CombinedOutput()
	if err != nil || string(b) != "via-command\n" {
		t.Fatalf("SSHCommand %q: %v: %q", s.SSHCommand(), err, b)
	}
}

func TestSSHDForcedCommand(t *testing.T) {
	t.Parallel()
	s := StartSSHD(t, SSHDOptions{ForcedCommand: `echo "forced:$SSH_ORIGINAL_COMMAND"`})
	out, err := s.Run(t, "id")
	if err != nil {
		t.Fatal(err)
	}
	if out != "forced:id\n" {
		t.Fatalf("forced command: running id gave %q, want the forced command's output", out)
	}
}

func TestSSHDAuthorizedKeysLine(t *testing.T) {
	t.Parallel()
	s := StartSSHD(t, SSHDOptions{AuthorizedKeysLine: `from="127.0.0.1",command="echo line" {pubkey}`})
	if out, err := s.Run(t, "true"); err != nil || out != "line\n" {
		t.Fatalf("got %q, %v", out, err)
	}
	// A key the server no longer knows is refused at the next login.
	s.SetAuthorizedKeysLine(t, `from="192.0.2.1" {pubkey}`)
	if out, err := s.Run(t, "true"); err == nil {
		t.Fatalf("login allowed from a foreign address: %q", out)
	}
}

func TestSSHDKillRestart(t *testing.T) {
	t.Parallel()
	s := StartSSHD(t, SSHDOptions{})
	port := s.Port

	// A session in progress dies with the server.
	long := exec.Command(s.SSHArgs()[0], append(s.SSHArgs()[1:], s.UserHost(), "sleep 60")...)
	if err := long.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the remote sleep", func() bool {
		for _, p := range descendants(s.pid()) {
			if comm, _ := os.ReadFile("/proc/" + strconv.Itoa(p) + "/comm"); string(comm) == "sleep\n" {
				return true
			}
		}
		return false
	})
	s.Kill()
	if s.Running() {
		t.Fatal("Running after Kill")
	}
	exited := make(chan error, 1)
	go func() { exited <- long.Wait() }()
	select {
	case err := <-exited:
		if err == nil {
			t.Fatal("ssh session ended cleanly though its server was killed")
		}
	case <-time.After(10 * time.Second):
		long.Process.Kill()
		t.Fatal("ssh session still running 10 s after its server was killed")
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(s.Host, strconv.Itoa(port)), time.Second); err == nil {
		c.Close()
		t.Fatal("port still accepts connections after Kill")
	}
	if _, err := s.Run(t, "true"); err == nil {
		t.Fatal("ssh works after Kill")
	}

	s.Restart(t)
	if s.Port != port {
		t.Fatalf("port changed across Restart: %d -> %d", port, s.Port)
	}
	if out, err := s.Run(t, "echo", "back"); err != nil || out != "back\n" {
		t.Fatalf("after Restart: %q, %v", out, err)
	}
}

func TestSSHDOtherUser(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	name := TestUserName()
	s := StartSSHD(t, SSHDOptions{User: name})
	if s.User != name {
		t.Fatalf("User = %q", s.User)
	}
	out, err := s.Run(t, "id", "-un")
	if err != nil {
		t.Fatal(err)
	}
	if out != name+"\n" {
		t.Fatalf("logged in as %q, want %s", out, name)
	}
}

func TestLoopExt4Writable(t *testing.T) {
	t.Parallel()
	dir := LoopExt4(t, 32)
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != 0xEF53 {
		t.Fatalf("%s: filesystem magic %#x, want ext4 (0xef53)", dir, st.Type)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Fatalf("fresh mount not empty: %v, %v", ents, err)
	}
	p := filepath.Join(dir, "sub", "f")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "data" {
		t.Fatalf("read back %q, %v", b, err)
	}
	if err := exec.Command("setfattr", "-n", "user.k", "-v", "v", p).Run(); err != nil {
		t.Logf("setfattr (package attr) not usable: %v", err)
	}
}

func TestTinyFSFillsUp(t *testing.T) {
	t.Parallel()
	dir := TinyFS(t, 1)
	f, err := os.Create(filepath.Join(dir, "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for range 64 { // 4 MiB cannot fit in 1 MiB
		if _, err = f.Write(buf); err != nil {
			break
		}
	}
	if err == nil {
		err = f.Sync()
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling a 1 MiB TinyFS: got %v, want ENOSPC", err)
	}
}

func TestNetnsLinkDownUp(t *testing.T) {
	t.Parallel()
	ns := NewNetnsPair(t)
	s := StartSSHDInNetns(t, ns, SSHDOptions{})
	addr := net.JoinHostPort(ns.NSAddr, "22")

	if out, err := s.Run(t, "echo", "hi"); err != nil || out != "hi\n" {
		t.Fatalf("ssh into the namespace: %q, %v", out, err)
	}
	// The sshd really runs in the namespace: it sees only lo and its veth.
	out, err := ns.Exec(t, "ip", "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(strings.TrimSpace(string(out)), "\n") + 1; n != 2 || !strings.Contains(string(out), ns.NSVeth) {
		t.Fatalf("links in the namespace:\n%s", out)
	}

	// Mounts made after the sshd started are visible to its sessions.
	mnt := LoopExt4(t, 8)
	f := filepath.Join(mnt, "seen")
	if err := os.WriteFile(f, []byte("mounted\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := s.Run(t, "cat", f); err != nil || out != "mounted\n" {
		t.Fatalf("the namespace sshd does not see a later mount: %q, %v", out, err)
	}
	if out, err := ns.Exec(t, "cat", f).CombinedOutput(); err != nil || string(out) != "mounted\n" {
		t.Fatalf("Exec does not see a later mount: %q, %v", out, err)
	}

	if err := ns.LinkDown(); err != nil {
		t.Fatal(err)
	}
	// Nothing for the namespace may leave through another interface.
	route, err := toolOutput("ip", "-4", "route", "get", ns.NSAddr)
	if err == nil {
		t.Fatalf("route to %s with the link down: %s", ns.NSAddr, route)
	}
	if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
		c.Close()
		t.Fatal("TCP connect to the namespace sshd succeeded with the link down")
	} else {
		t.Logf("link down: %v", err)
	}

	if err := ns.LinkUp(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the namespace sshd after LinkUp", func() bool { return sshBanner(addr, time.Second) })
	if out, err := s.Run(t, "echo", "again"); err != nil || out != "again\n" {
		t.Fatalf("ssh after LinkUp: %q, %v", out, err)
	}
}

func TestGeorepBinFromEnv(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "georep")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GEOREP_BIN", fake)
	if got := GeorepBin(t); got != fake {
		t.Fatalf("GeorepBin = %q, want $GEOREP_BIN %q", got, fake)
	}
}

func TestGeorepBinBuilds(t *testing.T) {
	t.Setenv("GEOREP_BIN", "")
	bin := GeorepBin(t) // skips while ./cmd/georep does not exist
	if !isExecutable(bin) {
		t.Fatalf("%s is not executable", bin)
	}
}

func TestWorkloadAndVerify(t *testing.T) {
	t.Parallel()
	a := t.TempDir()
	b := filepath.Join(t.TempDir(), "copy")
	Workload(t, "populate", a, "--files", "30", "--dirs", "3", "--seed", "7")
	Workload(t, "churn", a, "--scale", "0.1", "--seed", "7")
	if out, err := exec.Command("cp", "-a", a, b).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v: %s", err, out)
	}
	ok, out := VerifyPy(t, a, b)
	if !ok {
		t.Fatalf("cp -a copy differs:\n%s", out)
	}
	// Where shared/bench is present, verify.py judges as a second oracle.
	if _, err := findSharedDir(); err == nil && !strings.Contains(out, "verify.py (") {
		t.Errorf("shared/ is present but verify.py did not judge:\n%s", out)
	}
	if err := os.WriteFile(filepath.Join(b, "extra"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, out := VerifyPy(t, a, b); ok {
		t.Fatalf("verify.py missed an extra file:\n%s", out)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"plain":   "plain",
		"":        "''",
		"a b":     "'a b'",
		"it's":    `'it'\''s'`,
		"$x":      "'$x'",
		"/a/b=c,": "/a/b=c,",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fakeTB records what CannotRun does instead of ending the test.
type fakeTB struct {
	testing.TB
	failed, skipped string
}

func (f *fakeTB) Helper()                        {}
func (f *fakeTB) Fatalf(format string, a ...any) { f.failed = fmt.Sprintf(format, a...) }
func (f *fakeTB) Skip(a ...any)                  { f.skipped = fmt.Sprint(a...) }

// TestCannotRunFailsUnderCI: what cannot run is a skip for a developer and a
// failure under CI, naming what is missing either way.
func TestCannotRunFailsUnderCI(t *testing.T) {
	for _, c := range []struct {
		ci   string
		fail bool
	}{{"", false}, {"false", false}, {"0", false}, {"true", true}, {"1", true}, {"yes", true}} {
		t.Setenv("CI", c.ci)
		f := &fakeTB{TB: t}
		CannotRun(f, "no %s here", "widget")
		got := f.skipped
		if c.fail {
			got = f.failed
		}
		if !strings.Contains(got, "no widget here") || (f.failed != "") != c.fail || (f.skipped != "") == c.fail {
			t.Errorf("CI=%q: failed %q, skipped %q", c.ci, f.failed, f.skipped)
		}
	}
}

// TestUserCreatedWhenMissing: User makes an account that did not exist
// (with its own group), is idempotent, and TestUserName follows
// GEOREP_TEST_USER.
func TestUserCreatedWhenMissing(t *testing.T) {
	RequireRoot(t)
	name := fmt.Sprintf("grtu%d", os.Getpid()%1000000)
	if _, err := user.Lookup(name); err == nil {
		t.Fatalf("user %s exists already", name)
	}
	t.Cleanup(func() {
		if err := runTool("userdel", "-r", name); err != nil {
			t.Logf("removing the user this test made: %v", err)
		}
	})
	t.Setenv("GEOREP_TEST_USER", name)
	if TestUserName() != name {
		t.Fatalf("TestUserName() = %q with GEOREP_TEST_USER=%s", TestUserName(), name)
	}
	a := TestUser(t)
	if a.Name != name || a.UID == 0 || a.GID == 0 {
		t.Fatalf("account %+v", a)
	}
	g, err := user.LookupGroupId(strconv.Itoa(a.GID))
	if err != nil || g.Name != name {
		t.Errorf("primary group %v, %v: want a group %s", g, err, name)
	}
	if b := User(t, name); b != a {
		t.Errorf("again: %+v, want %+v", b, a)
	}
	dir := t.TempDir()
	a.Chown(t, dir)
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil || int(st.Uid) != a.UID || int(st.Gid) != a.GID {
		t.Errorf("Chown: owner %d:%d, %v", st.Uid, st.Gid, err)
	}
	t.Setenv("GEOREP_TEST_USER", "")
	if TestUserName() != DefaultTestUser {
		t.Errorf("TestUserName() = %q unset", TestUserName())
	}
}

// TestVerifyPyWithoutShared: with no shared/ anywhere, VerifyPy judges with
// the repository's oracle alone, and still catches a difference.
func TestVerifyPyWithoutShared(t *testing.T) {
	t.Setenv("GEOREP_SHARED_DIR", filepath.Join(t.TempDir(), "no-shared-here"))
	a := t.TempDir()
	b := filepath.Join(t.TempDir(), "copy")
	Workload(t, "populate", a, "--files", "40", "--dirs", "8", "--seed", "3")
	Workload(t, "churn", a, "--scale", "0.05")
	if out, err := exec.Command("cp", "-a", a, b).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v: %s", err, out)
	}
	ok, out := VerifyPy(t, a, b, "--mtime-ns")
	if !ok || strings.Contains(out, "verify.py") {
		t.Fatalf("cp -a copy (ok %v):\n%s", ok, out)
	}
	if err := os.Chmod(filepath.Join(b, "d00"), 0o700); err != nil {
		t.Fatal(err)
	}
	if ok, out := VerifyPy(t, a, b); ok || !strings.Contains(out, `mode: "d00"`) {
		t.Fatalf("a changed mode went unseen:\n%s", out)
	}
	if ok, out := VerifyPy(t, a, b, "--exclude", "/d00/"); !ok {
		t.Fatalf("an excluded difference was reported:\n%s", out)
	}
}
