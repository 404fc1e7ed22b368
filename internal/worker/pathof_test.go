package worker

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/tree"
)

// TestPathOfUnknownDirectory: a failure of an ID the job kept no path for
// (a directory whose metadata failed) is named by its path on the
// primary, found by its handle, not by the hex handle.
func TestPathOfUnknownDirectory(t *testing.T) {
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	op, err := fileid.NewOpener(src)
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	if !op.Available() {
		t.Skip("opening by handle is not permitted here (needs CAP_DAC_READ_SEARCH)")
	}
	id, err := fileid.OfPath(filepath.Join(src, "a", "b"))
	if err != nil {
		t.Skip(err)
	}
	parent, _ := fileid.OfPath(filepath.Join(src, "a"))
	s := &Session{cfg: Config{Source: src}, opener: op}
	job := &Job{paths: map[fileid.ID]string{}}
	if got := s.pathOf(job, id, tree.Slot{}); got != "a/b" {
		t.Errorf("pathOf = %q, want a/b", got)
	}
	if got := s.pathOf(job, "", tree.Slot{Parent: parent, Name: "c"}); got != "a/c" {
		t.Errorf("pathOf by parent = %q, want a/c", got)
	}
}
