package secondary

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// TestReadDirentsInodes: readDirents lists every entry (odd names
// included) with the inode number and type stat reports.
func TestReadDirentsInodes(t *testing.T) {
	dir := t.TempDir()
	names := []string{"a", "with space", "new\nline", string([]byte{0xff, 0xfe}), string(make255())}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 3000 { // more than one getdents buffer
		if err := os.WriteFile(filepath.Join(dir, "f"+strconv.Itoa(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)
	ents, err := readDirents(root, ".")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadDir(dir)
	if len(ents) != len(want) {
		t.Fatalf("readDirents found %d entries, ReadDir %d", len(ents), len(want))
	}
	got := map[string]dirent{}
	for _, e := range ents {
		got[e.name] = e
	}
	for _, w := range want {
		e, ok := got[w.Name()]
		if !ok {
			t.Fatalf("%q missing", w.Name())
		}
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, w.Name()), &st); err != nil {
			t.Fatal(err)
		}
		if e.ino != st.Ino {
			t.Errorf("%q: d_ino %d, stat %d", w.Name(), e.ino, st.Ino)
		}
		if wantTyp := uint8(unix.DT_REG); w.IsDir() && e.typ != unix.DT_DIR || !w.IsDir() && e.typ != wantTyp {
			t.Errorf("%q: type %d", w.Name(), e.typ)
		}
	}
}

func make255() []byte {
	b := make([]byte, 255)
	for i := range b {
		b[i] = 'n'
	}
	return b
}

// FuzzParseDirents: arbitrary bytes never crash the parser or produce
// entries beyond the input.
func FuzzParseDirents(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 19))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 20, 0, 8, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		ents := parseDirents(b, nil)
		if len(ents) > len(b)/19 {
			t.Fatalf("%d entries from %d bytes", len(ents), len(b))
		}
	})
}
