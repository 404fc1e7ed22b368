package secondary

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/protocol"
	"github.com/georep/georep/internal/tree"
)

func idN(n int) fileid.ID {
	return fileid.Make(fileid.FSID{1, 2, 3, 4, 5, 6, 7, 8}, 1, []byte{7, 7, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), 1, 2})
}

func openFDs(pid int) int {
	ents, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	return len(ents)
}

// maxAgentRSS is what the agent may reach whatever the primary sends
// (README, "Limits").
const maxAgentRSS = 256 << 10 // KiB, as VmHWM counts

// envInt reads a test size from the environment.
func envInt(name string, def int) int {
	if s := os.Getenv(name); s != "" {
		if v, err := strconv.Atoi(s); err == nil {
			return v
		}
	}
	return def
}

// Streams that are opened and never finished, more than the agent takes:
// each one must not pin its first frame's data, the streams past
// MaxOpenStreams are refused, and the agent stays within maxAgentRSS and
// answers. By default 70 streams of 4 MiB; ATTACK_MEM=1 sends 40 of
// 30 MiB as the review did (ATTACK_STREAMS, ATTACK_STREAM_MIB override).
func TestAttackOpenStreams(t *testing.T) {
	n, mib := 70, 4
	if os.Getenv("ATTACK_MEM") != "" {
		n, mib = 40, 30
	}
	n, mib = envInt("ATTACK_STREAMS", n), envInt("ATTACK_STREAM_MIB", mib)
	root := filepath.Join(t.TempDir(), "root")
	c, conn, rootID := start(t, root, -1)
	pid := c.cmd.Process.Pid
	base := c.vmHWM()
	data := make([]byte, mib<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>9) // not all zero
	}
	var mu sync.Mutex
	var refused []string
	for i := 0; i < n; i++ {
		e := &tree.Entry{ID: idN(i), Kind: tree.KindRegular, Size: 1 << 30, Meta: tree.Meta{Mode: 0o644}}
		m := &protocol.PutFile{Stream: uint64(1000 + i), Mode: protocol.FileNew, Entry: e,
			Slots: []tree.Slot{{Parent: rootID, Name: fmt.Sprintf("f%d", i)}}, Data: data}
		err := conn.Send(m, func(_ protocol.Message, err error) bool {
			mu.Lock()
			defer mu.Unlock()
			if err != nil && !errors.Is(err, protocol.ErrClosed) {
				refused = append(refused, err.Error())
			}
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		conn.Flush()
	}
	r, err := callT(t, conn, &protocol.Ping{}, 120*time.Second)
	if err != nil {
		t.Fatalf("ping after %d unfinished streams: %v (%s)", n, err, headStr(c.stderr.String(), 600))
	}
	time.Sleep(500 * time.Millisecond)
	hwm := c.vmHWM()
	t.Logf("%d unfinished streams of %d MiB: agent VmHWM %d MiB (start %d MiB), fds %d, ping %T", n, mib, hwm>>10, base>>10, openFDs(pid), r)
	if hwm > maxAgentRSS {
		t.Errorf("agent reached %d MiB with %d unfinished streams (limit %d MiB)", hwm>>10, n, maxAgentRSS>>10)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := max(0, n-MaxOpenStreams); len(refused) != want {
		t.Errorf("%d streams refused, want %d (limit %d)", len(refused), want, MaxOpenStreams)
	}
	for _, msg := range refused {
		if !strings.Contains(msg, "streams are open already") {
			t.Errorf("refusal does not say why: %q", msg)
		}
	}
}

// PutFiles frames sent faster than the agent applies them (every file
// fails: its slot name is bad, so each batch yields a big error reply, and
// each frame also carries 28 MiB of data): the agent stops reading instead
// of queueing them, stays within maxAgentRSS, and still answers afterwards.
// By default 12 frames of 2000 files; ATTACK_MEM=1 sends 60 of 20000 as the
// review did (ATTACK_FRAMES, ATTACK_FILES override; ATTACK_NOREAD=1 never
// reads the replies).
func TestAttackPutFilesFlood(t *testing.T) {
	n, files := 12, 2000
	if os.Getenv("ATTACK_MEM") != "" {
		n, files = 60, 20000
	}
	n, files = envInt("ATTACK_FRAMES", n), envInt("ATTACK_FILES", files)
	root := filepath.Join(t.TempDir(), "root")
	drain := os.Getenv("ATTACK_NOREAD") == ""
	c := rawStart(t, root, -1, false)
	rootID := rootIDFor()
	base := c.vmHWM()
	var b protocol.FilesBuilder
	bad := make([]byte, 8)
	for i := 0; i < files; i++ {
		e := &tree.Entry{Slot: tree.Slot{Parent: rootID, Name: "../" + strconv.Itoa(i) + string(make([]byte, 60))}, ID: idN(i), Kind: tree.KindRegular, Size: 8, Meta: tree.Meta{Mode: 0o644}}
		b.Add(protocol.FileNew, e, []tree.Slot{e.Slot}, nil, len(bad), func(p []byte) (int, error) { return copy(p, bad), nil })
	}
	big := make([]byte, 28<<20)
	e := &tree.Entry{Slot: tree.Slot{Parent: rootID, Name: "../big"}, ID: idN(99999), Kind: tree.KindRegular, Size: int64(len(big)), Meta: tree.Meta{Mode: 0o644}}
	b.Add(protocol.FileNew, e, []tree.Slot{e.Slot}, nil, len(big), func(p []byte) (int, error) { return copy(p, big), nil })
	body := protocol.Encode(b.Message())
	t.Logf("frame body %d MiB", len(body)>>20)
	// Replies are counted (or, with ATTACK_NOREAD, never read).
	replies := make(chan protocol.Frame, n+1)
	if drain {
		go func() {
			for {
				f, err := protocol.ReadFrame(c.stdout)
				if err != nil {
					close(replies)
					return
				}
				replies <- f
			}
		}()
	}
	for i := 0; i < n; i++ {
		if err := protocol.WriteFrame(c.stdin, protocol.TPutFiles, uint64(100+i), body); err != nil {
			t.Fatalf("write %d: %v; agent stderr: %s", i, err, headStr(c.stderr.String(), 900))
		}
	}
	if !drain {
		time.Sleep(2 * time.Second)
		t.Logf("%d PutFiles frames, replies unread: agent VmHWM %d MiB (start %d MiB)", n, c.vmHWM()>>10, base>>10)
		if hwm := c.vmHWM(); hwm > maxAgentRSS {
			t.Errorf("agent reached %d MiB (limit %d MiB)", hwm>>10, maxAgentRSS>>10)
		}
		return
	}
	// StimeGet is a barrier: it is answered after every batch before it.
	if err := protocol.WriteFrame(c.stdin, protocol.TStimeGet, 1<<40, nil); err != nil {
		t.Fatal(err)
	}
	got := 0
	deadline := time.After(5 * time.Minute)
	for pong := false; !pong; {
		select {
		case f, ok := <-replies:
			if !ok {
				t.Fatalf("agent hung up after %d replies: %s", got, headStr(c.stderr.String(), 900))
			}
			switch f.Type {
			case protocol.TPutFilesOK:
				m, err := protocol.Decode(f)
				if err != nil {
					t.Fatal(err)
				}
				if errs := m.(*protocol.PutFilesOK).Errors; len(errs) != files+1 {
					t.Errorf("batch %d: %d files refused, want all %d", f.ReqID, len(errs), files+1)
				}
				got++
			case protocol.TStimeOK:
				pong = true
			default:
				t.Errorf("unexpected reply type %d", f.Type)
			}
		case <-deadline:
			t.Fatalf("no StimeOK after %d of %d batches", got, n)
		}
	}
	hwm := c.vmHWM()
	t.Logf("%d PutFiles frames of %d MiB: agent VmHWM %d MiB (start %d MiB), %d batches answered", n, len(body)>>20, hwm>>10, base>>10, got)
	if got != n {
		t.Errorf("%d of %d batches answered before the barrier", got, n)
	}
	if hwm > maxAgentRSS {
		t.Errorf("agent reached %d MiB (limit %d MiB)", hwm>>10, maxAgentRSS>>10)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 1 {
		t.Errorf("refused files left entries in the root: %v", ents)
	}
}

// rawStart spawns the agent and handshakes with raw frames; drain keeps
// reading (and discarding) its replies.
func rawStart(t *testing.T, root string, uid int, drain bool) *child {
	t.Helper()
	c := spawn(t, root, uid)
	if err := protocol.WriteFrame(c.stdin, protocol.THello, 1, protocol.Encode(helloMsg())); err != nil {
		t.Fatal(err)
	}
	f, err := protocol.ReadFrame(c.stdout)
	if err != nil || f.Type != protocol.THelloOK {
		t.Fatalf("hello: %v type %d (%s)", err, f.Type, c.stderr.String())
	}
	if drain {
		go io.Copy(io.Discard, c.stdout)
	}
	return c
}
