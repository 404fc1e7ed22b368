package testutil

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// RequireRoot ends the test through CannotRun unless it runs as root (CI
// runs as root): a skip on a developer's machine, a failure under CI.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		CannotRun(t, "testutil: this test needs root (CI runs `bash .ci/run` as root)")
	}
}

// ModuleRoot returns the directory holding go.mod, found by walking up from
// the working directory (a package directory under `go test`).
func ModuleRoot(t testing.TB) string {
	t.Helper()
	root, err := findModuleRoot()
	if err != nil {
		t.Fatalf("testutil: %v", err)
	}
	return root
}

func findModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fi, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && fi.Mode().IsRegular() {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod in the working directory or any parent")
		}
		dir = parent
	}
}

// lookupTool finds an executable on PATH or in the usual system directories
// (a root shell without sbin on PATH still finds ip, losetup, sshd ...).
func lookupTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(d, name)
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH nor in the system directories", name)
}

// RequireTool returns the path of a system tool (on PATH or in the usual
// system directories), or ends the test through CannotRun naming the Debian
// package that brings it.
func RequireTool(t testing.TB, name, debPackage string) string {
	t.Helper()
	p, err := lookupTool(name)
	if err != nil {
		CannotRun(t, "testutil: %s is missing (apt-get install %s; .ci/run installs it)", name, debPackage)
	}
	return p
}

// toolOrSkip is RequireTool's former name, kept for fixtures written
// against it.
func toolOrSkip(t testing.TB, name, debPackage string) string {
	t.Helper()
	return RequireTool(t, name, debPackage)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

var georepBuild struct {
	once sync.Once
	path string
	skip string // set when there is nothing to build yet
	err  error
}

// GeorepBin returns the georep binary the end-to-end tests run: $GEOREP_BIN
// when it names an executable file, otherwise ./cmd/georep built once per
// test process (go build, into a per-checkout directory under os.TempDir()).
// It skips the test when ./cmd/georep does not exist yet and fails it when
// the build fails.
func GeorepBin(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("GEOREP_BIN"); p != "" {
		if abs, err := filepath.Abs(p); err == nil && isExecutable(abs) {
			return abs
		}
		t.Logf("testutil: GEOREP_BIN=%q is not an executable file; building ./cmd/georep instead", p)
	}
	georepBuild.once.Do(buildGeorep)
	switch {
	case georepBuild.skip != "":
		CannotRun(t, "%s", georepBuild.skip)
	case georepBuild.err != nil:
		t.Fatalf("testutil: %v", georepBuild.err)
	}
	return georepBuild.path
}

func buildGeorep() {
	b := &georepBuild
	root, err := findModuleRoot()
	if err != nil {
		b.err = err
		return
	}
	if srcs, _ := filepath.Glob(filepath.Join(root, "cmd", "georep", "*.go")); len(srcs) == 0 {
		b.skip = fmt.Sprintf("testutil: ./cmd/georep does not exist yet in %s (and GEOREP_BIN is not set): nothing to test end to end", root)
		return
	}
	gobin, err := lookupTool("go")
	if err != nil {
		if isExecutable("/usr/local/go/bin/go") {
			gobin = "/usr/local/go/bin/go"
		} else {
			b.err = fmt.Errorf("building ./cmd/georep: %v (set GEOREP_BIN or put go on PATH)", err)
			return
		}
	}
	// One directory per checkout, so parallel package test processes share
	// the result and nothing piles up in /tmp; the rename makes it atomic.
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("georep-testbin-%x", sum[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.err = err
		return
	}
	tmp := filepath.Join(dir, fmt.Sprintf(".georep.%d.tmp", os.Getpid()))
	cmd := exec.Command(gobin, "build", "-o", tmp, "./cmd/georep")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.Remove(tmp)
		msg := string(out)
		if strings.Contains(msg, "no Go files") || strings.Contains(msg, "directory not found") ||
			strings.Contains(msg, "cannot find package") || strings.Contains(msg, "matched no packages") {
			b.skip = fmt.Sprintf("testutil: ./cmd/georep has no buildable package yet (and GEOREP_BIN is not set): %s", strings.TrimSpace(msg))
			return
		}
		b.err = fmt.Errorf("go build ./cmd/georep failed: %v\n%s", err, msg)
		return
	}
	final := filepath.Join(dir, "georep")
	if err := os.Rename(tmp, final); err != nil {
		b.err = err
		return
	}
	b.path = final
}

// SharedDir returns the project's shared/ directory (the one holding
// bench/workload.py): $GEOREP_SHARED_DIR, or the first "shared" found walking
// up from the module root (<clone>/../shared). The suite does not need it
// (Workload and VerifyPy run the repository's own tools); a test that does
// need it ends through CannotRun when there is none (a failure under CI).
func SharedDir(t testing.TB) string {
	t.Helper()
	d, err := findSharedDir()
	if err != nil {
		CannotRun(t, "testutil: %v", err)
	}
	return d
}

func findSharedDir() (string, error) {
	ok := func(d string) bool {
		fi, err := os.Stat(filepath.Join(d, "bench", "workload.py"))
		return err == nil && fi.Mode().IsRegular()
	}
	if d := os.Getenv("GEOREP_SHARED_DIR"); d != "" {
		if ok(d) {
			return filepath.Abs(d)
		}
		return "", fmt.Errorf("GEOREP_SHARED_DIR=%q has no bench/workload.py", d)
	}
	root, err := findModuleRoot()
	if err != nil {
		return "", err
	}
	for dir := root; ; {
		if c := filepath.Join(dir, "shared"); ok(c) {
			return c, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no shared/bench/workload.py beside %s or any parent (set GEOREP_SHARED_DIR)", root)
		}
		dir = parent
	}
}

// Workload runs the repository's workload generator (tools/workload, see
// internal/testutil/workload) on a command line of shared/bench/workload.py:
// "populate DIR --files N --dirs D --large K --large-mib M --seed S",
// "churn DIR --scale X --seed S" or "single DIR NAME". It fails the test
// if the workload fails; its output is logged (seen with -v or on failure).
func Workload(t testing.TB, args ...string) {
	t.Helper()
	out, code, err := runToolCmd(toolBin(t, workloadTool), args)
	if err != nil || code != 0 {
		t.Fatalf("testutil: workload %s: exit %d %v\n%s", strings.Join(args, " "), code, err, tail([]byte(out), 4000))
	}
	if s := strings.TrimSpace(out); s != "" {
		t.Logf("workload %s: %s", strings.Join(args, " "), tail([]byte(s), 2000))
	}
}

// WorkloadAsync starts a Workload command line in the background (for
// changes made while something else runs) and sends its error, nil when it
// succeeded, on the channel returned once it is done.
func WorkloadAsync(t testing.TB, args ...string) <-chan error {
	t.Helper()
	bin := toolBin(t, workloadTool)
	done := make(chan error, 1)
	go func() {
		out, code, err := runToolCmd(bin, args)
		if err == nil && code != 0 {
			err = fmt.Errorf("exit %d: %s", code, tail([]byte(out), 4000))
		}
		if err != nil {
			err = fmt.Errorf("testutil: workload %s: %w", strings.Join(args, " "), err)
		}
		done <- err
	}()
	return done
}

// VerifyPy judges whether the replica dst matches src, with the command line
// of shared/bench/verify.py (extra: --no-owner, --no-xattrs, --mtime-ns,
// --dir-mtime, --exclude PATTERN; and --no-acls). The repository's own
// oracle (tools/treeverify, see internal/testutil/oracle) always judges;
// where shared/bench/verify.py is present (see SharedDir) it judges too, as
// a second oracle, and the trees match only when both say so. A difference
// is returned (ok false, output listing it), not failed on; a bad command
// line or a tree that cannot be read fails the test. The name is
// historical.
func VerifyPy(t testing.TB, src, dst string, extra ...string) (ok bool, output string) {
	t.Helper()
	args := append([]string{src, dst}, extra...)
	out, code, err := runToolCmd(toolBin(t, oracleTool), args)
	if err != nil || (code != 0 && code != 1) {
		t.Fatalf("testutil: treeverify %s: exit %d %v\n%s", strings.Join(args, " "), code, err, tail([]byte(out), 4000))
	}
	ok, output = code == 0, out
	if shared, err := findSharedDir(); err == nil {
		pyOK, pyOut := verifyPyScript(t, filepath.Join(shared, "bench", "verify.py"), src, dst, extra)
		if pyOK != ok {
			t.Logf("testutil: the oracles disagree: tools/treeverify says match=%v, verify.py says match=%v", ok, pyOK)
		}
		output = "oracle (tools/treeverify):\n" + output + "verify.py (" + shared + "/bench):\n" + pyOut
		ok = ok && pyOK
	}
	return ok, output
}

// verifyPyScript runs shared/bench/verify.py with the flags it knows.
func verifyPyScript(t testing.TB, script, src, dst string, extra []string) (bool, string) {
	t.Helper()
	// Debian's python3 (which .ci/run installs) first: a pyenv shim on PATH
	// costs ~0.4 s a start on a loaded machine.
	python := "/usr/bin/python3"
	if !isExecutable(python) {
		python = RequireTool(t, "python3", "python3")
	}
	args := []string{script, src, dst}
	for _, a := range extra {
		if a != "--no-acls" && a != "--no-mtime" { // ours only
			args = append(args, a)
		}
	}
	cmd := exec.Command(python, args...)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		return true, string(out)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		return false, string(out)
	}
	t.Fatalf("testutil: verify.py %s: %v\n%s", strings.Join(args[1:], " "), err, tail(out, 4000))
	return false, string(out)
}

// tail returns at most the last n bytes of b, as text.
func tail(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return "..." + string(b[len(b)-n:])
}

// shellQuote quotes s for a POSIX shell (the remote side of ssh).
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=+,./:@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// runTool runs a system tool and returns an error carrying its output.
func runTool(name string, args ...string) error {
	p, err := lookupTool(name)
	if err != nil {
		return err
	}
	out, err := exec.Command(p, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// toolOutput runs a system tool and returns its standard output.
func toolOutput(name string, args ...string) (string, error) {
	p, err := lookupTool(name)
	if err != nil {
		return "", err
	}
	cmd := exec.Command(p, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}
