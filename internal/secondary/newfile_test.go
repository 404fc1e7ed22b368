package secondary

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/protocol"
	"github.com/georep/georep/internal/tree"
)

func newFileItem(rootID fileid.ID, id byte, rootSlot string, data []byte, mtime int64) protocol.FileItem {
	return protocol.FileItem{Mode: protocol.FileNew,
		Entry: &tree.Entry{ID: fakeID(id), Kind: tree.KindRegular, Size: int64(len(data)), Meta: tree.Meta{Mode: 0o640, Mtime: mtime, Atime: mtime}},
		Slots: []tree.Slot{{Parent: rootID, Name: rootSlot}}, Xattrs: []protocol.Xattr{}, Data: data}
}

// TestNewFilesThroughTheIndex: a batch of new files lands under the index
// and at their names with content, mode and mtime. A file under an index
// name that is linked nowhere (planted here; the agent's own writes fill an
// unnamed file and link it only when complete) is reported in limbo by the
// next session and gets its whole content when the file is sent again,
// whether as changed content or as a new file.
func TestNewFilesThroughTheIndex(t *testing.T) {
	root := t.TempDir()
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC).UnixNano()
	conn, rootID := startAgent(t, root)
	want := map[string][]byte{"a": bytes.Repeat([]byte("a"), 5000), "b": []byte("bee"), "c": {}}
	var items []protocol.FileItem
	n := byte(10)
	for name, data := range want {
		items = append(items, newFileItem(rootID, n, name, data, mtime))
		n++
	}
	ok := call(t, conn, &protocol.PutFiles{Files: items}).(*protocol.PutFilesOK)
	if len(ok.Errors) != 0 {
		t.Fatalf("batch errors: %+v", ok.Errors)
	}
	for name, data := range want {
		p := filepath.Join(root, name)
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: %q, %v", name, got, err)
		}
		st, _ := os.Stat(p)
		if st.Mode().Perm() != 0o640 || st.ModTime().UnixNano() != mtime {
			t.Errorf("%s: mode %v mtime %v", name, st.Mode(), st.ModTime())
		}
	}
	for _, it := range items {
		if _, err := os.Stat(filepath.Join(root, fileIndexPath(it.Entry.ID))); err != nil {
			t.Errorf("%s not in the index: %v", it.Slots[0].Name, err)
		}
	}
	conn.Close()

	// A partial file under an index name, linked nowhere.
	torn := fakeID(99)
	tp := filepath.Join(root, fileIndexPath(torn))
	os.MkdirAll(filepath.Dir(tp), 0o700)
	if err := os.WriteFile(tp, []byte("par"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the first agent lets go of the root
	conn2, _ := startAgent(t, root)
	end := listEnd(t, conn2)
	found := false
	for _, id := range end.Limbo {
		found = found || id == torn
	}
	if !found {
		t.Fatalf("a partial index-only file is not reported in limbo: %v", end.Limbo)
	}
	// Sent again (as the crawl does for a limbo file it links back), the
	// file gets its whole content.
	full := bytes.Repeat([]byte("full"), 1000)
	it := newFileItem(rootID, 99, "torn", full, mtime)
	it.Mode = protocol.FileReplace
	ok = call(t, conn2, &protocol.PutFiles{Files: []protocol.FileItem{it}}).(*protocol.PutFilesOK)
	if len(ok.Errors) != 0 {
		t.Fatalf("resend errors: %+v", ok.Errors)
	}
	if got, _ := os.ReadFile(tp); !bytes.Equal(got, full) {
		t.Fatalf("index file after the resend: %d bytes", len(got))
	}
	// And as a new file (a primary that lost its records): the occupied
	// index name takes the general path, which replaces it.
	full2 := bytes.Repeat([]byte("again"), 1000)
	ok = call(t, conn2, &protocol.PutFiles{Files: []protocol.FileItem{newFileItem(rootID, 99, "torn2", full2, mtime)}}).(*protocol.PutFilesOK)
	if len(ok.Errors) != 0 {
		t.Fatalf("new-file resend errors: %+v", ok.Errors)
	}
	if got, _ := os.ReadFile(filepath.Join(root, "torn2")); !bytes.Equal(got, full2) {
		t.Fatalf("torn2: %d bytes", len(got))
	}
}

func listEnd(t *testing.T, conn *protocol.Conn) *protocol.ListEnd {
	t.Helper()
	done := make(chan *protocol.ListEnd, 1)
	conn.Send(&protocol.List{}, func(m protocol.Message, err error) bool {
		if e, ok := m.(*protocol.ListEnd); ok {
			done <- e
			return true
		}
		if err != nil {
			done <- nil
			return true
		}
		return false
	})
	conn.Flush()
	select {
	case e := <-done:
		if e == nil {
			t.Fatal("list failed")
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("list timed out")
	}
	return nil
}
