package secondary

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openContent opens only regular files, never through a symlink, and
// never blocks (a FIFO) or opens a device to find out.
func TestOpenContentRegularOnly(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "outside")
	os.WriteFile(outside, []byte("outside"), 0o644)
	os.WriteFile(filepath.Join(dir, "file"), []byte("content"), 0o644)
	os.Mkdir(filepath.Join(dir, "dir"), 0o755)
	os.Symlink(outside, filepath.Join(dir, "link"))
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	dev := os.Geteuid() == 0 && unix.Mknod(filepath.Join(dir, "null"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))) == nil
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	cases := []struct {
		name    string
		notReg  bool // ErrNotRegular (else: any error, or none for "file")
		wantErr bool
	}{
		{"file", false, false},
		{"dir", true, true},
		{"fifo", true, true},
		{"link", false, true},
		{"missing", false, true},
	}
	if dev {
		cases = append(cases, struct {
			name    string
			notReg  bool
			wantErr bool
		}{"null", true, true})
	}
	for _, c := range cases {
		for _, flags := range []int{unix.O_RDONLY, unix.O_WRONLY} {
			done := make(chan struct{})
			var f *os.File
			var err error
			go func() { f, _, err = openContent(dfd, c.name, flags); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: openContent blocked", c.name)
			}
			if f != nil {
				f.Close()
			}
			switch {
			case c.wantErr && err == nil:
				t.Errorf("%s (flags %#x): opened, want a refusal", c.name, flags)
			case !c.wantErr && err != nil:
				t.Errorf("%s (flags %#x): %v", c.name, flags, err)
			case c.notReg && !errors.Is(err, ErrNotRegular):
				t.Errorf("%s (flags %#x): %v, want ErrNotRegular", c.name, flags, err)
			}
		}
	}
	if b, _ := os.ReadFile(outside); string(b) != "outside" {
		t.Errorf("the symlink target was written: %q", b)
	}
}
