package verify

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// benchDir finds shared/bench (verify.py and workload.py): in
// $GEOREP_SHARED_DIR, or next to the checkout.
func benchDir() string {
	for _, d := range []string{filepath.Join(os.Getenv("GEOREP_SHARED_DIR"), "bench"), "../../../shared/bench"} {
		_, err1 := os.Stat(filepath.Join(d, "verify.py"))
		_, err2 := os.Stat(filepath.Join(d, "workload.py"))
		if err1 == nil && err2 == nil {
			if abs, err := filepath.Abs(d); err == nil {
				return abs
			}
		}
	}
	return ""
}

// oracle runs verify.py and returns whether it found the trees equal and its
// summary line.
func oracle(t *testing.T, bench, src, dst string, args ...string) (bool, string) {
	t.Helper()
	cmd := exec.Command("python3", append([]string{filepath.Join(bench, "verify.py"), src, dst}, args...)...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) {
		t.Fatalf("verify.py: %v\n%s%s", err, out.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	return err == nil, lines[len(lines)-1]
}

func summaryLine(r *Report) string {
	var b bytes.Buffer
	r.Print(&b, -1)
	return strings.TrimSpace(b.String())
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// TestOracle cross-checks Compare against shared/bench/verify.py on a
// workload.py tree copied with cp -a: both must agree, down to the summary
// line, on identical trees and after changing one file's content and another
// file's mode on the replica.
func TestOracle(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3")
	}
	if _, err := exec.LookPath("cp"); err != nil {
		t.Skip("no cp")
	}
	bench := benchDir()
	if bench == "" {
		t.Skip("shared/bench/verify.py and workload.py not found")
	}
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	workload := filepath.Join(bench, "workload.py")
	run(t, "python3", workload, "populate", src, "--files", "300", "--dirs", "8")
	// churn adds hardlinks, symlinks, a FIFO, awkward names, chmod/chown,
	// xattrs and a sparse file.
	run(t, "python3", workload, "churn", src, "--scale", "0.05")
	run(t, "cp", "-a", src, dst)
	must(t, os.MkdirAll(filepath.Join(dst, ".georep", "index"), 0o700)) // ignored by both

	for _, c := range []struct {
		opts Options
		args []string
	}{
		{Options{}, nil},
		{Options{MtimeNS: true, DirMtime: true}, []string{"--mtime-ns", "--dir-mtime"}},
		{Options{NoOwner: true, NoXattrs: true, Excludes: []string{"odd names"}}, []string{"--no-owner", "--no-xattrs", "--exclude", "odd names"}},
	} {
		ok, line := oracle(t, bench, src, dst, c.args...)
		r := compare(t, Local(src), Local(dst), c.opts)
		if !ok || !r.OK() || line != summaryLine(r) {
			t.Errorf("identical trees %v: verify.py ok=%v %q; Compare ok=%v %q", c.args, ok, line, r.OK(), summaryLine(r))
		}
		if r.SourceEntries < 300 {
			t.Errorf("only %d entries", r.SourceEntries)
		}
	}

	tamper(t, src, dst) // one file's content (same size and mtime), another's mode

	ok, line := oracle(t, bench, src, dst)
	r := compare(t, Local(src), Local(dst), Options{})
	t.Logf("verify.py: %s\nCompare:   %s", line, summaryLine(r))
	if ok || r.OK() || line != summaryLine(r) {
		t.Errorf("changed replica: verify.py ok=%v %q; Compare ok=%v %q", ok, line, r.OK(), summaryLine(r))
	}
	if r.Counts["content"] != 1 || r.Counts["mode"] != 1 || len(r.Counts) != 2 {
		t.Errorf("counts %v", r.Counts)
	}
}

// TestOracleMismatches checks that the oracle and Compare agree on a replica
// that has missing, extra and retyped entries, and a split hardlink.
func TestOracleMismatches(t *testing.T) {
	bench := benchDir()
	if _, err := exec.LookPath("python3"); err != nil || bench == "" {
		t.Skip("no python3 or shared/bench")
	}
	src, dst := pair(t)
	must(t, os.RemoveAll(filepath.Join(dst, "a/b/c")))
	writeFile(t, filepath.Join(dst, "extra"), "x", 0o644)
	must(t, os.Remove(filepath.Join(dst, "hard3")))
	writeFile(t, filepath.Join(dst, "hard3"), "linked", 0o644)
	copyMtime(t, filepath.Join(src, "hard3"), filepath.Join(dst, "hard3"))
	must(t, os.Remove(filepath.Join(dst, "fifo")))
	must(t, os.Mkdir(filepath.Join(dst, "fifo"), 0o644))
	ok, line := oracle(t, bench, src, dst)
	r := compare(t, Local(src), Local(dst), Options{})
	t.Logf("verify.py: %s\nCompare:   %s", line, summaryLine(r))
	if ok || r.OK() || line != summaryLine(r) {
		t.Errorf("verify.py ok=%v %q; Compare ok=%v %q", ok, line, r.OK(), summaryLine(r))
	}
}
