package secondary

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/plan"
	"github.com/georep/georep/internal/protocol"
	"github.com/georep/georep/internal/tree"
)

type duplex struct {
	io.Reader
	io.Writer
	closers []io.Closer
}

func (d duplex) Close() error {
	for _, c := range d.closers {
		c.Close()
	}
	return nil
}

// startAgent runs an agent on root in-process and returns a client.
func startAgent(t *testing.T, root string) (*protocol.Conn, fileid.ID) {
	t.Helper()
	ar, pw := io.Pipe()
	pr, aw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- Serve(context.Background(), duplex{ar, aw, []io.Closer{ar, aw}}, Options{Root: root, Software: "test"})
	}()
	conn := protocol.NewConn(duplex{pr, pw, []io.Closer{pr, pw}})
	t.Cleanup(func() {
		conn.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("agent did not stop")
		}
	})
	rootID := fileid.Make(fileid.FSID{1, 2, 3, 4, 5, 6, 7, 8}, 1, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := conn.Call(ctx, &protocol.Hello{Version: protocol.Version, Software: "test", RootID: rootID})
	if err != nil {
		t.Fatalf("hello: %v", err)
	}
	if _, ok := m.(*protocol.HelloOK); !ok {
		t.Fatalf("hello answered %T", m)
	}
	return conn, rootID
}

func fakeID(n byte) fileid.ID {
	return fileid.Make(fileid.FSID{1, 2, 3, 4, 5, 6, 7, 8}, 1, []byte{9, 9, 9, 9, 9, 9, 9, n})
}

func call(t *testing.T, conn *protocol.Conn, m protocol.Message) protocol.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := conn.Call(ctx, m)
	if err != nil {
		t.Fatalf("%T: %v", m, err)
	}
	return r
}

// listOutside returns everything in dir except the secondary root.
func listOutside(t *testing.T, dir, root string) []string {
	var out []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if p == dir {
			return nil
		}
		if p == root || strings.HasPrefix(p, root+"/") {
			return nil
		}
		out = append(out, p)
		return nil
	})
	return out
}

func TestHostileNamesRefused(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	os.MkdirAll(outside, 0o755)
	conn, rootID := startAgent(t, root)
	names := []string{"..", ".", "", "a/b", "../escape", "x\x00y", ".georep", strings.Repeat("n", 256)}
	var ops []plan.Op
	for i, n := range names {
		e := &tree.Entry{Kind: tree.KindDir, Meta: tree.Meta{Mode: 0o755}}
		ops = append(ops, plan.Op{Kind: plan.Mkdir, ID: fakeID(byte(i)), To: tree.Slot{Parent: rootID, Name: n}, Entry: e})
		sym := &tree.Entry{Kind: tree.KindSymlink, Target: "/etc/passwd"}
		ops = append(ops, plan.Op{Kind: plan.Symlink, ID: fakeID(byte(100 + i)), To: tree.Slot{Parent: rootID, Name: n}, Entry: sym})
	}
	r := call(t, conn, &protocol.Apply{Ops: ops}).(*protocol.ApplyOK)
	if len(r.Errors) != len(ops) {
		t.Fatalf("%d of %d hostile ops failed; every one must: %+v", len(r.Errors), len(ops), r.Errors)
	}
	// A new file with a hostile slot is refused too.
	e := &tree.Entry{ID: fakeID(200), Kind: tree.KindRegular, Size: 3, Meta: tree.Meta{Mode: 0o644}}
	fr := call(t, conn, &protocol.PutFile{Stream: 1, Mode: protocol.FileNew, Entry: e, Slots: []tree.Slot{{Parent: rootID, Name: "../evil"}}, Data: []byte("bad"), Last: true}).(*protocol.FileOK)
	if fr.Err == nil {
		t.Fatal("a file with slot name ../evil was accepted")
	}
	if got := listOutside(t, base, root); len(got) != 1 || got[0] != outside {
		t.Fatalf("entries appeared outside the root: %v", got)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("the agent wrote outside its root: %v", entries)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 1 || entries[0].Name() != ".georep" {
		t.Fatalf("hostile ops created entries in the root: %v", entries)
	}
}

func TestPlantedSymlinkNotFollowed(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	os.MkdirAll(outside, 0o755)
	os.MkdirAll(root, 0o755)
	// Planted on the secondary: a symlink where the primary has a directory.
	if err := os.Symlink(outside, filepath.Join(root, "evil")); err != nil {
		t.Fatal(err)
	}
	conn, rootID := startAgent(t, root)
	dirID := fakeID(1)
	ops := []plan.Op{{Kind: plan.Mkdir, ID: dirID, To: tree.Slot{Parent: rootID, Name: "evil"}, Entry: &tree.Entry{Kind: tree.KindDir, Meta: tree.Meta{Mode: 0o755}}}}
	r := call(t, conn, &protocol.Apply{Ops: ops}).(*protocol.ApplyOK)
	if len(r.Errors) != 0 {
		t.Fatalf("mkdir over a planted symlink: %+v", r.Errors)
	}
	e := &tree.Entry{ID: fakeID(2), Kind: tree.KindRegular, Size: 4, Meta: tree.Meta{Mode: 0o644}}
	fr := call(t, conn, &protocol.PutFile{Stream: 1, Mode: protocol.FileNew, Entry: e, Slots: []tree.Slot{{Parent: dirID, Name: "f"}}, Data: []byte("data"), Last: true}).(*protocol.FileOK)
	if fr.Err != nil {
		t.Fatalf("put file: %s", fr.Err.Msg)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("the agent followed a planted symlink and wrote outside: %v", entries)
	}
	fi, err := os.Lstat(filepath.Join(root, "evil"))
	if err != nil || !fi.IsDir() {
		t.Fatalf("evil is not a real directory now: %v %v", fi, err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "evil", "f")); err != nil || string(b) != "data" {
		t.Fatalf("file not written inside the root: %q %v", b, err)
	}
}

func TestPlantedMetaSymlinkRefused(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	os.MkdirAll(outside, 0o755)
	os.MkdirAll(root, 0o755)
	os.Symlink(outside, filepath.Join(root, ".georep"))
	ar, pw := io.Pipe()
	pr, aw := io.Pipe()
	go Serve(context.Background(), duplex{ar, aw, []io.Closer{ar, aw}}, Options{Root: root})
	conn := protocol.NewConn(duplex{pr, pw, []io.Closer{pr, pw}})
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := conn.Call(ctx, &protocol.Hello{Version: protocol.Version, RootID: fakeID(0)})
	if err == nil {
		t.Fatal("agent accepted a .georep that is a symlink out of its root")
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("the agent wrote outside its root: %v", entries)
	}
}

func TestVersionMismatchNamesBoth(t *testing.T) {
	root := t.TempDir()
	ar, pw := io.Pipe()
	pr, aw := io.Pipe()
	go Serve(context.Background(), duplex{ar, aw, []io.Closer{ar, aw}}, Options{Root: root, Software: "9.9.9"})
	conn := protocol.NewConn(duplex{pr, pw, []io.Closer{pr, pw}})
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := conn.Call(ctx, &protocol.Hello{Version: 99, Software: "1.2.3", RootID: fakeID(0)})
	if err == nil || !strings.Contains(err.Error(), "99") || !strings.Contains(err.Error(), "1.2.3") || !strings.Contains(err.Error(), "9.9.9") {
		t.Fatalf("want a mismatch error naming both versions, got %v", err)
	}
}

func TestGarbageFramesEndSession(t *testing.T) {
	root := t.TempDir()
	ar, pw := io.Pipe()
	pr, aw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- Serve(context.Background(), duplex{ar, aw, []io.Closer{ar, aw}}, Options{Root: root}) }()
	go io.Copy(io.Discard, pr)
	go func() {
		// A frame of an unknown type, then a frame header claiming 4 GiB.
		pw.Write([]byte{0, 0, 0, 9, 200, 1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xff, 0xff, 0xff})
		pw.Close()
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("garbage accepted without error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("agent hung on garbage")
	}
}
