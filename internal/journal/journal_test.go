package journal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/georep/georep/internal/changelog"
	"github.com/georep/georep/internal/fileid"
	"golang.org/x/sys/unix"
)

// The IDs in records are exactly fileid.OfPath's, for a file, a directory, a
// symlink and the root itself (ATTRIB on the root).
func TestIDsMatchOfPath(t *testing.T) {
	r := newRoot(t)
	startJournal(t, fastConfig(r), nil)
	rootID := mustID(t, r.Path)

	file := filepath.Join(r.Path, "file")
	dir := filepath.Join(r.Path, "dir")
	link := filepath.Join(r.Path, "link")
	must(t, os.WriteFile(file, []byte("data"), 0o644))
	must(t, os.Mkdir(dir, 0o755))
	must(t, os.Symlink("file", link))
	must(t, os.Chmod(r.Path, 0o751))
	fileID, dirID, linkID := mustID(t, file), mustID(t, dir), mustID(t, link)

	waitRecords(t, r.Dir, "all four", func(recs []changelog.Record) bool {
		return hasEntry(recs, changelog.OpCreate, fileID, rootID, "file") &&
			hasEntry(recs, changelog.OpMkdir, dirID, rootID, "dir") &&
			hasEntry(recs, changelog.OpCreate, linkID, rootID, "link") &&
			slices.Contains(recs, changelog.Record{Type: changelog.Meta, ID: rootID})
	})
	// The parts decode to the root's filesystem id.
	fsid, _, _, err := fileID.Parts()
	must(t, err)
	f, err := os.Open(r.Path)
	must(t, err)
	defer f.Close()
	want, err := fileid.FSIDOf(int(f.Fd()))
	must(t, err)
	if fsid != want {
		t.Errorf("fsid %x, want %x", fsid, want)
	}
}

// Every kind of entry operation, with awkward names.
func TestEntryOps(t *testing.T) {
	r := newRoot(t)
	startJournal(t, fastConfig(r), nil)
	rootID := mustID(t, r.Path)
	p := func(name string) string { return filepath.Join(r.Path, name) }

	const (
		spaced  = "a file with spaces"
		newline = "line\nbreak"
		badUTF8 = "bad-\xff\xfe-utf8"
	)
	// create + write
	must(t, os.WriteFile(p(spaced), []byte("hello"), 0o644))
	aID := mustID(t, p(spaced))
	must(t, os.WriteFile(p(newline), nil, 0o644))
	nlID := mustID(t, p(newline))
	// chmod
	must(t, os.Chmod(p(spaced), 0o600))
	// rename
	must(t, os.Rename(p(spaced), p(badUTF8)))
	// hardlink
	must(t, os.Link(p(badUTF8), p("hardlink")))
	// symlink
	must(t, os.Symlink("/nowhere\nat all", p("sym link")))
	symID := mustID(t, p("sym link"))
	// mkdir, a file in it, chmod of the dir, rmdir
	must(t, os.Mkdir(p("dir"), 0o755))
	dirID := mustID(t, p("dir"))
	must(t, os.WriteFile(filepath.Join(p("dir"), "inner"), []byte("x"), 0o644))
	innerID := mustID(t, filepath.Join(p("dir"), "inner"))
	must(t, os.Chmod(p("dir"), 0o700))
	must(t, os.Remove(filepath.Join(p("dir"), "inner")))
	must(t, os.Remove(p("dir")))
	// unlink
	must(t, os.Remove(p("hardlink")))
	// append to a file (D on an existing file)
	f, err := os.OpenFile(p(newline), os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	for range 100 {
		f.Write([]byte("more\n"))
	}
	must(t, f.Close())

	recs := waitRecords(t, r.Dir, "unlink hardlink", func(recs []changelog.Record) bool {
		return hasEntry(recs, changelog.OpUnlink, aID, rootID, "hardlink") &&
			slices.ContainsFunc(recs, func(r changelog.Record) bool { return r.Type == changelog.Data && r.ID == nlID })
	})
	checks := []struct {
		what string
		ok   bool
	}{
		{"CREATE spaced", hasEntry(recs, changelog.OpCreate, aID, rootID, spaced)},
		{"CREATE newline", hasEntry(recs, changelog.OpCreate, nlID, rootID, newline)},
		{"D spaced with hint", slices.Contains(recs, changelog.Record{Type: changelog.Data, ID: aID, Parent: rootID, Name: spaced})},
		{"M spaced with hint", slices.Contains(recs, changelog.Record{Type: changelog.Meta, ID: aID, Parent: rootID, Name: spaced})},
		{"RENAME spaced -> bad utf8", slices.Contains(recs, changelog.Record{Type: changelog.Entry, Op: changelog.OpRename, ID: aID,
			Parent: rootID, Name: spaced, NewParent: rootID, NewName: badUTF8})},
		{"CREATE hardlink (same ID)", hasEntry(recs, changelog.OpCreate, aID, rootID, "hardlink")},
		{"CREATE symlink", hasEntry(recs, changelog.OpCreate, symID, rootID, "sym link")},
		{"MKDIR dir", hasEntry(recs, changelog.OpMkdir, dirID, rootID, "dir")},
		{"CREATE inner", hasEntry(recs, changelog.OpCreate, innerID, dirID, "inner")},
		{"M dir without hint", slices.Contains(recs, changelog.Record{Type: changelog.Meta, ID: dirID})},
		{"UNLINK inner", hasEntry(recs, changelog.OpUnlink, innerID, dirID, "inner")},
		{"RMDIR dir", hasEntry(recs, changelog.OpRmdir, dirID, rootID, "dir")},
		{"UNLINK hardlink", hasEntry(recs, changelog.OpUnlink, aID, rootID, "hardlink")},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("missing: %s", c.what)
		}
	}
	// One D per ID per changelog despite 100 writes.
	for _, f := range readChangelogs(t, r.Dir) {
		seen := map[fileid.ID]bool{}
		for _, rec := range f.recs {
			if rec.Type == changelog.Data {
				if seen[rec.ID] {
					t.Errorf("%s: two D records for %s", f.path, rec.ID.Short())
				}
				seen[rec.ID] = true
			}
		}
	}
	// Entry records of one slot keep their order.
	idx := func(op changelog.Op, id fileid.ID, name string) int {
		return slices.IndexFunc(recs, func(r changelog.Record) bool {
			return r.Type == changelog.Entry && r.Op == op && r.ID == id && r.Name == name
		})
	}
	if a, b := idx(changelog.OpMkdir, dirID, "dir"), idx(changelog.OpRmdir, dirID, "dir"); a < 0 || b < a {
		t.Errorf("MKDIR at %d, RMDIR at %d", a, b)
	}
	if t.Failed() {
		for _, r := range recs {
			t.Logf("  %s", dumpRecord(r))
		}
	}
}

// Events outside the root (a sibling temp dir) produce no records.
func TestOutsideDropped(t *testing.T) {
	r := newRoot(t)
	sibling := t.TempDir()
	h := startJournal(t, fastConfig(r), nil)
	for i := range 50 {
		must(t, os.WriteFile(filepath.Join(sibling, fmt.Sprintf("outside-%d", i)), []byte("x"), 0o644))
	}
	must(t, os.Mkdir(filepath.Join(sibling, "outside-dir"), 0o755))
	must(t, os.Chmod(sibling, 0o700))
	// A root-name lookalike next to the root: /tmp/x/001 vs /tmp/x/0010.
	lookalike := r.Path + "0"
	must(t, os.Mkdir(lookalike, 0o755))
	defer os.RemoveAll(lookalike)
	must(t, os.WriteFile(filepath.Join(lookalike, "lookalike"), nil, 0o644))
	must(t, os.WriteFile(filepath.Join(r.Path, "marker"), nil, 0o644))
	recs := waitRecords(t, r.Dir, "marker", func(recs []changelog.Record) bool { return entryNamed(recs, "marker") })
	for _, rec := range recs {
		if strings.HasPrefix(rec.Name, "outside") || rec.Name == "lookalike" {
			t.Errorf("record from outside the root: %s", dumpRecord(rec))
		}
		if rec.Type == changelog.Entry && rec.Name != "marker" {
			t.Errorf("unexpected entry: %s", dumpRecord(rec))
		}
	}
	if n := count(recs, func(r changelog.Record) bool { return r.Type == changelog.Meta }); n != 0 {
		t.Errorf("%d M records; want none", n)
	}
	if st := h.j.Stats(); st.Dropped < 50 {
		t.Errorf("Stats.Dropped = %d, want >= 50", st.Dropped)
	}
}

// A directory renamed from the root to outside and back: RMDIR when it
// leaves, nothing while it is outside, MKDIR when it returns, then its
// events again.
func TestDirRenamedOutAndBack(t *testing.T) {
	r := newRoot(t)
	outside := t.TempDir()
	startJournal(t, fastConfig(r), nil)
	rootID := mustID(t, r.Path)
	d := filepath.Join(r.Path, "d")
	must(t, os.Mkdir(d, 0o755))
	dID := mustID(t, d)
	must(t, os.WriteFile(filepath.Join(d, "f1"), nil, 0o644))
	f1 := mustID(t, filepath.Join(d, "f1"))
	waitRecords(t, r.Dir, "f1", func(recs []changelog.Record) bool { return hasEntry(recs, changelog.OpCreate, f1, dID, "f1") })

	must(t, os.Rename(d, filepath.Join(outside, "d")))
	must(t, os.WriteFile(filepath.Join(outside, "d", "g"), nil, 0o644))
	must(t, os.WriteFile(filepath.Join(r.Path, "marker1"), nil, 0o644))
	// marker1 comes after g in the queue: once it is recorded, g's event
	// was handled while d was outside.
	waitRecords(t, r.Dir, "RMDIR d and marker1", func(recs []changelog.Record) bool {
		return hasEntry(recs, changelog.OpRmdir, dID, rootID, "d") && entryNamed(recs, "marker1")
	})

	must(t, os.Rename(filepath.Join(outside, "d"), filepath.Join(r.Path, "d2")))
	must(t, os.WriteFile(filepath.Join(r.Path, "d2", "h"), nil, 0o644))
	hID := mustID(t, filepath.Join(r.Path, "d2", "h"))
	recs := waitRecords(t, r.Dir, "MKDIR d2 and h", func(recs []changelog.Record) bool {
		return hasEntry(recs, changelog.OpMkdir, dID, rootID, "d2") && hasEntry(recs, changelog.OpCreate, hID, dID, "h")
	})
	if entryNamed(recs, "g") {
		t.Errorf("g was created while d was outside the root but was recorded")
	}
	// Within the root, a directory rename is a RENAME.
	must(t, os.Rename(filepath.Join(r.Path, "d2"), filepath.Join(r.Path, "d3")))
	must(t, os.WriteFile(filepath.Join(r.Path, "d3", "i"), nil, 0o644))
	waitRecords(t, r.Dir, "RENAME d2 -> d3", func(recs []changelog.Record) bool {
		return slices.Contains(recs, changelog.Record{Type: changelog.Entry, Op: changelog.OpRename, ID: dID, Parent: rootID, Name: "d2", NewParent: rootID, NewName: "d3"}) &&
			entryNamed(recs, "i")
	})
}

// Renames of files across the root boundary.
func TestFileRenameAcrossRoot(t *testing.T) {
	r := newRoot(t)
	outside := t.TempDir()
	startJournal(t, fastConfig(r), nil)
	rootID := mustID(t, r.Path)
	must(t, os.WriteFile(filepath.Join(outside, "in"), nil, 0o644))
	inID := mustID(t, filepath.Join(outside, "in"))
	must(t, os.Rename(filepath.Join(outside, "in"), filepath.Join(r.Path, "came-in")))
	must(t, os.WriteFile(filepath.Join(r.Path, "out"), nil, 0o644))
	outID := mustID(t, filepath.Join(r.Path, "out"))
	must(t, os.Rename(filepath.Join(r.Path, "out"), filepath.Join(outside, "went-out")))
	recs := waitRecords(t, r.Dir, "both", func(recs []changelog.Record) bool {
		return hasEntry(recs, changelog.OpCreate, inID, rootID, "came-in") && hasEntry(recs, changelog.OpUnlink, outID, rootID, "out")
	})
	if entryNamed(recs, "in") || entryNamed(recs, "went-out") {
		t.Errorf("outside names recorded")
	}
}

// Nested roots: an event in the inner root goes to both; one only in the
// outer root goes to the outer one.
func TestNestedRoots(t *testing.T) {
	outer := newRoot(t)
	inner := Root{Path: filepath.Join(outer.Path, "sub"), Dir: filepath.Join(t.TempDir(), "inner-changelogs")}
	must(t, os.Mkdir(inner.Path, 0o755))
	startJournal(t, fastConfig(outer, inner), nil)
	innerID := mustID(t, inner.Path)
	outerID := mustID(t, outer.Path)
	must(t, os.WriteFile(filepath.Join(inner.Path, "x"), nil, 0o644))
	xID := mustID(t, filepath.Join(inner.Path, "x"))
	must(t, os.WriteFile(filepath.Join(outer.Path, "y"), nil, 0o644))
	yID := mustID(t, filepath.Join(outer.Path, "y"))
	must(t, os.Chmod(inner.Path, 0o700))
	// A move from the outer root into the inner one.
	must(t, os.Rename(filepath.Join(outer.Path, "y"), filepath.Join(inner.Path, "y")))

	outRecs := waitRecords(t, outer.Dir, "outer", func(recs []changelog.Record) bool {
		return hasEntry(recs, changelog.OpCreate, xID, innerID, "x") && hasEntry(recs, changelog.OpCreate, yID, outerID, "y") &&
			slices.Contains(recs, changelog.Record{Type: changelog.Entry, Op: changelog.OpRename, ID: yID, Parent: outerID, Name: "y", NewParent: innerID, NewName: "y"})
	})
	inRecs := waitRecords(t, inner.Dir, "inner", func(recs []changelog.Record) bool {
		return hasEntry(recs, changelog.OpCreate, xID, innerID, "x") && hasEntry(recs, changelog.OpCreate, yID, innerID, "y") &&
			slices.Contains(recs, changelog.Record{Type: changelog.Meta, ID: innerID})
	})
	if !slices.Contains(outRecs, changelog.Record{Type: changelog.Meta, ID: innerID}) {
		t.Errorf("outer root lacks M of the inner root dir")
	}
	if hasEntry(inRecs, changelog.OpCreate, yID, outerID, "y") {
		t.Errorf("inner root got the outer root's CREATE y")
	}
	for _, rec := range inRecs {
		if rec.Type == changelog.Entry && rec.Op == changelog.OpRename {
			t.Errorf("inner root got a RENAME from outside it: %s", dumpRecord(rec))
		}
	}
}

// Excluded paths (and a changelog dir inside the root) are never journaled,
// and writing changelogs inside the root does not feed back.
func TestExclude(t *testing.T) {
	rootPath := t.TempDir()
	state := filepath.Join(rootPath, ".georep")
	r := Root{Path: rootPath, Dir: filepath.Join(state, "changelogs")}
	cfg := fastConfig(r)
	cfg.Exclude = []string{state, filepath.Join(rootPath, "later")} // "later" does not exist yet
	h := startJournal(t, cfg, nil)
	must(t, os.WriteFile(filepath.Join(state, "stime"), nil, 0o644))
	must(t, os.Mkdir(filepath.Join(rootPath, "later"), 0o755))
	must(t, os.WriteFile(filepath.Join(rootPath, "later", "inside-later"), nil, 0o644))
	must(t, os.WriteFile(filepath.Join(rootPath, "kept"), nil, 0o644))
	recs := waitRecords(t, r.Dir, "kept", func(recs []changelog.Record) bool { return entryNamed(recs, "kept") })
	for _, rec := range recs {
		if rec.Type == changelog.Entry && rec.Name != "kept" {
			t.Errorf("excluded entry recorded: %s", dumpRecord(rec))
		}
	}
	// No feedback: once idle, no more changelogs appear.
	time.Sleep(300 * time.Millisecond)
	n := h.j.Stats().Changelogs
	time.Sleep(400 * time.Millisecond)
	if m := h.j.Stats().Changelogs; m != n {
		t.Errorf("changelogs keep coming while idle: %d -> %d", n, m)
	}
}

// The first changelog of a first start holds a gap from 0 to the mark.
func TestGapOnStart(t *testing.T) {
	r := newRoot(t)
	before := time.Now().UnixNano()
	h := startJournal(t, fastConfig(r), nil)
	after := time.Now().UnixNano()
	select {
	case <-h.j.Ready():
	default:
		t.Fatal("Ready not closed after Open")
	}
	recs := waitRecords(t, r.Dir, "gap", func(recs []changelog.Record) bool { return len(recs) > 0 })
	files := readChangelogs(t, r.Dir)
	if files[0].hdr.Seq != 1 {
		t.Errorf("first seq %d, want 1", files[0].hdr.Seq)
	}
	g := recs[0]
	if g.Type != changelog.Gap || g.Reason != ReasonFirstStart || g.From != 0 || g.To < before || g.To > after {
		t.Errorf("first record %s, want G 0..[%d,%d] %q", dumpRecord(g), before, after, ReasonFirstStart)
	}
}

// A restart continues the sequence numbers (even after the worker deleted
// the changelogs) and starts with a gap from the previous vouched end.
func TestRestart(t *testing.T) {
	r := newRoot(t)
	h := startJournal(t, fastConfig(r), nil)
	must(t, os.WriteFile(filepath.Join(r.Path, "one"), nil, 0o644))
	waitRecords(t, r.Dir, "one", func(recs []changelog.Record) bool { return entryNamed(recs, "one") })
	stopAt := time.Now().UnixNano()
	must(t, h.stop())
	files := readChangelogs(t, r.Dir)
	lastSeq := files[len(files)-1].hdr.Seq
	st, ok, err := readState(r.Dir)
	if err != nil || !ok || !st.Clean || st.LastSeq != lastSeq || st.End < files[len(files)-1].hdr.Start || st.End < stopAt {
		t.Fatalf("state after stop: %+v ok=%v err=%v (last seq %d, stop at %d)", st, ok, err, lastSeq, stopAt)
	}

	// Second run: sequence goes on, gap from the previous end.
	h2 := startJournal(t, fastConfig(r), nil)
	must(t, os.WriteFile(filepath.Join(r.Path, "two"), nil, 0o644))
	waitRecords(t, r.Dir, "two", func(recs []changelog.Record) bool { return entryNamed(recs, "two") })
	must(t, h2.stop())
	files2 := readChangelogs(t, r.Dir)
	next := files2[len(files)]
	if next.hdr.Seq != lastSeq+1 {
		t.Errorf("restart seq %d, want %d", next.hdr.Seq, lastSeq+1)
	}
	g := next.recs[0]
	if g.Type != changelog.Gap || g.Reason != ReasonRestart || g.From != st.End || g.To < g.From {
		t.Errorf("restart gap %s, want from %d %q", dumpRecord(g), st.End, ReasonRestart)
	}

	// The worker deletes everything; a third run still goes on.
	st2, _, _ := readState(r.Dir)
	for _, f := range files2 {
		must(t, os.Remove(f.path))
	}
	h3 := startJournal(t, fastConfig(r), nil)
	recs := waitRecords(t, r.Dir, "third gap", func(recs []changelog.Record) bool { return len(recs) > 0 })
	must(t, h3.stop())
	files3 := readChangelogs(t, r.Dir)
	if files3[0].hdr.Seq != st2.LastSeq+1 {
		t.Errorf("after deletion seq %d, want %d", files3[0].hdr.Seq, st2.LastSeq+1)
	}
	if recs[0].Type != changelog.Gap || recs[0].Reason != ReasonRestart {
		t.Errorf("third run starts with %s", dumpRecord(recs[0]))
	}
}

// An unclean stop (no Run, as after a crash) keeps the vouched end, and the
// next start reports a gap from it.
func TestUncleanRestart(t *testing.T) {
	r := newRoot(t)
	j := openJournal(t, fastConfig(r))
	j.Close() // never ran: as if killed before the first changelog
	st, ok, err := readState(r.Dir)
	if err != nil || !ok || st.Clean || st.End != 0 {
		t.Fatalf("state %+v ok=%v err=%v", st, ok, err)
	}
	startJournal(t, fastConfig(r), nil)
	recs := waitRecords(t, r.Dir, "gap", func(recs []changelog.Record) bool { return len(recs) > 0 })
	if recs[0].Type != changelog.Gap || recs[0].Reason != ReasonRestart || recs[0].From != 0 {
		t.Errorf("got %s", dumpRecord(recs[0]))
	}
}

// A queue overflow (reader paused while more than the kernel queue holds
// happens) is recorded as a gap, and the journal keeps going.
func TestOverflow(t *testing.T) {
	r := newRoot(t)
	h := startJournal(t, fastConfig(r), nil)
	waitRecords(t, r.Dir, "start gap", func(recs []changelog.Record) bool { return len(recs) > 0 })
	h.pause()
	// Make sure the reader is parked: one more event lets it do its
	// last read and reach the hook.
	must(t, os.WriteFile(filepath.Join(r.Path, "wake"), nil, 0o644))
	time.Sleep(50 * time.Millisecond)
	floodStart := time.Now().UnixNano()
	flood := filepath.Join(r.Path, "flood")
	must(t, os.Mkdir(flood, 0o755))
	for i := range 20000 {
		fd, err := unix.Open(filepath.Join(flood, strconv.Itoa(i)), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		must(t, err)
		unix.Close(fd)
	}
	floodEnd := time.Now().UnixNano()
	h.unpause()
	waitRecords(t, r.Dir, "overflow gap", func(recs []changelog.Record) bool {
		return slices.ContainsFunc(recs, func(r changelog.Record) bool {
			return r.Type == changelog.Gap && r.Reason == ReasonOverflow
		})
	})
	// The journal goes on after the overflow.
	must(t, os.WriteFile(filepath.Join(r.Path, "after"), nil, 0o644))
	recs := waitRecords(t, r.Dir, "after", func(recs []changelog.Record) bool { return entryNamed(recs, "after") })
	i := slices.IndexFunc(recs, func(r changelog.Record) bool { return r.Type == changelog.Gap && r.Reason == ReasonOverflow })
	g := recs[i]
	if g.From > floodStart || g.To < floodEnd {
		t.Errorf("overflow gap %d..%d does not cover the flood %d..%d", g.From, g.To, floodStart, floodEnd)
	}
	if st := h.j.Stats(); st.Overflows == 0 {
		t.Errorf("Stats.Overflows = 0")
	}
	t.Logf("overflow gap %s; %d records; stats %+v", dumpRecord(g), len(recs), h.j.Stats())
}

// QueueSize > 0 gives the group a small kernel queue (and restores the
// system default).
func TestQueueSize(t *testing.T) {
	requireRoot(t)
	old, err := os.ReadFile(maxQueuedEventsPath)
	if err != nil {
		t.Skipf("no %s: %v", maxQueuedEventsPath, err)
	}
	r := newRoot(t)
	cfg := fastConfig(r)
	cfg.QueueSize = 64
	h := startJournal(t, cfg, nil)
	if now, _ := os.ReadFile(maxQueuedEventsPath); string(now) != string(old) {
		t.Errorf("max_queued_events left at %q, was %q", now, old)
	}
	waitRecords(t, r.Dir, "start gap", func(recs []changelog.Record) bool { return len(recs) > 0 })
	h.pause()
	must(t, os.WriteFile(filepath.Join(r.Path, "wake"), nil, 0o644))
	time.Sleep(50 * time.Millisecond)
	for i := range 200 {
		must(t, os.WriteFile(filepath.Join(r.Path, "f"+strconv.Itoa(i)), nil, 0o644))
	}
	h.unpause()
	waitRecords(t, r.Dir, "overflow gap", func(recs []changelog.Record) bool {
		return slices.ContainsFunc(recs, func(r changelog.Record) bool { return r.Type == changelog.Gap && r.Reason == ReasonOverflow })
	})
}

// With the default windows, a single event is durable within ~100 ms, and
// an idle period writes nothing.
func TestQuietRolloverAndIdle(t *testing.T) {
	r := newRoot(t)
	cfg := Config{Roots: []Root{r}} // defaults: 1s rollover, 50ms quiet
	h := startJournal(t, cfg, nil)
	waitRecords(t, r.Dir, "start gap", func(recs []changelog.Record) bool { return len(recs) > 0 })
	select {
	case <-h.j.Notify():
	case <-time.After(5 * time.Second):
		t.Fatal("no Notify for the start changelog")
	}
	// The window closes (its End) within ~100 ms of the event; Notify
	// follows once the file is durable, which on a shared disk can take a
	// slow fsync longer.
	var closes []time.Duration
	for i := range 5 {
		name := "probe" + strconv.Itoa(i)
		t0 := time.Now()
		must(t, os.WriteFile(filepath.Join(r.Path, name), nil, 0o644))
		select {
		case <-h.j.Notify():
		case <-time.After(5 * time.Second):
			t.Fatal("no Notify after an event")
		}
		lag := time.Since(t0)
		files := readChangelogs(t, r.Dir)
		last := files[len(files)-1]
		if !entryNamed(last.recs, name) {
			t.Fatalf("%s not in the last changelog at Notify", name)
		}
		closed := time.Duration(last.end - t0.UnixNano())
		closes = append(closes, closed)
		t.Logf("event -> window closed %v, -> durable + Notify %v", closed, lag)
	}
	slices.Sort(closes)
	if med := closes[len(closes)/2]; med > 100*time.Millisecond {
		t.Errorf("quiet rollover: median %v from event to window end, want <= ~100ms", med)
	}
	// Idle: no file, no signal (events elsewhere on the filesystem do not count).
	n := len(readChangelogs(t, r.Dir))
	select {
	case <-h.j.Notify():
		t.Errorf("Notify while idle")
	case <-time.After(600 * time.Millisecond):
	}
	if m := len(readChangelogs(t, r.Dir)); m != n {
		t.Errorf("idle interval wrote %d changelogs", m-n)
	}
	if wm := h.j.Stats().Watermark; time.Since(wm) > 2*time.Second {
		t.Errorf("watermark %v lags while idle", wm)
	}
}

// A steady stream closes a changelog RolloverInterval after its first record.
func TestRolloverInterval(t *testing.T) {
	r := newRoot(t)
	cfg := Config{Roots: []Root{r}, RolloverInterval: 300 * time.Millisecond, QuietInterval: 10 * time.Second}
	startJournal(t, cfg, nil)
	deadline := time.Now().Add(1500 * time.Millisecond)
	for i := 0; time.Now().Before(deadline); i++ {
		must(t, os.WriteFile(filepath.Join(r.Path, "s"+strconv.Itoa(i)), nil, 0o644))
		time.Sleep(5 * time.Millisecond)
	}
	files := readChangelogs(t, r.Dir)
	if len(files) < 3 {
		t.Fatalf("%d changelogs in 1.5s of steady events with a 300ms rollover", len(files))
	}
	var long int
	for _, f := range files[:len(files)-1] {
		d := time.Duration(f.end - f.hdr.Start)
		t.Logf("%s spans %v, %d records", filepath.Base(f.path), d, len(f.recs))
		if d > 400*time.Millisecond {
			long++
		}
	}
	if long > len(files)/3 {
		t.Errorf("%d of %d changelogs span more than the 300ms rollover + 100ms", long, len(files)-1)
	}
}

// Stop writes the final partial changelog, however long the windows.
func TestStopWritesPartial(t *testing.T) {
	r := newRoot(t)
	cfg := Config{Roots: []Root{r}, RolloverInterval: time.Hour, QuietInterval: time.Hour}
	h := startJournal(t, cfg, nil)
	must(t, os.WriteFile(filepath.Join(r.Path, "last-words"), nil, 0o644))
	must(t, h.stop())
	recs := allRecords(readChangelogs(t, r.Dir))
	if !entryNamed(recs, "last-words") || recs[0].Type != changelog.Gap {
		t.Errorf("records after stop: %v", recs)
	}
}

// Roots on two filesystems are refused; a filesystem without file handles
// is unsupported.
func TestOpenErrors(t *testing.T) {
	requireRoot(t)
	r := newRoot(t)
	_, err := Open(Config{Roots: []Root{r, {Path: "/proc/sys", Dir: t.TempDir()}}, Logger: testLogger(t)})
	if err == nil || errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "filesystem") {
		t.Errorf("two filesystems: %v", err)
	}
	_, err = Open(Config{Roots: []Root{{Path: "/proc/sys", Dir: t.TempDir()}}, Logger: testLogger(t)})
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("procfs root: %v, want ErrUnsupported", err)
	}
	_, err = Open(Config{Roots: []Root{{Path: r.Path, Dir: r.Path}}, Logger: testLogger(t)})
	if err == nil {
		t.Errorf("changelog dir = root: no error")
	}
	// One journal per changelog dir.
	j := openJournal(t, fastConfig(r))
	defer j.Close()
	if _, err := Open(fastConfig(r)); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second journal on one dir: %v", err)
	}
}

// Run stops promptly on cancel, and twice is refused.
func TestRunOnce(t *testing.T) {
	r := newRoot(t)
	j := openJournal(t, fastConfig(r))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := j.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := j.Run(context.Background()); err == nil {
		t.Errorf("second Run: no error")
	}
}

// within compares whole path components.
func TestWithin(t *testing.T) {
	for _, c := range []struct {
		p, dir string
		want   bool
	}{
		{"/a/b", "/a/b", true},
		{"/a/b/c", "/a/b", true},
		{"/a/bc", "/a/b", false},
		{"/a", "/a/b", false},
		{"/anything", "/", true},
		{"/", "/", true},
		{"/a/b\n/c", "/a/b\n", true},
	} {
		if got := within(c.p, c.dir); got != c.want {
			t.Errorf("within(%q, %q) = %v", c.p, c.dir, got)
		}
	}
}

// parseEvent decodes the kernel's layout, including a FAN_RENAME event with
// two named directories and the object.
func TestParseEvent(t *testing.T) {
	fsid := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	fidRec := func(typ byte, ht int32, handle []byte, name string) []byte {
		b := []byte{typ, 0, 0, 0}
		b = append(b, fsid...)
		b = binary.NativeEndian.AppendUint32(b, uint32(len(handle)))
		b = binary.NativeEndian.AppendUint32(b, uint32(ht))
		b = append(b, handle...)
		if name != "" {
			b = append(b, name...)
			b = append(b, 0)
		}
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		binary.NativeEndian.PutUint16(b[2:], uint16(len(b)))
		return b
	}
	info := fidRec(unix.FAN_EVENT_INFO_TYPE_OLD_DFID_NAME, 1, []byte{9, 9, 9, 9, 9, 9, 9, 9}, "old\nname")
	info = append(info, fidRec(unix.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME, 1, []byte{8, 8, 8, 8, 8, 8, 8, 8}, "new")...)
	info = append(info, fidRec(unix.FAN_EVENT_INFO_TYPE_FID, 1, []byte{7, 7, 7, 7, 7, 7, 7, 7}, "")...)
	meta := make([]byte, eventMetadataLen)
	binary.NativeEndian.PutUint32(meta[0:], uint32(eventMetadataLen+len(info)))
	meta[4] = fanotifyMetadataVersion
	binary.NativeEndian.PutUint16(meta[6:], eventMetadataLen)
	binary.NativeEndian.PutUint64(meta[8:], unix.FAN_RENAME|unix.FAN_ONDIR)
	binary.NativeEndian.PutUint32(meta[16:], uint32(0xffffffff)) // FAN_NOFD
	buf := append(meta, info...)
	buf = append(buf, buf...) // two events back to back
	var ev event
	scratch := make([]byte, 0, 3*maxKeyLen)
	n, err := parseEvent(buf, &ev, scratch)
	if err != nil || n != len(buf)/2 {
		t.Fatalf("parseEvent: n=%d err=%v", n, err)
	}
	wantKey := func(h byte) string {
		return string(fileid.Make(fileid.FSID([8]byte(fsid)), 1, []byte{h, h, h, h, h, h, h, h}))
	}
	if ev.mask != unix.FAN_RENAME|unix.FAN_ONDIR || string(ev.name) != "old\nname" || string(ev.name2) != "new" ||
		hexKey(ev.dir) != wantKey(9) || hexKey(ev.dir2) != wantKey(8) || hexKey(ev.obj) != wantKey(7) {
		t.Errorf("parsed %+v", ev)
	}
	if _, err := parseEvent(buf[:30], &ev, scratch); err == nil {
		t.Errorf("truncated event parsed")
	}
}

// A failing changelog write is retried, and nothing is lost meanwhile.
func TestWriteRetry(t *testing.T) {
	r := newRoot(t)
	cfg := fastConfig(r)
	cfg.RolloverInterval = 100 * time.Millisecond
	h := startJournal(t, cfg, nil)
	waitRecords(t, r.Dir, "start gap", func(recs []changelog.Record) bool { return len(recs) > 0 })
	files := readChangelogs(t, r.Dir)
	must(t, os.RemoveAll(r.Dir)) // writes now fail with ENOENT
	must(t, os.WriteFile(filepath.Join(r.Path, "during-outage"), nil, 0o644))
	deadline := time.Now().Add(10 * time.Second)
	for h.j.Stats().WriteErrors == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no write error while the changelog dir is gone")
		}
		time.Sleep(10 * time.Millisecond)
	}
	must(t, os.Mkdir(r.Dir, 0o700))
	waitRecords(t, r.Dir, "record written after the outage", func(recs []changelog.Record) bool { return entryNamed(recs, "during-outage") })
	got := readChangelogs(t, r.Dir)
	if got[0].hdr.Seq != files[len(files)-1].hdr.Seq+1 {
		t.Errorf("after the outage seq %d, want %d", got[0].hdr.Seq, files[len(files)-1].hdr.Seq+1)
	}
}

// Without CAP_SYS_ADMIN (no filesystem mark) or CAP_DAC_READ_SEARCH (no
// open_by_handle_at), Open fails with ErrUnsupported and says why. The
// capability is dropped on one locked OS thread only, which dies with its
// goroutine.
func TestUnsupportedWithoutCapability(t *testing.T) {
	requireRoot(t)
	for _, c := range []struct {
		name string
		cap  uint
		want string
	}{
		{"CAP_SYS_ADMIN", unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN"},
		{"CAP_DAC_READ_SEARCH", unix.CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRoot(t)
			errc := make(chan error, 1)
			go func() {
				runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
				hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
				var data [2]unix.CapUserData
				if err := unix.Capget(&hdr, &data[0]); err != nil {
					errc <- err
					return
				}
				data[c.cap/32].Effective &^= 1 << (c.cap % 32)
				if err := unix.Capset(&hdr, &data[0]); err != nil {
					errc <- err
					return
				}
				j, err := Open(Config{Roots: []Root{r}, Logger: testLogger(t)})
				if err == nil {
					j.Close()
				}
				errc <- err
			}()
			err := <-errc
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Open without %s: %v", c.name, err)
			}
			t.Logf("%v", err)
		})
	}
}
