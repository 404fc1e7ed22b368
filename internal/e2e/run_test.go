package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/georep/georep/internal/testutil"
)

// runner is a `georep run` process under test.
type runner struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs bytes.Buffer
	done chan error
}

func (r *runner) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.logs.Write(p)
}

func (r *runner) Logs() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.logs.String()
}

func startRun(t *testing.T, bin string, prefix []string, args ...string) *runner {
	t.Helper()
	all := append(append([]string{}, prefix...), append([]string{bin, "run"}, args...)...)
	r := &runner{cmd: exec.Command(all[0], all[1:]...), done: make(chan error, 1)}
	r.cmd.Stdout, r.cmd.Stderr = r, r
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() {
		r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			r.cmd.Process.Kill()
		}
	})
	return r
}

// waitConverged polls verify.py until the trees match or the timeout.
func waitConverged(t *testing.T, r *runner, p, s string, timeout time.Duration, oracleArgs ...string) time.Duration {
	t.Helper()
	start := time.Now()
	var out string
	for time.Since(start) < timeout {
		var ok bool
		if ok, out = testutil.VerifyPy(t, p, s, oracleArgs...); ok {
			return time.Since(start)
		}
		select {
		case err := <-r.done:
			t.Fatalf("georep run exited: %v\n%s", err, tail(r.Logs(), 4000))
		case <-time.After(300 * time.Millisecond):
		}
	}
	t.Fatalf("not converged after %s:\n%s\nlogs:\n%s", timeout, out, tail(r.Logs(), 4000))
	return 0
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestRunChurnConverges: `georep run` on a 20,000-file tree converges after
// the churn workload, and renames travel as renames (the secondary keeps
// the inodes of a renamed file and of a renamed directory).
func TestRunChurnConverges(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.GeorepBin(t)
	dir := workdir(t)
	p, s, st := filepath.Join(dir, "P"), filepath.Join(dir, "S"), filepath.Join(dir, "state")
	testutil.Workload(t, "populate", p, "--files", "20000")
	r := startRun(t, bin, nil, p, s, "--state-dir", st)
	t.Logf("initial crawl converged in %s", waitConverged(t, r, p, s, 90*time.Second))

	testutil.Workload(t, "churn", p)
	t.Logf("churn converged in %s", waitConverged(t, r, p, s, 90*time.Second))
	// Renames travel as renames: the secondary keeps the inodes.
	file := filepath.Join("d00", "e00", "renamed-by-test.dat")
	os.WriteFile(filepath.Join(p, file), []byte("content that must not travel twice"), 0o644)
	waitConverged(t, r, p, s, 30*time.Second)
	fileIno := inode(t, filepath.Join(s, file))
	dirIno := inode(t, filepath.Join(s, "d01"))
	os.Rename(filepath.Join(p, file), filepath.Join(p, "d02", "moved-file.dat"))
	os.Rename(filepath.Join(p, "d01"), filepath.Join(p, "d02", "moved-dir"))
	waitConverged(t, r, p, s, 30*time.Second)
	if got := inode(t, filepath.Join(s, "d02", "moved-file.dat")); got != fileIno {
		t.Errorf("renamed file was re-created on the secondary (inode %d, was %d)", got, fileIno)
	}
	if got := inode(t, filepath.Join(s, "d02", "moved-dir")); got != dirIno {
		t.Errorf("renamed directory was re-created on the secondary (inode %d, was %d)", got, dirIno)
	}
	if !strings.Contains(r.Logs(), "journal: watching") {
		t.Errorf("georep run did not use the journal:\n%s", tail(r.Logs(), 2000))
	}
}

// TestRunKillRestart: kill -9 during the churn, change more while it is
// down, restart: it crawls the gap and converges.
func TestRunKillRestart(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.GeorepBin(t)
	dir := workdir(t)
	p, s, st := filepath.Join(dir, "P"), filepath.Join(dir, "S"), filepath.Join(dir, "state")
	testutil.Workload(t, "populate", p, "--files", "5000", "--dirs", "60")
	r := startRun(t, bin, nil, p, s, "--state-dir", st)
	waitConverged(t, r, p, s, 60*time.Second)
	churn := testutil.WorkloadAsync(t, "churn", p, "--scale", "0.5")
	time.Sleep(400 * time.Millisecond)
	r.cmd.Process.Kill()
	<-r.done
	if err := <-churn; err != nil {
		t.Fatal(err)
	}
	// More changes while it is down.
	os.WriteFile(filepath.Join(p, "while-down.txt"), []byte("written while georep was down\n"), 0o644)
	os.Rename(filepath.Join(p, "d00"), filepath.Join(p, "d00-renamed-while-down"))
	os.RemoveAll(filepath.Join(p, "d01"))
	r2 := startRun(t, bin, nil, p, s, "--state-dir", st)
	waitConverged(t, r2, p, s, 60*time.Second)
	if !strings.Contains(r2.Logs(), "restart after downtime") {
		t.Errorf("the restart did not crawl the gap:\n%s", tail(r2.Logs(), 2000))
	}
}

// TestRunOverflowRecovers: a tiny journal queue overflows under a flood;
// the gap is crawled and the trees converge.
func TestRunOverflowRecovers(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.GeorepBin(t)
	dir := workdir(t)
	p, s, st := filepath.Join(dir, "P"), filepath.Join(dir, "S"), filepath.Join(dir, "state")
	testutil.Workload(t, "populate", p, "--files", "2000", "--dirs", "20")
	r := startRun(t, bin, nil, p, s, "--state-dir", st, "--journal-queue-size", "64")
	waitConverged(t, r, p, s, 60*time.Second)
	testutil.Workload(t, "churn", p, "--scale", "0.5")
	waitConverged(t, r, p, s, 60*time.Second)
	if !strings.Contains(r.Logs(), "queue overflow") {
		t.Errorf("no overflow was seen with a 64-event queue:\n%s", tail(r.Logs(), 2000))
	}
}

// TestRunWithoutJournalFallsBack: without CAP_SYS_ADMIN georep run says so
// and crawls periodically instead.
func TestRunWithoutJournalFallsBack(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "setpriv", "util-linux")
	bin := testutil.GeorepBin(t)
	dir := t.TempDir()
	p, s, st := filepath.Join(dir, "P"), filepath.Join(dir, "S"), filepath.Join(dir, "state")
	testutil.Workload(t, "populate", p, "--files", "300", "--dirs", "8")
	drop := []string{"setpriv", "--inh-caps=-sys_admin", "--bounding-set=-sys_admin", "--"}
	r := startRun(t, bin, drop, p, s, "--state-dir", st, "--crawl-interval", "1s")
	waitConverged(t, r, p, s, 30*time.Second)
	os.WriteFile(filepath.Join(p, "later.txt"), []byte("later\n"), 0o644)
	waitConverged(t, r, p, s, 30*time.Second)
	if !strings.Contains(r.Logs(), "falling back to a periodic crawl") {
		t.Errorf("no clear fallback message:\n%s", tail(r.Logs(), 2000))
	}
}
