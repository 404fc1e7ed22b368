package secondary

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/georep/georep/internal/plan"
	"github.com/georep/georep/internal/protocol"
	"github.com/georep/georep/internal/tree"
	"golang.org/x/sys/unix"
)

// listAll returns every entry of a listing.
func listAll(t *testing.T, conn *protocol.Conn) []*tree.Entry {
	t.Helper()
	var out []*tree.Entry
	done := make(chan bool, 1)
	conn.Send(&protocol.List{}, func(m protocol.Message, err error) bool {
		switch m := m.(type) {
		case *protocol.ListChunk:
			out = append(out, m.Entries...)
			return false
		case *protocol.ListEnd:
			done <- true
			return true
		}
		done <- false
		return true
	})
	conn.Flush()
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("list failed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("list timed out")
	}
	return out
}

// TestListEntersUnknownDirectories: directories georep does not know are
// listed under stand-in IDs and entered at any depth, so what they hold
// (an extra file four levels down) is seen.
func TestListEntersUnknownDirectories(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "a", "b", "c"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustWriteFile(t, filepath.Join(root, "a", "b", "c", "deep"), "x")
	conn, rootID := startAgent(t, root)
	byName := map[string]*tree.Entry{}
	for _, e := range listAll(t, conn) {
		byName[e.Name] = e
	}
	a, b, c, deep := byName["a"], byName["b"], byName["c"], byName["deep"]
	if a == nil || b == nil || c == nil || deep == nil {
		t.Fatalf("listing misses entries: %v", byName)
	}
	if a.Parent != rootID || !plan.IsUnknownDir(a.ID) || b.Parent != a.ID || !plan.IsUnknownDir(b.ID) ||
		c.Parent != b.ID || deep.Parent != c.ID || deep.ID != "" {
		t.Errorf("stand-ins do not chain: a=%+v b=%+v c=%+v deep=%+v", a, b, c, deep)
	}
}

// TestStaleDirRecordNotTrusted: a directory record naming the inode number
// of a file (the directory was removed behind georep's back and its inode
// reused) is dropped when the index is loaded, and the file is listed as
// an entry georep does not know, not as that directory.
func TestStaleDirRecordNotTrusted(t *testing.T) {
	root := t.TempDir()
	conn, rootID := startAgent(t, root)
	// A file georep knows, and one it does not.
	ok := call(t, conn, &protocol.PutFiles{Files: []protocol.FileItem{newFileItem(rootID, 20, "known", []byte("k"), 1)}}).(*protocol.PutFilesOK)
	if len(ok.Errors) != 0 {
		t.Fatalf("put: %+v", ok.Errors)
	}
	conn.Close()
	time.Sleep(100 * time.Millisecond)
	mustWriteFile(t, filepath.Join(root, "reused"), "r")
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, "known"), &st); err != nil {
		t.Fatal(err)
	}
	var rst unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, "reused"), &rst); err != nil {
		t.Fatal(err)
	}
	// Stale records: one names the known file's inode, one the unknown
	// file's (as if a removed directory's inode had been reused).
	for i, ino := range []uint64{st.Ino, rst.Ino} {
		id := fakeID(byte(30 + i))
		rec := strconv.FormatUint(ino, 10) + " " + string(rootID) + " " + hex.EncodeToString([]byte("gone"+strconv.Itoa(i)))
		p := filepath.Join(root, dirIndexPath(id))
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.Symlink(rec, p); err != nil {
			t.Fatal(err)
		}
	}
	conn2, _ := startAgent(t, root)
	byName := map[string]*tree.Entry{}
	for _, e := range listAll(t, conn2) {
		byName[e.Name] = e
	}
	if e := byName["known"]; e == nil || e.ID != fakeID(20) {
		t.Errorf("the known file: %+v, want ID %s", e, fakeID(20))
	}
	if e := byName["reused"]; e == nil || e.ID != "" {
		t.Errorf("the file on a reused inode: %+v, want an unknown entry", e)
	}
	if _, err := os.Lstat(filepath.Join(root, dirIndexPath(fakeID(30)))); !os.IsNotExist(err) {
		t.Errorf("the stale record naming a file georep knows was kept: %v", err)
	}
}

func mustWriteFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestStaleDirRecordOfAnotherDirectory: a directory record whose inode
// number another directory now has (same kind) is told apart by the
// secondary's file handle: the directory is listed as unknown.
func TestStaleDirRecordOfAnotherDirectory(t *testing.T) {
	root := t.TempDir()
	conn, rootID := startAgent(t, root)
	conn.Close()
	time.Sleep(100 * time.Millisecond)
	if err := os.Mkdir(filepath.Join(root, "newdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, "newdir"), &st); err != nil {
		t.Fatal(err)
	}
	id := fakeID(40)
	// The record of a removed directory that had this inode number, with
	// that directory's handle (another generation).
	rec := strconv.FormatUint(st.Ino, 10) + " " + string(rootID) + " " + hex.EncodeToString([]byte("newdir")) + " 01000000deadbeefdeadbeef"
	p := filepath.Join(root, dirIndexPath(id))
	os.MkdirAll(filepath.Dir(p), 0o700)
	if err := os.Symlink(rec, p); err != nil {
		t.Fatal(err)
	}
	conn2, _ := startAgent(t, root)
	for _, e := range listAll(t, conn2) {
		if e.Name == "newdir" && !plan.IsUnknownDir(e.ID) {
			t.Errorf("a directory on a reused inode number is listed as %s, want a stand-in", e.ID.Short())
		}
	}
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		t.Errorf("the stale record was kept: %v", err)
	}
}
