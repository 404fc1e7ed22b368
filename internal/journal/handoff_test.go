package journal

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/georep/georep/internal/changelog"
)

func TestGapNeeded(t *testing.T) {
	const start = 1000
	for _, c := range []struct {
		name string
		have bool
		st   state
		want bool
	}{
		{"first start", false, state{}, true},
		{"clean stop before the queue began", true, state{End: start - 1, Clean: true}, true},
		{"clean hand-off", true, state{End: start, Clean: true}, false},
		{"clean, vouched past the queue start", true, state{End: start + 5, Clean: true}, false},
		{"unclean (killed), even if vouched", true, state{End: start + 5, Clean: false}, true},
	} {
		if got := gapNeeded(c.have, c.st, start); got != c.want {
			t.Errorf("%s: gapNeeded = %v, want %v", c.name, got, c.want)
		}
	}
}

// A hand-off keeps every event: while files are created without pause, the
// journal gives its group to a successor (with a second root added, as the
// journal process does when a session arrives); the events queued in the
// kernel during the switch are read by the successor, the first root's
// changelogs go on without a gap, and only the new root starts with one.
func TestHandoffKeepsEvents(t *testing.T) {
	r := newRoot(t)
	cfg := fastConfig(r)
	j1 := openJournal(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	handoff := make(chan struct{})
	type result struct {
		in  *Inherited
		err error
	}
	res := make(chan result, 1)
	go func() { in, err := j1.RunUntil(ctx, handoff); res <- result{in, err} }()

	var n atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // churn through both journals and the switch
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			must(t, os.WriteFile(filepath.Join(r.Path, fmt.Sprintf("f%05d", i)), []byte("x"), 0o644))
			n.Add(1)
			if i%50 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	close(handoff)
	got := <-res
	if got.err != nil || got.in == nil {
		t.Fatalf("hand-off: %+v %v", got.in, got.err)
	}
	st, ok, err := readState(r.Dir)
	if err != nil || !ok || !st.Clean || st.End < got.in.Since {
		t.Fatalf("state after hand-off %+v ok=%v err=%v, since %d", st, ok, err, got.in.Since)
	}
	time.Sleep(100 * time.Millisecond) // events pile up in the kernel queue

	r2 := newRoot(t)
	cfg2 := fastConfig(r, r2)
	cfg2.Inherit = got.in
	h2 := startJournal(t, cfg2, nil)
	info := h2.j.Roots()
	if len(info) != 2 || info[0].Since.UnixNano() != st.Since || st.Since == 0 {
		t.Errorf("roots after hand-off %+v, want the first covered since %d", info, st.Since)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	must(t, h2.stop())

	files := readChangelogs(t, r.Dir)
	recs := allRecords(files)
	gaps := count(recs, func(r changelog.Record) bool { return r.Type == changelog.Gap })
	if gaps != 1 || recs[0].Type != changelog.Gap || recs[0].Reason != ReasonFirstStart {
		t.Errorf("%d gaps in the first root (want only the first start's)", gaps)
	}
	for i := 1; i < len(files); i++ {
		if files[i].hdr.Seq != files[i-1].hdr.Seq+1 {
			t.Errorf("sequence jumps from %d to %d", files[i-1].hdr.Seq, files[i].hdr.Seq)
		}
	}
	seen := map[string]bool{}
	for _, rec := range recs {
		if rec.Type == changelog.Entry && rec.Op == changelog.OpCreate {
			seen[rec.Name] = true
		}
	}
	total := int(n.Load())
	for i := 0; i < total; i++ {
		if name := fmt.Sprintf("f%05d", i); !seen[name] {
			t.Errorf("CREATE %s lost in the hand-off (%d files)", name, total)
			break
		}
	}
	recs2 := allRecords(readChangelogs(t, r2.Dir))
	if len(recs2) == 0 || recs2[0].Type != changelog.Gap || recs2[0].Reason != ReasonFirstStart {
		t.Errorf("the new root does not start with a first-start gap")
	}
	t.Logf("%d files created across the hand-off, %d changelogs", total, len(files))
}

// A group from another filesystem, or a descriptor that is no fanotify
// group, is refused and left open for the caller.
func TestInheritRefused(t *testing.T) {
	r := newRoot(t)
	f, err := os.Open(r.Path)
	must(t, err)
	defer f.Close()
	cfg := fastConfig(r)
	cfg.Inherit = &Inherited{FD: int(f.Fd()), FS: "00"}
	requireRoot(t)
	if _, err := Open(cfg); err == nil {
		t.Fatal("a directory descriptor was taken for a fanotify group")
	}
	if _, err := f.Stat(); err != nil {
		t.Errorf("the refused descriptor was closed: %v", err)
	}
	j := openJournal(t, fastConfig(r))
	ctx, cancel := context.WithCancel(context.Background())
	h := make(chan struct{})
	close(h)
	in, err := j.RunUntil(ctx, h)
	cancel()
	if err != nil || in == nil {
		t.Fatalf("RunUntil: %v", err)
	}
	cfg.Inherit = &Inherited{FD: in.FD, Mask: in.Mask, FS: "0000000000000000", Since: in.Since}
	if _, err := Open(cfg); err == nil {
		t.Fatal("a group of another filesystem was taken")
	}
	cfg.Inherit.FS = in.FS
	j2, err := Open(cfg)
	if err != nil {
		t.Fatalf("the group was not left usable after a refusal: %v", err)
	}
	j2.Close()
}

// handoffChildEnv makes the test binary a successor journal process (see
// TestHandoffAcrossProcesses).
const handoffChildEnv = "GEOREP_TEST_HANDOFF_CHILD"

// TestHandoffChild is the successor process of TestHandoffAcrossProcesses;
// it does nothing in a normal run.
func TestHandoffChild(t *testing.T) {
	spec := os.Getenv(handoffChildEnv)
	if spec == "" {
		t.Skip("helper process of TestHandoffAcrossProcesses")
	}
	var c struct {
		In   Inherited
		Root Root
	}
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig(c.Root)
	cfg.Inherit = &c.In
	j, err := Open(cfg)
	if err != nil {
		t.Fatalf("successor Open: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := j.Run(ctx); err != nil {
		t.Fatalf("successor Run: %v", err)
	}
}

// TestHandoffAcrossProcesses: the group goes to another process (the
// descriptor inherited, as the journal process's re-exec does); what the
// kernel queued while neither read it is journaled by the successor, the
// sequence goes on, and there is no gap.
func TestHandoffAcrossProcesses(t *testing.T) {
	r := newRoot(t)
	j1 := openJournal(t, fastConfig(r))
	handoff := make(chan struct{})
	type result struct {
		in  *Inherited
		err error
	}
	res := make(chan result, 1)
	go func() { in, err := j1.RunUntil(context.Background(), handoff); res <- result{in, err} }()
	n := 0
	create := func(k int) {
		for range k {
			must(t, os.WriteFile(filepath.Join(r.Path, fmt.Sprintf("x%05d", n)), nil, 0o644))
			n++
		}
	}
	create(200)
	close(handoff)
	got := <-res
	if got.err != nil || got.in == nil {
		t.Fatalf("hand-off: %v", got.err)
	}
	create(300) // queued in the kernel: nobody reads now
	f := os.NewFile(uintptr(got.in.FD), "fanotify")
	in := *got.in
	in.FD = 3 // the first of ExtraFiles
	spec, _ := json.Marshal(struct {
		In   Inherited
		Root Root
	}{in, r})
	cmd := exec.Command(os.Args[0], "-test.run=^TestHandoffChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), handoffChildEnv+"="+string(spec))
	cmd.ExtraFiles = []*os.File{f}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	must(t, cmd.Start())
	f.Close() // the child has it now
	create(300)
	waitRecords(t, r.Dir, "the last create", func(recs []changelog.Record) bool { return entryNamed(recs, fmt.Sprintf("x%05d", n-1)) })
	must(t, cmd.Process.Signal(syscall.SIGTERM))
	if err := cmd.Wait(); err != nil {
		t.Fatalf("successor: %v\n%s", err, out.String())
	}
	files := readChangelogs(t, r.Dir)
	recs := allRecords(files)
	if g := count(recs, func(r changelog.Record) bool { return r.Type == changelog.Gap }); g != 1 {
		t.Errorf("%d gaps, want the first start's only", g)
	}
	for i := 1; i < len(files); i++ {
		if files[i].hdr.Seq != files[i-1].hdr.Seq+1 {
			t.Errorf("sequence jumps from %d to %d", files[i-1].hdr.Seq, files[i].hdr.Seq)
		}
	}
	for i := range n {
		if !entryNamed(recs, fmt.Sprintf("x%05d", i)) {
			t.Fatalf("x%05d lost across the processes", i)
		}
	}
	st, _, _ := readState(r.Dir)
	if !st.Clean || st.Since == 0 || st.Since > got.in.Since {
		t.Errorf("state after the successor's stop: %+v (hand-off at %d)", st, got.in.Since)
	}
}
