package service

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/georep/georep/internal/changelog"
	"github.com/georep/georep/internal/journal"
)

func TestPlanGC(t *testing.T) {
	files := func(sizes ...int64) []clFile {
		var out []clFile
		for i, s := range sizes {
			out = append(out, clFile{Seq: uint64(10 + i), Size: s})
		}
		return out
	}
	for _, c := range []struct {
		name      string
		files     []clFile
		positions []uint64
		max       int64
		del       []uint64
		dropped   int
	}{
		{"no consumers keeps all", files(1, 1, 1), nil, 100, nil, 0},
		{"least position wins", files(1, 1, 1, 1), []uint64{12, 11}, 100, []uint64{10, 11}, 0},
		{"all applied", files(1, 1), []uint64{20, 30}, 100, []uint64{10, 11}, 0},
		{"a consumer without a position pins", files(1, 1), []uint64{0, 30}, 100, nil, 0},
		{"under the limit", files(40, 40), []uint64{0}, 100, nil, 0},
		{"over the limit: oldest until 90%", files(40, 40, 40), []uint64{0}, 100, []uint64{10}, 1},
		{"far over the limit", files(50, 50, 50, 50), []uint64{0}, 100, []uint64{10, 11, 12}, 3},
		{"applied ones do not count", files(60, 60, 30), []uint64{10}, 100, []uint64{10}, 0},
	} {
		del, dropped := planGC(c.files, c.positions, c.max)
		if !slices.Equal(del, c.del) || dropped != c.dropped {
			t.Errorf("%s: planGC = %v, %d; want %v, %d", c.name, del, dropped, c.del, c.dropped)
		}
	}
}

func TestSelect(t *testing.T) {
	fl := func(seqs ...uint64) []changelog.FileInfo {
		var out []changelog.FileInfo
		for _, s := range seqs {
			out = append(out, changelog.FileInfo{Seq: s})
		}
		return out
	}
	seqs := func(fs []changelog.FileInfo) []uint64 {
		var out []uint64
		for _, f := range fs {
			out = append(out, f.Seq)
		}
		return out
	}
	const id = "r1"
	for _, c := range []struct {
		name    string
		pos     Position
		ok      bool
		last    uint64
		files   []changelog.FileInfo
		take    []uint64
		gap     string
		through uint64
	}{
		{"no position", Position{}, false, 7, fl(5, 6, 7), []uint64{5, 6, 7}, GapNoPosition, 7},
		{"no position, nothing written", Position{}, false, 0, nil, nil, GapNoPosition, 0},
		{"position of another dir", Position{Root: "old", Seq: 3}, true, 7, fl(5), []uint64{5}, GapNoPosition, 7},
		{"caught up", Position{Root: id, Seq: 7}, true, 7, fl(6, 7), nil, "", 7},
		{"replay after the position", Position{Root: id, Seq: 5}, true, 8, fl(4, 5, 6, 7, 8), []uint64{6, 7, 8}, "", 8},
		{"dropped after the position", Position{Root: id, Seq: 5}, true, 9, fl(8, 9), []uint64{8, 9}, GapDropped, 9},
		{"all dropped", Position{Root: id, Seq: 5}, true, 9, nil, nil, GapDropped, 9},
		{"nothing new", Position{Root: id, Seq: 5}, true, 5, nil, nil, "", 5},
	} {
		sel := Select(c.pos, c.ok, id, journal.State{LastSeq: c.last}, c.files)
		if !slices.Equal(seqs(sel.Take), c.take) || sel.Gap != c.gap || sel.Through != c.through {
			t.Errorf("%s: Select = take %v gap %q through %d; want %v %q %d", c.name, seqs(sel.Take), sel.Gap, sel.Through, c.take, c.gap, c.through)
		}
	}
}

func TestRegistry(t *testing.T) {
	var r registry
	if !r.add("/a", "s1") || r.add("/a", "s2") || r.add("/a", "s1") || !r.add("/b", "s1") {
		t.Fatal("add: wrong newness")
	}
	if got := r.Roots["/a"]; !slices.Equal(got, []string{"s1", "s2"}) {
		t.Errorf("consumers of /a: %v", got)
	}
	if gone := r.remove("/a", "s1"); len(gone) != 0 {
		t.Errorf("/a gone with a consumer left: %v", gone)
	}
	if gone := r.remove("", "s1"); !slices.Equal(gone, []string{"/b"}) {
		t.Errorf("remove everywhere: %v", gone)
	}
	if gone := r.remove("/a", "s2"); !slices.Equal(gone, []string{"/a"}) || len(r.Roots) != 0 {
		t.Errorf("last consumer: %v %v", gone, r.Roots)
	}
	for _, bad := range []string{"", ".", "..", "a/b", ".hidden"} {
		if validSession(bad) == nil {
			t.Errorf("consumer name %q accepted", bad)
		}
	}
}

func TestPositionRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, ok, err := ReadPosition(dir, "s"); ok || err != nil {
		t.Fatalf("missing position: ok=%v err=%v", ok, err)
	}
	if err := WritePosition(dir, "s", Position{Root: "x", Seq: 42}); err != nil {
		t.Fatal(err)
	}
	p, ok, err := ReadPosition(dir, "s")
	if !ok || err != nil || p != (Position{Root: "x", Seq: 42}) {
		t.Fatalf("read back %+v ok=%v err=%v", p, ok, err)
	}
	if WritePosition(dir, "../x", Position{}) == nil {
		t.Error("a consumer name with a slash was written")
	}
}

// The server journals registered roots for several consumers, adds a root
// at run time without a gap for the others, and keeps changelogs until
// every consumer of a root applied them.
func TestServerRegisterAndGC(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (fanotify)")
	}
	jdir := filepath.Join(t.TempDir(), "journal")
	src := t.TempDir()
	src2 := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Dir: jdir, GCInterval: 100 * time.Millisecond, RolloverInterval: 100 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	c := Client{Dir: jdir}
	var rs *RootStatus
	var err error
	for i := 0; i < 100; i++ {
		if rs, err = c.Register(ctx, "a", src, 0); !errors.Is(err, ErrNotRunning) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if errors.Is(err, journal.ErrUnsupported) {
		t.Skipf("no fanotify here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if rs, err := c.Register(ctx, "b", src, 700*time.Millisecond); err != nil || rs.Rollover != 700*time.Millisecond {
		t.Fatalf("register b with a rollover interval: %+v %v", rs, err)
	}
	if rs, err := c.Register(ctx, "a", src, 300*time.Millisecond); err != nil || rs.Rollover != 300*time.Millisecond {
		t.Fatalf("the shortest consumer's rollover interval: %+v %v", rs, err)
	}
	if rs, err := c.Register(ctx, "a", src, 0); err != nil || rs.Rollover != 700*time.Millisecond {
		t.Fatalf("a drops its rollover interval: %+v %v", rs, err)
	}
	if err := c.RollOver(ctx, "a", src, 0); err != nil {
		t.Errorf("a consumer's rollover request: %v", err)
	}
	if err := c.RollOver(ctx, "nobody", src, 0); !errors.Is(err, ErrRefused) {
		t.Errorf("a rollover request of no consumer: %v, want ErrRefused", err)
	}
	if err := c.RollOver(ctx, "a", src, -time.Second); !errors.Is(err, ErrRefused) {
		t.Errorf("a rollover request within -1s: %v, want ErrRefused", err)
	}
	if _, err := c.Register(ctx, "bad/name", src, 0); !errors.Is(err, ErrRefused) {
		t.Errorf("bad consumer name: %v", err)
	}
	os.WriteFile(filepath.Join(src, "one"), nil, 0o644)
	waitFor(t, "changelog of one", func() bool { return named(t, rs.Dir, "one") })
	// A second root on the same filesystem: the first loses nothing.
	os.WriteFile(filepath.Join(src, "two"), nil, 0o644)
	if _, err := c.Register(ctx, "c", src2, 0); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "three"), nil, 0o644)
	waitFor(t, "two and three", func() bool { return named(t, rs.Dir, "two") && named(t, rs.Dir, "three") })
	gaps := 0
	files, _ := changelog.List(rs.Dir)
	for _, f := range files {
		_, recs, _, err := changelog.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Type == changelog.Gap {
				gaps++
			}
		}
	}
	if gaps != 1 {
		t.Errorf("%d gaps in the first root after adding a second (want the first start's only)", gaps)
	}
	// GC: a applied everything, b nothing: all kept; then b too: gone.
	last := files[len(files)-1].Seq
	WritePosition(rs.Dir, "a", Position{Root: rs.ID, Seq: last})
	time.Sleep(300 * time.Millisecond)
	if now, _ := changelog.List(rs.Dir); len(now) < len(files) {
		t.Errorf("changelogs deleted before consumer b applied them")
	}
	WritePosition(rs.Dir, "b", Position{Root: rs.ID, Seq: last})
	waitFor(t, "gc", func() bool {
		now, _ := changelog.List(rs.Dir)
		return len(now) == 0 || now[0].Seq > last
	})
	st, err := c.Status(ctx)
	if err != nil || len(st.Roots) != 2 || len(st.Groups) != 1 || st.Roots[0].CoveredSince.IsZero() {
		t.Errorf("status %+v err %v", st, err)
	}
	if err := c.Unregister(ctx, "c", src2); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(Dir(jdir, src2)); !os.IsNotExist(err) {
		t.Errorf("changelog dir of an unregistered root kept: %v", err)
	}
}

func named(t *testing.T, dir, name string) bool {
	files, _ := changelog.List(dir)
	for _, f := range files {
		_, recs, _, err := changelog.ReadFile(f.Path)
		if err != nil {
			continue
		}
		for _, r := range recs {
			if r.Type == changelog.Entry && r.Name == name {
				return true
			}
		}
	}
	return false
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{`{"op":"register","session":"a","path":"/x"}`, `{"op":"status"}`, `{"op":"nope"}`, `{"op":"register","session":"../x"}`, `[`, ``} {
		f.Add([]byte(s + "\n"))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeRequest(b)
		if err != nil {
			return
		}
		switch req.Op {
		case "register", "unregister":
			if validSession(req.Session) != nil {
				t.Fatalf("accepted a bad consumer name %q", req.Session)
			}
		case "status", "reexec":
		default:
			t.Fatalf("accepted op %q", req.Op)
		}
	})
}

func FuzzParseInherited(f *testing.F) {
	for _, s := range []string{`[{"fd":3,"mask":1,"fs":"00ff","since":5}]`, `[{"fd":3,"fs":"a"},{"fd":4,"fs":"a"}]`, `[{"fd":-1,"fs":"a"}]`, `null`, `{`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseInherited(s)
		if err != nil {
			return
		}
		for fs, in := range m {
			if in.FD < 0 || in.FS != fs || fs == "" {
				t.Fatalf("accepted %+v under %q", in, fs)
			}
		}
	})
}

func FuzzReadPosition(f *testing.F) {
	f.Add([]byte(`{"root":"x","seq":3}`))
	f.Add([]byte(`{"seq":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, consumersDir), 0o700)
		os.WriteFile(filepath.Join(dir, consumersDir, "s"), b, 0o600)
		p, ok, err := ReadPosition(dir, "s")
		if err == nil && ok {
			// What was read writes back and reads the same.
			if err := WritePosition(dir, "s", p); err != nil {
				t.Fatal(err)
			}
			if q, _, err := ReadPosition(dir, "s"); err != nil || q != p {
				t.Fatalf("round trip %+v -> %+v %v", p, q, err)
			}
		}
	})
}

func TestRegistryRollover(t *testing.T) {
	var r registry
	r.add("/p", "a")
	r.add("/p", "b")
	if d := r.rolloverOf("/p"); d != 0 {
		t.Errorf("no consumer asked: %s, want 0", d)
	}
	r.setRollover("/p", "a", 2*time.Second)
	r.setRollover("/p", "b", time.Second)
	r.setRollover("/q", "c", time.Millisecond) // not a consumer of /p
	if d := r.rolloverOf("/p"); d != time.Second {
		t.Errorf("shortest: %s, want 1s", d)
	}
	r.remove("/p", "b")
	if d := r.rolloverOf("/p"); d != 2*time.Second {
		t.Errorf("after b left: %s, want 2s", d)
	}
	r.setRollover("/p", "a", 0)
	if d := r.rolloverOf("/p"); d != 0 || len(r.Rollover["/p"]) != 0 {
		t.Errorf("after a dropped it: %s %v, want 0", d, r.Rollover)
	}
}
