package secondary

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/georep/georep/internal/plan"
	"github.com/georep/georep/internal/protocol"
	"github.com/georep/georep/internal/tree"
)

func hello(t *testing.T, root string, h *protocol.Hello) (*protocol.Conn, error) {
	t.Helper()
	ar, pw := io.Pipe()
	pr, aw := io.Pipe()
	go Serve(context.Background(), duplex{ar, aw, []io.Closer{ar, aw}}, Options{Root: root, Software: "test"})
	conn := protocol.NewConn(duplex{pr, pw, []io.Closer{pr, pw}})
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h.Version = protocol.Version
	_, err := conn.Call(ctx, h)
	return conn, err
}

func TestOneWriterPerRoot(t *testing.T) {
	root := t.TempDir()
	if _, err := hello(t, root, &protocol.Hello{RootID: fakeID(1)}); err != nil {
		t.Fatal(err)
	}
	// Another primary is refused as foreign without --force, and even with
	// it while the first session holds the root.
	if _, err := hello(t, root, &protocol.Hello{RootID: fakeID(2)}); !errors.Is(err, protocol.ErrForeign) {
		t.Fatalf("another primary without --force: %v, want ErrForeign", err)
	}
	_, err := hello(t, root, &protocol.Hello{RootID: fakeID(2), Force: true})
	if err == nil || !strings.Contains(err.Error(), "another georep session") {
		t.Fatalf("a second primary was let in: %v", err)
	}
	// A read-only session (verify) is let in and may not write.
	conn, err := hello(t, root, &protocol.Hello{RootID: fakeID(1), ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only session refused: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = conn.Call(ctx, &protocol.Apply{Ops: []plan.Op{{Kind: plan.Mkdir, ID: fakeID(3), To: tree.Slot{Parent: fakeID(1), Name: "x"}, Entry: &tree.Entry{Kind: tree.KindDir}}}})
	if err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("a read-only session could write: %v", err)
	}
}

func TestReadOnlyRefusesForeignReplica(t *testing.T) {
	root := t.TempDir()
	c, err := hello(t, root, &protocol.Hello{RootID: fakeID(1)})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	time.Sleep(100 * time.Millisecond)
	if _, err := hello(t, root, &protocol.Hello{RootID: fakeID(9), ReadOnly: true}); err == nil {
		t.Fatal("verify of a replica of another primary was accepted")
	}
}
