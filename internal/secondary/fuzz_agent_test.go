package secondary

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/plan"
	"github.com/georep/georep/internal/protocol"
	"github.com/georep/georep/internal/testutil"
	"github.com/georep/georep/internal/tree"
	"golang.org/x/sys/unix"
)

// choices turns fuzz input into decisions; past its end every choice is 0.
type choices struct{ b []byte }

func (c *choices) n(k int) int {
	if len(c.b) == 0 || k <= 1 {
		return 0
	}
	v := int(c.b[0])
	c.b = c.b[1:]
	return v % k
}

func (c *choices) more() bool { return len(c.b) > 0 }

// FuzzAgentConfinement drives a real agent (a `georep secondary` child
// over pipes) with well-formed message sequences the input chooses —
// entry operations, files, batches, deltas, metadata, lookups, limbo,
// hashes, stime, listings — built from a small pool of IDs, names and
// kinds, while a "local user" goroutine keeps exchanging directories of
// the tree (and .georep itself) with symlinks that lead out of the root.
// After each run the canary outside the root must be untouched, and the
// agent must have answered every message and still be alive.
func FuzzAgentConfinement(f *testing.F) {
	// Built (or found) once per process, before any input is timed.
	testutil.GeorepBin(f)
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Add([]byte("\x00\x03\x01\x00\x02\x04\x07\x07\x07\x09\x09\x0a\x0b\x0c\x0d\x0e"))
	f.Add([]byte(strings.Repeat("\x02\x05\x03\x01\x00\x06", 8)))
	f.Add([]byte(strings.Repeat("\x08\x01\x04\x09\x0a\x03\x0b\x02", 6)))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 512 {
			data = data[:512]
		}
		fuzzAgentRun(t, data)
	})
}

func fuzzAgentRun(t *testing.T, data []byte) {
	base := workDir(t)
	root := filepath.Join(base, "root")
	cn := canary(t, base)
	if err := os.Chmod(filepath.Join(cn, "secret"), 0o666); err != nil {
		t.Fatal(err)
	}
	before := snapshot(cn)
	c, conn, rootID := start(t, root, -1)
	ch := &choices{b: data}

	// The tree the messages work in: two directories and a file.
	dirA, dirB, file := idN(1), idN(2), idN(3)
	r, err := callT(t, conn, &protocol.Apply{Ops: []plan.Op{
		{Kind: plan.Mkdir, ID: dirA, To: tree.Slot{Parent: rootID, Name: "a"}, Entry: dirEntry()},
		{Kind: plan.Mkdir, ID: dirB, To: tree.Slot{Parent: dirA, Name: "b"}, Entry: dirEntry()},
	}}, 10*time.Second)
	if err != nil || len(r.(*protocol.ApplyOK).Errors) != 0 {
		_, werr := c.exited(time.Second)
		if killedFromOutside(werr) {
			t.Skipf("agent SIGKILLed from outside during setup (%v): not its doing", werr)
		}
		t.Fatalf("setup: %+v %v (agent: %v) (%s)", r, err, werr, headStr(c.stderr.String(), 2000))
	}
	putSmall(t, conn, 1, file, tree.Slot{Parent: dirB, Name: "f"}, []byte("content"))

	// The local user: symlinks out of the root, exchanged with the
	// directories (through descriptors, so its own swaps never follow them).
	for _, p := range []string{filepath.Join(root, "evil"), filepath.Join(root, "a", "evil"), filepath.Join(root, "evilmeta")} {
		if err := os.Symlink(cn, p); err != nil {
			t.Fatal(err)
		}
	}
	rootFD, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rootFD)
	aFD, err := unix.Open(filepath.Join(root, "a"), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(aFD)
	var stop atomic.Bool
	var swaps atomic.Int64
	var wg sync.WaitGroup
	for _, sw := range []struct {
		fd   int
		x, y string
	}{{rootFD, "a", "evil"}, {aFD, "b", "evil"}, {rootFD, ".georep", "evilmeta"}} {
		wg.Add(1)
		go func(fd int, x, y string) {
			defer wg.Done()
			for !stop.Load() {
				if unix.Renameat2(fd, x, fd, y, unix.RENAME_EXCHANGE) == nil {
					swaps.Add(1)
				}
				// Thousands of swaps a second, without starving the
				// agent of a busy machine's CPUs.
				time.Sleep(20 * time.Microsecond)
			}
		}(sw.fd, sw.x, sw.y)
	}
	stopped := false
	stopSwaps := func() {
		if !stopped {
			stopped = true
			stop.Store(true)
			wg.Wait()
		}
	}
	defer stopSwaps()

	ids := []fileid.ID{rootID, dirA, dirB, file, idN(4), idN(5), idN(6), fileid.ID(strings.Repeat("ab", 140))}
	names := []string{"a", "b", "f", "g", "evil", ".georep", "evilmeta", "h"}
	kinds := []tree.Kind{tree.KindRegular, tree.KindDir, tree.KindSymlink, tree.KindFIFO, tree.KindChar, tree.KindSocket}
	id := func() fileid.ID { return ids[ch.n(len(ids))] }
	slot := func() tree.Slot { return tree.Slot{Parent: id(), Name: names[ch.n(len(names))]} }
	entry := func(k tree.Kind) *tree.Entry {
		return &tree.Entry{ID: id(), Kind: k, Size: int64(ch.n(16)), Target: cn + "/secret", Rdev: uint64(ch.n(4)),
			Meta: tree.Meta{Mode: uint32(ch.n(8))<<9 | 0o644, UID: uint32(ch.n(3)), GID: uint32(ch.n(3)), Mtime: int64(ch.n(100)) * 1e9}}
	}
	stream := uint64(100)
	for i := 0; i < 40 && ch.more(); i++ {
		var m protocol.Message
		switch ch.n(11) {
		case 0, 1:
			var ops []plan.Op
			for j := 0; j <= ch.n(4); j++ {
				op := plan.Op{Kind: plan.Kind(1 + ch.n(int(plan.PurgeStrays))), ID: id(), From: slot(), To: slot()}
				if ch.n(3) > 0 {
					op.Entry = entry(kinds[ch.n(len(kinds))])
				}
				ops = append(ops, op)
			}
			m = &protocol.Apply{Ops: ops}
		case 2:
			e := entry(tree.KindRegular)
			stream++
			m = &protocol.PutFile{Stream: stream, Mode: protocol.FileMode(1 + ch.n(2)), Entry: e, Slots: []tree.Slot{slot()},
				Data: []byte("payload!!!payload"[:e.Size]), Last: true}
		case 3:
			var b protocol.FilesBuilder
			for j := 0; j <= ch.n(3); j++ {
				e := entry(tree.KindRegular)
				e.Slot = slot()
				b.Add(protocol.FileMode(1+ch.n(2)), e, []tree.Slot{e.Slot}, nil, int(e.Size), func(p []byte) (int, error) { return copy(p, "batchdatabatchdata"), nil })
			}
			m = b.Message()
		case 4:
			it := protocol.MetaItem{Entry: entry(kinds[ch.n(len(kinds))]), Hint: slot(), SetXattrs: ch.n(2) == 0, SkipOwner: ch.n(2) == 0,
				Xattrs: []protocol.Xattr{{Name: "user.fuzz", Value: []byte("v")}, {Name: "trusted.fuzz", Value: []byte("v")}}}
			m = &protocol.Meta{Items: []protocol.MetaItem{it}}
		case 5:
			m = &protocol.Lookup{Slots: []tree.Slot{slot(), slot()}, IDs: []fileid.ID{id()}}
		case 6:
			m = &protocol.Limbo{Remove: []fileid.ID{id()}}
		case 7:
			m = &protocol.Hash{IDs: []fileid.ID{id(), id()}}
		case 8:
			m = &protocol.Sig{ID: id(), Hint: slot()}
		case 9:
			m = &protocol.StimeSet{Stime: int64(ch.n(1000))}
		case 10:
			fuzzList(t, c, conn)
			continue
		}
		if _, err := callT(t, conn, m, 20*time.Second); err != nil {
			if dead, werr := c.exited(200 * time.Millisecond); dead && killedFromOutside(werr) {
				t.Skipf("agent SIGKILLed from outside at message %d (%v): not its doing", i, werr)
			} else if dead {
				t.Fatalf("agent died after message %d (%T %+v): %v\n%s", i, m, m, werr, headStr(c.stderr.String(), 1500))
			}
			if strings.Contains(err.Error(), "deadline") {
				t.Fatalf("agent stopped answering at message %d (%T %+v)", i, m, m)
			}
		}
	}
	stopSwaps()
	if _, err := callT(t, conn, &protocol.Ping{}, 10*time.Second); err != nil {
		_, werr := c.exited(time.Second)
		if killedFromOutside(werr) {
			t.Skipf("agent SIGKILLed from outside (%v): not its doing", werr)
		}
		t.Fatalf("agent does not answer after the run: %v (agent: %v) (%s)", err, werr, headStr(c.stderr.String(), 800))
	}
	if diffSnap(t, "canary outside the root", before, snapshot(cn)) {
		t.Errorf("the agent touched the canary outside its root (%d swaps meanwhile)", swaps.Load())
	}
	var xb [16]byte
	if _, err := unix.Getxattr(filepath.Join(cn, "secret"), "user.fuzz", xb[:]); err == nil {
		t.Errorf("xattr set on the canary through a symlink")
	}
}

// fuzzList runs a listing to its end.
func fuzzList(t *testing.T, c *child, conn *protocol.Conn) {
	t.Helper()
	done := make(chan error, 1)
	conn.Send(&protocol.List{}, func(m protocol.Message, err error) bool {
		if _, ok := m.(*protocol.ListChunk); ok && err == nil {
			return false
		}
		if _, ok := m.(*protocol.ListEnd); !ok && err == nil {
			err = fmt.Errorf("list answered %T", m)
		}
		done <- err
		return true
	})
	conn.Flush()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("list hung (%s)", headStr(c.stderr.String(), 800))
	}
}
