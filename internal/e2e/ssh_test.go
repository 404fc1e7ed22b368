package e2e

import (
	"bytes"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/georep/georep/internal/testutil"
)

// TestSyncOverSSH replicates the populate and churn trees to
// root@127.0.0.1:/path through a real sshd.
func TestSyncOverSSH(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.GeorepBin(t)
	sshd := testutil.StartSSHD(t, testutil.SSHDOptions{})
	dir := workdir(t)
	p, s, st := filepath.Join(dir, "P"), filepath.Join(dir, "S"), filepath.Join(dir, "state")
	testutil.Workload(t, "populate", p, "--files", "5000", "--dirs", "80")
	dst := sshd.UserHost() + ":" + s
	runSync(t, bin, p, dst, "--state-dir", st, "--ssh-command", sshd.SSHCommand(), "--remote-georep", bin)
	if ok, out := testutil.VerifyPy(t, p, s); !ok {
		t.Fatalf("initial sync over ssh does not verify:\n%s", out)
	}
	testutil.Workload(t, "churn", p, "--scale", "0.5")
	sum := runSync(t, bin, "--ssh-command", sshd.SSHCommand(), "--remote-georep", bin, p, dst, "--state-dir", st)
	if ok, out := testutil.VerifyPy(t, p, s); !ok {
		t.Fatalf("churn sync over ssh does not verify:\n%s", out)
	}
	if sum.Stats.Renames == 0 {
		t.Error("no renames travelled over ssh")
	}
}

// TestSSHKilledMidSync kills the ssh client or the remote agent five times
// during a sync; the same sync reconnects and completes.
func TestSSHKilledMidSync(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.GeorepBin(t)
	sshd := testutil.StartSSHD(t, testutil.SSHDOptions{})
	dir := workdir(t)
	p, s, st := filepath.Join(dir, "P"), filepath.Join(dir, "S"), filepath.Join(dir, "state")
	testutil.Workload(t, "populate", p, "--files", "20000")
	dst := sshd.UserHost() + ":" + s
	cmd := exec.Command(bin, "sync", p, dst, "--state-dir", st, "--ssh-command", sshd.SSHCommand(), "--remote-georep", bin, "--json", "-v")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	kills := 0
	var err error
	finished := false
	for kills < 5 && !finished {
		select {
		case err = <-waited:
			finished = true
			continue
		case <-time.After(time.Duration(150+rng.Intn(250)) * time.Millisecond):
		}
		// The pattern matches the local ssh client (its argv carries the
		// remote command) and the agent on the far side, of this test's
		// secondary only (other packages' agents run meanwhile).
		if exec.Command("pkill", "-KILL", "-f", "secondary --root.*"+regexp.QuoteMeta(s)).Run() == nil {
			kills++
		}
	}
	if !finished {
		select {
		case err = <-waited:
		case <-time.After(3 * time.Minute):
			cmd.Process.Kill()
			t.Fatal("sync did not finish within 3 minutes after the kills")
		}
	}
	t.Logf("killed %d times; sync exit: %v", kills, err)
	if err != nil {
		t.Fatalf("sync did not survive the kills: %v\n%s\nstderr:\n%s", err, out.String(), tail(errb.String(), 3000))
	}
	if kills < 5 {
		t.Errorf("the sync finished after only %d kills; make the tree bigger", kills)
	}
	if ok, o := testutil.VerifyPy(t, p, s); !ok {
		t.Fatalf("does not verify after kills:\n%s", o)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestForcedCommandKey: a key installed with the line that
// 'georep secondary --print-authorized-key' prints can sync but run nothing
// else.
func TestForcedCommandKey(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.GeorepBin(t)
	dir := t.TempDir()
	s := filepath.Join(dir, "S")
	sshd := testutil.StartSSHD(t, testutil.SSHDOptions{})
	line, err := exec.Command(bin, "secondary", "--root", s, "--print-authorized-key", sshd.KeyFile+".pub").Output()
	if err != nil {
		t.Fatalf("print-authorized-key: %v", err)
	}
	if !strings.Contains(string(line), "restrict") || !strings.Contains(string(line), "command=") {
		t.Fatalf("authorized_keys line lacks command= or restrict: %s", line)
	}
	sshd.SetAuthorizedKeysLine(t, strings.TrimSpace(string(line)))
	// Any other command runs the agent instead, which wants a handshake and
	// writes nothing: `touch` must not happen.
	marker := filepath.Join(dir, "pwned")
	sshd.Run(t, "touch", marker)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the restricted key ran an arbitrary command")
	}
	p := filepath.Join(dir, "P")
	testutil.Workload(t, "populate", p, "--files", "200", "--dirs", "8")
	runSync(t, bin, p, sshd.UserHost()+":/ignored/by/forced/command", "--state-dir", filepath.Join(dir, "st"), "--ssh-command", sshd.SSHCommand())
	if ok, out := testutil.VerifyPy(t, p, s); !ok {
		t.Fatalf("sync through the forced command does not verify:\n%s", out)
	}
	_ = syscall.Getpid
}

// TestNonRootSecondaryFakeSuper: a secondary reached as a non-root user keeps
// owners, groups and device files in user.georep.stat xattrs; a root
// `georep verify --fake-super` finds the replica identical.
func TestNonRootSecondaryFakeSuper(t *testing.T) {
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
	out, err := exec.Command("chown", sshd.User, s).CombinedOutput()
	if err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	testutil.Workload(t, "populate", p, "--files", "500", "--dirs", "8")
	testutil.Workload(t, "churn", p, "--scale", "0.1")
	if err := syscall.Mknod(filepath.Join(p, "null"), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
		t.Fatal(err)
	}
	sum := runSync(t, bin, p, sshd.UserHost()+":"+s, "--no-owner", "--state-dir", filepath.Join(dir, "st"),
		"--ssh-command", sshd.SSHCommand(), "--remote-georep", bin)
	if sum.Stats.Failures != 0 {
		t.Fatalf("%d failures", sum.Stats.Failures)
	}
	if o, err := exec.Command(bin, "verify", "--fake-super", p, s).CombinedOutput(); err != nil {
		t.Fatalf("georep verify --fake-super: %v\n%s", err, o)
	}
}

// TestDeferredDurabilityOverSSH: a sync over ssh returns once everything is
// applied, and the agent makes the session durable after that (syncfs) and
// only then records the stime on the secondary: right after the sync the
// secondary's stime is the previous one or the new one, never anything
// else, and it reaches the primary's record without another session.
func TestDeferredDurabilityOverSSH(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.GeorepBin(t)
	sshd := testutil.StartSSHD(t, testutil.SSHDOptions{})
	dir := workdir(t)
	p, s, st := filepath.Join(dir, "P"), filepath.Join(dir, "S"), filepath.Join(dir, "state")
	testutil.Workload(t, "populate", p, "--files", "3000", "--dirs", "40")
	dst := sshd.UserHost() + ":" + s
	prevSec := ""
	for round := 1; round <= 3; round++ {
		if round == 2 { // round 3 changes nothing: a new stime all the same
			testutil.Workload(t, "churn", p, "--scale", "0.2")
		}
		// Output to files, not pipes: the test waits for georep only, not
		// for the ssh client that outlives it until the agent is done.
		logf, err := os.Create(filepath.Join(dir, "sync.log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "sync", p, dst, "--state-dir", st, "--ssh-command", sshd.SSHCommand(), "--remote-georep", bin, "--no-progress")
		cmd.Stdout, cmd.Stderr = logf, logf
		err = cmd.Run()
		logf.Close()
		if err != nil {
			b, _ := os.ReadFile(filepath.Join(dir, "sync.log"))
			t.Fatalf("round %d: sync: %v\n%s", round, err, b)
		}
		sec, prim := stimes(t, s, st)
		if prim == "" || prim == prevSec {
			t.Fatalf("round %d: the primary recorded no new stime (%q)", round, prim)
		}
		if sec != prevSec && sec != prim {
			t.Fatalf("round %d: secondary stime %q right after the sync is neither the previous %q nor the new %q", round, sec, prevSec, prim)
		}
		deadline := time.Now().Add(20 * time.Second)
		for sec != prim && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			sec, _ = stimes(t, s, st)
		}
		if sec != prim {
			t.Fatalf("round %d: the secondary never recorded the stime: %q, primary %q", round, sec, prim)
		}
		// The agent is gone once its stime is written (it holds the lock
		// until then): the replica is complete.
		if ok, out := testutil.VerifyPy(t, p, s); !ok {
			t.Fatalf("round %d: replica does not verify:\n%s", round, out)
		}
		prevSec = sec
	}
}
