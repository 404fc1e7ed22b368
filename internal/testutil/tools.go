package testutil

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The repository's test tools, run as commands: built without the race
// detector (the test binaries usually have it, and it made the generator
// and the oracle three times slower in process), and apart from the test
// process, like the georep binary under test.
const (
	workloadTool = "workload"   // ./tools/workload
	oracleTool   = "treeverify" // ./tools/treeverify
)

var toolsBuild struct {
	once sync.Once
	dir  string
	err  error
}

// toolBin returns the path of a tool of ./tools: in $GEOREP_TOOLS_DIR when
// it holds them (.ci/run builds them into bin/), otherwise built once per
// test process into a per-checkout directory under os.TempDir().
func toolBin(t testing.TB, name string) string {
	t.Helper()
	if d := os.Getenv("GEOREP_TOOLS_DIR"); d != "" {
		if p, err := filepath.Abs(filepath.Join(d, name)); err == nil && isExecutable(p) {
			return p
		}
		t.Logf("testutil: GEOREP_TOOLS_DIR=%q has no %s; building ./tools instead", d, name)
	}
	toolsBuild.once.Do(buildTools)
	if toolsBuild.err != nil {
		t.Fatalf("testutil: %v", toolsBuild.err)
	}
	return filepath.Join(toolsBuild.dir, name)
}

func buildTools() {
	b := &toolsBuild
	root, err := findModuleRoot()
	if err != nil {
		b.err = err
		return
	}
	gobin, err := lookupTool("go")
	if err != nil {
		if !isExecutable("/usr/local/go/bin/go") {
			b.err = fmt.Errorf("building ./tools: %v (set GEOREP_TOOLS_DIR or put go on PATH)", err)
			return
		}
		gobin = "/usr/local/go/bin/go"
	}
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("georep-testtools-%x", sum[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.err = err
		return
	}
	// Build into a private directory, then rename each tool into place, so
	// that test processes building at once never see a partial file.
	tmp, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		b.err = err
		return
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command(gobin, "build", "-o", tmp+"/", "./tools/"+workloadTool, "./tools/"+oracleTool)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		b.err = fmt.Errorf("go build ./tools/%s ./tools/%s: %v\n%s", workloadTool, oracleTool, err, out)
		return
	}
	for _, n := range []string{workloadTool, oracleTool} {
		if err := os.Rename(filepath.Join(tmp, n), filepath.Join(dir, n)); err != nil {
			b.err = err
			return
		}
	}
	b.dir = dir
}

// runToolCmd runs a tool of ./tools and returns its combined output and
// exit code (-1 when it could not be run or was killed).
func runToolCmd(bin string, args []string) (string, int, error) {
	cmd := exec.Command(bin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if cmd.ProcessState != nil && cmd.ProcessState.Exited() {
			return string(out), cmd.ProcessState.ExitCode(), nil
		}
		return string(out), -1, fmt.Errorf("%s %s: %w", filepath.Base(bin), strings.Join(args, " "), err)
	}
	return string(out), 0, nil
}
