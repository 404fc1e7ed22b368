package journal

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/georep/georep/internal/changelog"
	"github.com/georep/georep/internal/fileid"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("journal: fanotify filesystem marks need root (CAP_SYS_ADMIN)")
	}
}

// testLogger logs to the test at Warn level and above.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }

// harness runs a Journal for a test.
type harness struct {
	t       testing.TB
	j       *Journal
	cancel  context.CancelFunc
	done    chan error
	paused  atomic.Bool
	resume  chan struct{}
	stopped bool
}

// openJournal opens a journal or skips the test when the machine cannot
// run one.
func openJournal(t testing.TB, cfg Config) *Journal {
	t.Helper()
	requireRoot(t)
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	j, err := Open(cfg)
	if errors.Is(err, ErrUnsupported) {
		t.Skipf("journal unsupported here: %v", err)
	}
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return j
}

// startJournal opens and runs a journal; the test's cleanup stops it.
// setup, when not nil, runs between Open and Run (to set hooks).
func startJournal(t testing.TB, cfg Config, setup func(*harness)) *harness {
	t.Helper()
	h := &harness{t: t, j: openJournal(t, cfg), done: make(chan error, 1), resume: make(chan struct{})}
	h.j.beforeRead = func() {
		if h.paused.Load() {
			<-h.resume
		}
	}
	if setup != nil {
		setup(h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.j.Run(ctx) }()
	t.Cleanup(func() {
		if !h.stopped {
			if err := h.stop(); err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	})
	return h
}

// pause stops the reader before its next read; unpause lets it go on.
func (h *harness) pause() { h.paused.Store(true) }
func (h *harness) unpause() {
	if h.paused.CompareAndSwap(true, false) {
		close(h.resume)
	}
}

// stop cancels Run and returns its result.
func (h *harness) stop() error {
	h.stopped = true
	h.unpause()
	h.cancel()
	select {
	case err := <-h.done:
		return err
	case <-time.After(20 * time.Second):
		h.t.Fatalf("Run did not return within 20s of cancel")
		return nil
	}
}

// clFile is one changelog file read back.
type clFile struct {
	path string
	hdr  changelog.Header
	recs []changelog.Record
	end  int64
}

// readChangelogs reads every changelog in dir, in sequence order.
func readChangelogs(t testing.TB, dir string) []clFile {
	t.Helper()
	infos, err := changelog.List(dir)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var out []clFile
	for _, fi := range infos {
		h, recs, tr, err := changelog.ReadFile(fi.Path)
		if err != nil {
			t.Fatalf("ReadFile %s: %v", fi.Path, err)
		}
		if h.Seq != fi.Seq || h.Source != changelog.SourceJournal || tr.End < h.Start {
			t.Fatalf("%s: bad header %+v / end %d", fi.Path, h, tr.End)
		}
		out = append(out, clFile{path: fi.Path, hdr: h, recs: recs, end: tr.End})
	}
	return out
}

func allRecords(files []clFile) []changelog.Record {
	var out []changelog.Record
	for _, f := range files {
		out = append(out, f.recs...)
	}
	return out
}

// waitRecords polls dir's changelogs until cond holds over all their
// records, and returns them.
func waitRecords(t testing.TB, dir string, what string, cond func([]changelog.Record) bool) []changelog.Record {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs := allRecords(readChangelogs(t, dir))
		if cond(recs) {
			return recs
		}
		if time.Now().After(deadline) {
			for _, r := range recs {
				t.Logf("  %s", dumpRecord(r))
			}
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func dumpRecord(r changelog.Record) string {
	switch r.Type {
	case changelog.Entry:
		if r.Op == changelog.OpRename {
			return "E " + string(r.ID) + " RENAME " + string(r.Parent) + " " + quote(r.Name) + " -> " + string(r.NewParent) + " " + quote(r.NewName)
		}
		return "E " + string(r.ID) + " " + r.Op.String() + " " + string(r.Parent) + " " + quote(r.Name)
	case changelog.Gap:
		return r.String()
	}
	return string(rune(r.Type)) + " " + string(r.ID) + " " + string(r.Parent) + " " + quote(r.Name)
}

func quote(s string) string { return "\"" + changelog.EscapeName(s) + "\"" }

// hasEntry reports whether recs has an E record with these fields.
func hasEntry(recs []changelog.Record, op changelog.Op, id, parent fileid.ID, name string) bool {
	return slices.ContainsFunc(recs, func(r changelog.Record) bool {
		return r.Type == changelog.Entry && r.Op == op && r.ID == id && r.Parent == parent && r.Name == name
	})
}

// entryNamed reports whether recs has an E record naming name (either side).
func entryNamed(recs []changelog.Record, name string) bool {
	return slices.ContainsFunc(recs, func(r changelog.Record) bool {
		return r.Type == changelog.Entry && (r.Name == name || r.NewName == name)
	})
}

func count(recs []changelog.Record, f func(changelog.Record) bool) int {
	n := 0
	for _, r := range recs {
		if f(r) {
			n++
		}
	}
	return n
}

func mustID(t testing.TB, path string) fileid.ID {
	t.Helper()
	id, err := fileid.OfPath(path)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// newRoot makes a root dir and a separate changelog dir.
func newRoot(t testing.TB) Root {
	return Root{Path: t.TempDir(), Dir: filepath.Join(t.TempDir(), "changelogs")}
}

// fastConfig is a config with short windows for tests.
func fastConfig(roots ...Root) Config {
	return Config{Roots: roots, RolloverInterval: 200 * time.Millisecond, QuietInterval: 20 * time.Millisecond}
}
