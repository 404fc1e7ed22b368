package testutil

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// LoopExt4 makes a fresh journaled ext4 of sizeMiB MiB in a sparse image
// file (mkfs.ext4 -q -F), attaches it to a loop device (losetup --find
// --show) and mounts it with -o noatime on a temp dir, which it returns. The
// mount starts empty: lost+found is removed so that it never shows up as a
// difference between trees. Cleanup unmounts (lazily if it stays busy) and
// detaches the device. Root only: it skips the test otherwise.
//
// The root filesystem of these machines is ext4 without a journal, on which
// creating files after deleting many is erratically slow; time benchmarks on
// a LoopExt4 (see shared/bench/README.md).
func LoopExt4(t testing.TB, sizeMiB int) string {
	t.Helper()
	return loopFS(t, sizeMiB)
}

// TinyFS returns a small mounted ext4 (no blocks reserved for root, so root
// sees ENOSPC when it is full, as a user would) for out-of-space tests. At
// 1 MiB it holds about 900 KiB of data and 128 inodes. Root only, like
// LoopExt4.
func TinyFS(t testing.TB, sizeMiB int) string {
	t.Helper()
	return loopFS(t, sizeMiB, "-m", "0")
}

var losetupMu sync.Mutex

func loopFS(t testing.TB, sizeMiB int, mkfsArgs ...string) string {
	t.Helper()
	RequireRoot(t)
	mkfs := RequireTool(t, "mkfs.ext4", "e2fsprogs")
	RequireTool(t, "losetup", "mount")
	RequireTool(t, "mount", "mount")
	RequireTool(t, "umount", "mount")
	if sizeMiB < 1 {
		t.Fatalf("testutil: filesystem size %d MiB: want at least 1", sizeMiB)
	}

	img := filepath.Join(t.TempDir(), "ext4.img")
	mnt := t.TempDir()
	f, err := os.Create(img)
	if err == nil {
		err = f.Truncate(int64(sizeMiB) << 20)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatalf("testutil: image: %v", err)
	}
	if err := runTool(mkfs, append(append([]string{"-q", "-F"}, mkfsArgs...), img)...); err != nil {
		t.Fatalf("testutil: %v", err)
	}

	var loop string
	for attempt := 0; ; attempt++ {
		losetupMu.Lock()
		out, err := toolOutput("losetup", "--find", "--show", img)
		losetupMu.Unlock()
		if err == nil {
			loop = strings.TrimSpace(out)
			break
		}
		if attempt == 5 { // another test process may have raced us to a free device
			t.Fatalf("testutil: %v", err)
		}
		time.Sleep(time.Duration(50*(attempt+1)) * time.Millisecond)
	}
	t.Cleanup(func() {
		for i := 0; ; i++ {
			err := runTool("losetup", "-d", loop)
			if err == nil || i == 10 {
				if err != nil {
					t.Logf("testutil: %v", err)
				}
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	if err := runTool("mount", "-o", "noatime", loop, mnt); err != nil {
		t.Fatalf("testutil: %v", err)
	}
	t.Cleanup(func() { unmount(t, mnt) })
	if err := os.Remove(filepath.Join(mnt, "lost+found")); err != nil && !os.IsNotExist(err) {
		t.Fatalf("testutil: %v", err)
	}
	return mnt
}

// unmount unmounts dir, retrying while it is busy, then lazily.
func unmount(t testing.TB, dir string) {
	var err error
	for i := range 10 {
		if !isMountPoint(dir) {
			return
		}
		if err = runTool("umount", dir); err == nil {
			return
		}
		time.Sleep(time.Duration(50*(i+1)) * time.Millisecond)
	}
	t.Logf("testutil: %v; unmounting lazily", err)
	if err := runTool("umount", "-l", dir); err != nil {
		t.Logf("testutil: %v", err)
	}
}

// isMountPoint tells whether dir is the mount point of a mount, per
// /proc/self/mountinfo.
func isMountPoint(dir string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint ...; octal escapes for spaces etc.
		if fs := strings.Fields(sc.Text()); len(fs) > 4 && unescapeMount(fs[4]) == dir {
			return true
		}
	}
	return false
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
