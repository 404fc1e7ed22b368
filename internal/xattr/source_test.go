package xattr

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSourceReadsWhatIsThere: names past the first buffer and a value past
// the first one are read whole, through a descriptor and through a path;
// a symlink's path reads the link's own (empty) set, not its target's.
func TestSourceReadsWhatIsThere(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 30 { // 30 names of 38 bytes: more than 1 KiB of list
		n := fmt.Sprintf("user.a-rather-long-attribute-name-%03d", i)
		if err := unix.Setxattr(f, n, []byte{byte(i)}, 0); err != nil {
			t.Skipf("user xattrs not supported here: %v", err)
		}
		want = append(want, n)
	}
	big := bytes.Repeat([]byte("v"), 1500) // ext4: all of a file's attributes fit in 4 KiB
	if err := unix.Setxattr(f, "user.big", big, 0); err != nil {
		t.Fatal(err)
	}
	want = append(want, "user.big")
	slices.Sort(want)
	fd, err := unix.Open(f, unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for what, src := range map[string]Source{"fd": OfFD(fd), "path": OfLink(f)} {
		names, err := src.Names()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		slices.Sort(names)
		if !slices.Equal(names, want) {
			t.Errorf("%s: names %v", what, names)
		}
		if v, err := src.Value("user.big"); err != nil || !bytes.Equal(v, big) {
			t.Errorf("%s: user.big: %d bytes, %v", what, len(v), err)
		}
		if _, err := src.Value("user.missing"); !Absent(err) {
			t.Errorf("%s: a missing attribute gave %v", what, err)
		}
	}
	l := filepath.Join(dir, "l")
	if err := os.Symlink(f, l); err != nil {
		t.Fatal(err)
	}
	if names, err := OfLink(l).Names(); err != nil || len(names) != 0 {
		t.Errorf("symlink: %v, %v (its target's attributes?)", names, err)
	}
}
