package e2e

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/georep/georep/internal/testutil"
)

type summary struct {
	OK    bool `json:"ok"`
	Stats struct {
		Entries   int   `json:"entries"`
		DataFiles int   `json:"data_files"`
		DataBytes int64 `json:"data_bytes"`
		Renames   int   `json:"renames"`
		Metadata  int   `json:"metadata"`
		Failures  int   `json:"failures"`
		BytesSent int64 `json:"bytes_sent"`
	} `json:"stats"`
	Seconds  float64 `json:"seconds"`
	Failures []struct {
		Path, Op, Error string
	} `json:"failures"`
}

// workdir returns a scratch directory, on a journaled ext4 loop mount when
// running as root (the root filesystem of these machines has a slow path
// right after mass deletes), else a temp dir.
func workdir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() == 0 && os.Getenv("GEOREP_E2E_TMPDIR") == "" {
		return testutil.LoopExt4(t, 2048)
	}
	return t.TempDir()
}

func runSync(t *testing.T, bin string, args ...string) summary {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"sync", "--json"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var s summary
	if jerr := json.Unmarshal(out.Bytes(), &s); jerr != nil {
		t.Fatalf("georep sync %v: %v\nstdout: %s\nstderr: %s", args, err, out.String(), errb.String())
	}
	if err != nil || !s.OK {
		t.Fatalf("georep sync %v failed: %v\n%s\nstderr: %s", args, err, out.String(), errb.String())
	}
	return s
}

func treeSize(t *testing.T, root string) int64 {
	var n int64
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
		return nil
	})
	return n
}

// TestSyncPopulateChurn is the core "done when": a 20,000-file tree syncs and
// verifies; after the churn workload it syncs again without re-sending
// renamed files or directories; a sync with no change sends no data and is
// faster than the first.
func TestSyncPopulateChurn(t *testing.T) {
	bin := testutil.GeorepBin(t)
	dir := workdir(t)
	p, s, st := filepath.Join(dir, "P"), filepath.Join(dir, "S"), filepath.Join(dir, "state")
	testutil.Workload(t, "populate", p, "--files", "20000")

	first := runSync(t, bin, p, s, "--state-dir", st)
	if ok, out := testutil.VerifyPy(t, p, s); !ok {
		t.Fatalf("initial sync does not verify:\n%s", out)
	}
	if first.Stats.DataFiles != 20000 {
		t.Errorf("initial sync sent %d files, want 20000", first.Stats.DataFiles)
	}

	testutil.Workload(t, "churn", p)
	size := treeSize(t, p)
	churn := runSync(t, bin, "--state-dir", st, p, s) // flags before the paths work too
	if ok, out := testutil.VerifyPy(t, p, s); !ok {
		t.Fatalf("churn sync does not verify:\n%s", out)
	}
	t.Logf("churn: %d entry ops, %d renames, %d files (%d bytes) sent of a %d-byte tree, %.2fs",
		churn.Stats.Entries, churn.Stats.Renames, churn.Stats.DataFiles, churn.Stats.DataBytes, size, churn.Seconds)
	if churn.Stats.Renames < 500 {
		t.Errorf("churn sync made %d renames; the churn renames 600+ files and 20 directories", churn.Stats.Renames)
	}
	// The churn writes ~80 MB of new data (64 MiB of it a sparse file's
	// hole is not sent); renamed files and directories must not travel.
	if churn.Stats.DataBytes > size/3 {
		t.Errorf("churn sync sent %d bytes of a %d-byte tree: renames were re-sent", churn.Stats.DataBytes, size)
	}

	again := runSync(t, bin, p, s, "--state-dir", st)
	if again.Stats.DataFiles != 0 || again.Stats.DataBytes != 0 {
		t.Errorf("a sync with no change sent %d files (%d bytes)", again.Stats.DataFiles, again.Stats.DataBytes)
	}
	if again.Seconds >= first.Seconds {
		t.Errorf("a sync with no change took %.2fs, the first %.2fs", again.Seconds, first.Seconds)
	}
	t.Logf("initial %.2fs, churn %.2fs, no-change %.2fs", first.Seconds, churn.Seconds, again.Seconds)
}

// TestSyncSurvivesSIGKILL kills georep sync at random points of the churn
// sync, five times; a final run converges.
func TestSyncSurvivesSIGKILL(t *testing.T) {
	bin := testutil.GeorepBin(t)
	dir := workdir(t)
	p, s, st := filepath.Join(dir, "P"), filepath.Join(dir, "S"), filepath.Join(dir, "state")
	testutil.Workload(t, "populate", p, "--files", "4000", "--dirs", "60")
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	kill := func(round int) {
		cmd := exec.Command(bin, "sync", p, s, "--state-dir", st, "--no-progress")
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(5+rng.Intn(250)) * time.Millisecond
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		t.Logf("round %d: killed after %s (%v)", round, delay, err)
	}
	kill(0) // during the initial sync
	runSync(t, bin, p, s, "--state-dir", st)
	testutil.Workload(t, "churn", p, "--scale", "0.5")
	for round := 1; round <= 5; round++ {
		kill(round)
	}
	runSync(t, bin, p, s, "--state-dir", st)
	if ok, out := testutil.VerifyPy(t, p, s); !ok {
		t.Fatalf("after 5 kills and a rerun the replica does not verify (seed %d):\n%s", seed, out)
	}
	// Nothing is left in the staging area.
	left, _ := os.ReadDir(filepath.Join(s, ".georep", "tmp"))
	if len(left) != 0 {
		var names []string
		for _, e := range left {
			names = append(names, e.Name())
		}
		t.Errorf("staging area not empty after convergence: %s", strings.Join(names, ", "))
	}
}

// TestSyncSpecialFiles covers empty and sparse files (holes stay holes),
// FIFOs, device nodes, dangling symlinks, hardlinks, deep trees and names
// with newlines and invalid UTF-8.
func TestSyncSpecialFiles(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.GeorepBin(t)
	dir := workdir(t)
	p, s, st := filepath.Join(dir, "P"), filepath.Join(dir, "S"), filepath.Join(dir, "state")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(p, 0o755))
	f, err := os.Create(filepath.Join(p, "sparse"))
	must(err)
	must(f.Truncate(256 << 20))
	f.WriteAt([]byte("middle"), 100<<20)
	f.Close()
	must(os.WriteFile(filepath.Join(p, "empty"), nil, 0o600))
	must(syscall.Mkfifo(filepath.Join(p, "fifo"), 0o640))
	must(syscall.Mknod(filepath.Join(p, "null"), syscall.S_IFCHR|0o666, 1<<8|3))
	must(os.Symlink("/nonexistent/target", filepath.Join(p, "dangling")))
	must(os.WriteFile(filepath.Join(p, "a"), []byte("hard"), 0o644))
	must(os.Link(filepath.Join(p, "a"), filepath.Join(p, "b")))
	odd := filepath.Join(p, "new\nline \xff\xfe")
	must(os.MkdirAll(odd, 0o755))
	must(os.WriteFile(filepath.Join(odd, strings.Repeat("x", 255)), []byte("long"), 0o644))
	deep := p
	for i := 0; i < 60; i++ {
		deep = filepath.Join(deep, "level-with-a-long-name-to-make-paths-long")
	}
	must(os.MkdirAll(deep, 0o755))
	must(os.WriteFile(filepath.Join(deep, "deep.txt"), []byte("deep"), 0o644))
	must(syscall.Setxattr(filepath.Join(p, "a"), "user.k", []byte("v"), 0))

	runSync(t, bin, p, s, "--state-dir", st)
	if ok, out := testutil.VerifyPy(t, p, s, "--mtime-ns"); !ok {
		t.Fatalf("special files do not verify:\n%s", out)
	}
	var sst syscall.Stat_t
	must(syscall.Stat(filepath.Join(s, "sparse"), &sst))
	if sst.Blocks*512 > 1<<20 {
		t.Errorf("sparse file takes %d bytes on the secondary: holes were filled", sst.Blocks*512)
	}
	cmd := exec.Command(bin, "verify", p, s)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("georep verify: %v\n%s", err, out)
	}
}

// TestSyncDelta: a small change in a large file travels as a delta.
func TestSyncDelta(t *testing.T) {
	bin := testutil.GeorepBin(t)
	dir := t.TempDir()
	p, s, st := filepath.Join(dir, "P"), filepath.Join(dir, "S"), filepath.Join(dir, "state")
	os.MkdirAll(p, 0o755)
	data := make([]byte, 16<<20)
	rand.New(rand.NewSource(1)).Read(data)
	if err := os.WriteFile(filepath.Join(p, "big"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	runSync(t, bin, p, s, "--state-dir", st)
	f, _ := os.OpenFile(filepath.Join(p, "big"), os.O_WRONLY, 0)
	f.WriteAt([]byte("a change in the middle of a big file"), 7<<20)
	f.Close()
	sum := runSync(t, bin, p, s, "--state-dir", st)
	if ok, out := testutil.VerifyPy(t, p, s, "--mtime-ns"); !ok {
		t.Fatalf("delta sync does not verify:\n%s", out)
	}
	if sum.Stats.BytesSent > 256<<10 {
		t.Errorf("a 36-byte change in a 16 MiB file sent %d bytes", sum.Stats.BytesSent)
	}
	t.Logf("delta sync sent %d bytes", sum.Stats.BytesSent)
}
