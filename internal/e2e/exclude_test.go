package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/georep/georep/internal/testutil"
)

// excludeTree writes a tree with what the rules below match at several
// depths, and what they must not match beside it. It returns the paths
// the rules exclude and the paths they keep.
func excludeTree(t *testing.T, root string) (excluded, kept []string) {
	t.Helper()
	files := map[string]bool{ // path -> excluded
		"cache/blob":            true,
		"cache/deep/blob":       true,
		"a/cache/kept":          false, // "/cache/" is anchored
		"cachefile":             false,
		"x.tmp":                 true,
		"a/b/y.tmp":             true,
		"a/b/y.tmpl":            false,
		"logs/a/old/f":          true,
		"srv/logs/a/b/old":      true,  // unanchored: at any depth; old is a file here
		"logs/old":              false, // ** needs a directory between
		"logs/a/older":          false,
		"keep/file":             false,
		"keep/deeper/tree/file": false,
	}
	for p, x := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("content of "+p), 0o644); err != nil {
			t.Fatal(err)
		}
		if x {
			excluded = append(excluded, p)
		} else {
			kept = append(kept, p)
		}
	}
	// A "cache" that is a file at the root is not a directory: "/cache/"
	// does not match it; a tmp directory matches "*.tmp" with its content.
	os.MkdirAll(filepath.Join(root, "d.tmp/inner"), 0o755)
	os.WriteFile(filepath.Join(root, "d.tmp/inner/f"), []byte("x"), 0o644)
	excluded = append(excluded, "d.tmp/inner/f")
	return excluded, kept
}

var excludeArgs = []string{"--exclude", "/cache/", "--exclude", "*.tmp", "--exclude", "logs/**/old"}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// TestSyncExcludes is issue 14's "done when" for excludes: rsync's rules
// at several depths; excluded entries absent on a fresh secondary, kept on
// a secondary that had them (and not updated there), deleted with
// --delete-excluded; georep verify and verify.py with the same rules agree.
func TestSyncExcludes(t *testing.T) {
	bin := testutil.GeorepBin(t)
	dir := t.TempDir()
	p, fresh, old, st := filepath.Join(dir, "P"), filepath.Join(dir, "fresh"), filepath.Join(dir, "old"), filepath.Join(dir, "state")
	excluded, kept := excludeTree(t, p)

	// A fresh secondary gets nothing excluded.
	runSync(t, bin, append([]string{p, fresh, "--state-dir", st}, excludeArgs...)...)
	for _, x := range excluded {
		if exists(filepath.Join(fresh, x)) {
			t.Errorf("excluded %s reached a fresh secondary", x)
		}
	}
	for _, k := range kept {
		if !exists(filepath.Join(fresh, k)) {
			t.Errorf("%s (not excluded) is missing on the secondary", k)
		}
	}
	verifyArgs := append([]string{"verify", p, fresh}, excludeArgs...)
	if out, errOut, code := georep(t, bin, verifyArgs...); code != 0 {
		t.Errorf("georep verify with the excludes: exit %d\n%s%s", code, out, errOut)
	}
	t.Run("verify.py", func(t *testing.T) {
		if ok, out := testutil.VerifyPy(t, p, fresh, excludeArgs...); !ok {
			t.Errorf("verify.py with the excludes:\n%s", out)
		}
	})

	// A secondary that already has them keeps them, as they were.
	runSync(t, bin, p, old, "--state-dir", st)
	for _, x := range excluded {
		if !exists(filepath.Join(old, x)) {
			t.Fatalf("the first sync, without excludes, did not copy %s", x)
		}
	}
	for _, x := range excluded {
		os.WriteFile(filepath.Join(p, x), []byte("changed on the primary"), 0o644)
	}
	os.RemoveAll(filepath.Join(p, "cache/deep")) // a delete under an excluded directory
	runSync(t, bin, append([]string{p, old, "--state-dir", st}, excludeArgs...)...)
	for _, x := range excluded {
		b, err := os.ReadFile(filepath.Join(old, x))
		if err != nil {
			t.Errorf("excluded %s was removed from the secondary: %v", x, err)
		} else if strings.Contains(string(b), "changed") {
			t.Errorf("excluded %s was updated on the secondary", x)
		}
	}
	if out, errOut, code := georep(t, bin, append([]string{"verify", p, old}, excludeArgs...)...); code != 0 {
		t.Errorf("georep verify of the kept secondary: exit %d\n%s%s", code, out, errOut)
	}

	// --delete-excluded removes them.
	runSync(t, bin, append([]string{p, old, "--state-dir", st, "--delete-excluded"}, excludeArgs...)...)
	for _, x := range excluded {
		if exists(filepath.Join(old, x)) {
			t.Errorf("excluded %s survived --delete-excluded", x)
		}
	}
	for _, k := range kept {
		if !exists(filepath.Join(old, k)) {
			t.Errorf("%s is missing after --delete-excluded", k)
		}
	}
}

// TestSyncExcludeFromAndBadPattern: --exclude-from reads rules as rsync
// does; a bad rule is a usage error that changes nothing.
func TestSyncExcludeFromAndBadPattern(t *testing.T) {
	bin := testutil.GeorepBin(t)
	dir := t.TempDir()
	p, s := filepath.Join(dir, "P"), filepath.Join(dir, "S")
	excluded, _ := excludeTree(t, p)
	rules := filepath.Join(dir, "rules")
	os.WriteFile(rules, []byte("# georep excludes\n/cache/\n*.tmp\n\n; logs\nlogs/**/old\n"), 0o644)
	runSync(t, bin, p, s, "--state-dir", filepath.Join(dir, "st"), "--exclude-from", rules)
	for _, x := range excluded {
		if exists(filepath.Join(s, x)) {
			t.Errorf("excluded %s was synced", x)
		}
	}
	s2 := filepath.Join(dir, "S2")
	_, errOut, code := georep(t, bin, "sync", p, s2, "--state-dir", filepath.Join(dir, "st"), "--exclude", "/")
	if code != 2 || !strings.Contains(errOut, "bad exclude pattern") || exists(s2) {
		t.Errorf("bad pattern: exit %d, %q, secondary created: %v", code, errOut, exists(s2))
	}
}
