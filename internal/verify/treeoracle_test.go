package verify

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	treeoracle "github.com/georep/georep/internal/testutil/oracle"
	"github.com/georep/georep/internal/testutil/workload"
)

// TestAgreesWithTreeOracle cross-checks Compare against the repository's
// independent tree oracle (internal/testutil/oracle), which needs nothing
// beside the checkout (TestOracle does the same against shared/bench's
// verify.py where that is present): on a churned workload tree copied with
// cp -a both find no difference; after one file's content (same size and
// mtime) and another's mode change on the replica, both find exactly those.
func TestAgreesWithTreeOracle(t *testing.T) {
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	if _, err := workload.Populate(src, workload.PopulateOptions{Files: 300, Dirs: 8, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := workload.Churn(src, workload.ChurnOptions{Scale: 0.05, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v: %s", err, out)
	}
	must(t, os.MkdirAll(filepath.Join(dst, ".georep", "index"), 0o700)) // ignored by both

	for _, c := range []struct {
		opts Options
		o    treeoracle.Options
	}{
		{Options{}, treeoracle.Options{}},
		{Options{MtimeNS: true, DirMtime: true}, treeoracle.Options{MtimeNs: true, DirMtime: true}},
		{Options{NoOwner: true, NoXattrs: true, Excludes: []string{"odd names"}}, treeoracle.Options{NoOwner: true, NoXattrs: true, Exclude: []string{"odd names"}}},
	} {
		want, err := treeoracle.Compare(src, dst, c.o)
		must(t, err)
		r := compare(t, Local(src), Local(dst), c.opts)
		if !want.OK() || !r.OK() || want.SourceEntries != r.SourceEntries {
			t.Errorf("identical trees %+v: oracle %q; Compare ok=%v %q", c.o, want.Summary(), r.OK(), summaryLine(r))
		}
	}

	tamper(t, src, dst)

	want, err := treeoracle.Compare(src, dst, treeoracle.Options{})
	must(t, err)
	r := compare(t, Local(src), Local(dst), Options{})
	t.Logf("oracle:  %s\nCompare: %s", want.Summary(), summaryLine(r))
	oc := want.Counts()
	if oc[treeoracle.Content] != 1 || oc[treeoracle.Mode] != 1 || len(oc) != 2 {
		t.Errorf("the oracle found %v", oc)
	}
	if r.Counts["content"] != 1 || r.Counts["mode"] != 1 || len(r.Counts) != 2 {
		t.Errorf("Compare found %v, the oracle %v", r.Counts, oc)
	}
}
