package journal

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/georep/georep/internal/changelog"
	"github.com/georep/georep/internal/testutil"
	"golang.org/x/sys/unix"
)

// Benchmarks run on a fresh journaled ext4 on a loop device (see
// shared/bench/README.md: the root filesystem here times erratically), with
// the changelogs on another filesystem. Run them with -benchtime=1x.

const sentinel = "zz-sentinel"

// makeFilesEnv makes the test binary a file creator (see spawnMakeFiles).
const makeFilesEnv = "GEOREP_JOURNAL_MAKEFILES"

// TestMakeFilesHelper is not a test: run by spawnMakeFiles in a child
// process, it creates the files and prints how long that took.
func TestMakeFilesHelper(t *testing.T) {
	spec := os.Getenv(makeFilesEnv)
	if spec == "" {
		t.Skip("helper process for the benchmarks")
	}
	dir := os.Getenv(makeFilesEnv + "_DIR")
	n, err := strconv.Atoi(spec)
	must(t, err)
	t0 := time.Now()
	makeFiles(t, dir, n)
	fmt.Printf("elapsed %d\n", time.Since(t0).Nanoseconds())
}

// spawnMakeFiles creates the files from another process, as the users of a
// filesystem would (not sharing the journal's Go runtime, scheduler and
// garbage collector), and returns the time the creation took.
func spawnMakeFiles(tb testing.TB, dir string, n int) time.Duration {
	cmd := exec.Command(os.Args[0], "-test.run=^TestMakeFilesHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), makeFilesEnv+"="+strconv.Itoa(n), makeFilesEnv+"_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("file creator: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "elapsed "); ok {
			ns, err := strconv.ParseInt(v, 10, 64)
			must(tb, err)
			return time.Duration(ns)
		}
	}
	tb.Fatalf("file creator said: %s", out)
	return 0
}

// makeFiles creates n small files (16 bytes each) in dirs of 1000 under dir.
func makeFiles(tb testing.TB, dir string, n int) {
	data := []byte("0123456789abcdef")
	for d := 0; d*1000 < n; d++ {
		sub := filepath.Join(dir, "d"+strconv.Itoa(d))
		must(tb, os.Mkdir(sub, 0o755))
		for i := d * 1000; i < min(n, (d+1)*1000); i++ {
			fd, err := unix.Open(filepath.Join(sub, "f"+strconv.Itoa(i)), unix.O_CREAT|unix.O_WRONLY|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
			must(tb, err)
			_, err = unix.Write(fd, data)
			must(tb, err)
			must(tb, unix.Close(fd))
		}
	}
}

// benchJournal starts a journal on root with a sentinel watcher: the
// returned channel is closed when the sentinel's CREATE was processed.
func benchJournal(b *testing.B, root string, queueSize int) (*harness, <-chan struct{}) {
	seen := make(chan struct{})
	var once atomic.Bool
	cfg := Config{Roots: []Root{{Path: root, Dir: filepath.Join(b.TempDir(), "changelogs")}}, QueueSize: queueSize}
	h := startJournal(b, cfg, func(h *harness) {
		h.j.onRecord = func(_ int, r *changelog.Record) {
			if r.Type == changelog.Entry && r.Name == sentinel && once.CompareAndSwap(false, true) {
				close(seen)
			}
		}
	})
	return h, seen
}

// BenchmarkJournalThroughput measures the events per second the journal
// sustains: "live" while 100k files are created and written in a root (the
// journal keeps up with the creator, so this is the creator's rate plus how
// far behind the journal ends), and "backlog" with 100k files' events queued
// (unlimited kernel queue, reader paused) and then drained: the journal's
// own capacity, including writing the changelogs.
func BenchmarkJournalThroughput(b *testing.B) {
	requireRoot(b)
	const n = 100_000
	fs := testutil.LoopExt4(b, 4096)
	run := 0
	for _, mode := range []string{"live", "backlog"} {
		b.Run(mode, func(b *testing.B) {
			for range b.N {
				run++
				root := filepath.Join(fs, fmt.Sprintf("run%d", run))
				must(b, os.Mkdir(root, 0o755))
				unix.Sync()
				queue := 0
				if mode == "backlog" {
					queue = -1
				}
				h, seen := benchJournal(b, root, queue)
				time.Sleep(100 * time.Millisecond) // start gap written
				if mode == "backlog" {
					h.pause()
					must(b, os.WriteFile(filepath.Join(root, "wake"), nil, 0o644))
					time.Sleep(100 * time.Millisecond)
				}
				before := h.j.Stats()
				b.ResetTimer()
				t0 := time.Now()
				spawnMakeFiles(b, root, n)
				must(b, os.WriteFile(filepath.Join(root, sentinel), nil, 0o644))
				created := time.Now()
				if mode == "backlog" {
					h.unpause()
				}
				select {
				case <-seen:
				case <-time.After(5 * time.Minute):
					b.Fatal("sentinel never processed")
				}
				done := time.Now()
				b.StopTimer()
				must(b, h.stop())
				after := h.j.Stats()
				events := after.Events - before.Events
				var el time.Duration
				if mode == "live" {
					el = done.Sub(t0)
				} else {
					el = done.Sub(created)
				}
				rate := float64(events) / el.Seconds()
				b.ReportMetric(rate, "events/s")
				b.ReportMetric(float64(after.Records-before.Records)/el.Seconds(), "records/s")
				fmt.Printf("journal throughput %-7s: %d files, %d events, %d records in %d changelogs; %.0f events/s over %v; "+
					"journal done %v after the last file; resolves %d, max backlog %d reads, overflows %d\n",
					mode, n, events, after.Records-before.Records, after.Changelogs-before.Changelogs, rate, el.Round(time.Millisecond),
					done.Sub(created).Round(time.Millisecond), after.Resolves, after.MaxBacklog, after.Overflows)
				must(b, os.RemoveAll(root))
			}
		})
	}
}

// BenchmarkCreateOverhead times creating and writing 50k small files with
// and without the journal running on the filesystem (the files in its
// root, so every event is processed and recorded), interleaved, and reports
// the slowdown.
func BenchmarkCreateOverhead(b *testing.B) {
	requireRoot(b)
	const n = 50_000
	const rounds = 5
	fs := testutil.LoopExt4(b, 4096)
	run := 0
	var journalCPU []time.Duration
	timeCreate := func(withJournal, bare bool) (time.Duration, time.Duration) {
		run++
		root := filepath.Join(fs, fmt.Sprintf("run%d", run))
		must(b, os.Mkdir(root, 0o755))
		unix.Sync()
		var h *harness
		var seen <-chan struct{}
		if withJournal {
			h, seen = benchJournal(b, root, 0)
			time.Sleep(100 * time.Millisecond)
		}
		if bare {
			// The same group and mark, events read (every millisecond,
			// like the journal) and thrown away: the kernel's share.
			fd, err := unix.FanotifyInit(initFlags&^unix.FAN_NONBLOCK, unix.O_RDONLY)
			must(b, err)
			_, _, err = fanotifyMarkFS(fd, root)
			must(b, err)
			var stop atomic.Bool
			done := make(chan struct{})
			go func() {
				defer close(done)
				buf := make([]byte, readBufSize)
				for !stop.Load() {
					if n, err := unix.Read(fd, buf); err != nil || n <= 0 {
						return
					}
					time.Sleep(readCoalesce)
				}
			}()
			defer func() {
				stop.Store(true)
				os.WriteFile(filepath.Join(root, "wake"), nil, 0o644)
				<-done
				unix.Close(fd)
			}()
		}
		var ru0, ru1 unix.Rusage
		unix.Getrusage(unix.RUSAGE_SELF, &ru0)
		el := spawnMakeFiles(b, root, n)
		var catchUp time.Duration
		if withJournal {
			must(b, os.WriteFile(filepath.Join(root, sentinel), nil, 0o644))
			t1 := time.Now()
			<-seen
			catchUp = time.Since(t1)
			unix.Getrusage(unix.RUSAGE_SELF, &ru1)
			cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
			journalCPU = append(journalCPU, cpu)
			must(b, h.stop())
			if st := h.j.Stats(); st.Overflows > 0 {
				b.Errorf("overflow while creating")
			}
		}
		must(b, os.RemoveAll(root))
		return el, catchUp
	}
	for range b.N {
		var without, with, bare []time.Duration
		var catchUps []time.Duration
		timeCreate(false, false) // warm up
		for range rounds {
			w, _ := timeCreate(false, false)
			without = append(without, w)
			j, c := timeCreate(true, false)
			with = append(with, j)
			catchUps = append(catchUps, c)
			k, _ := timeCreate(false, true)
			bare = append(bare, k)
		}
		slices.Sort(without)
		slices.Sort(with)
		slices.Sort(bare)
		slices.Sort(catchUps)
		mw, mj, mk := without[rounds/2], with[rounds/2], bare[rounds/2]
		slow := 100 * (mj.Seconds() - mw.Seconds()) / mw.Seconds()
		kslow := 100 * (mk.Seconds() - mw.Seconds()) / mw.Seconds()
		b.ReportMetric(slow, "slowdown-%")
		b.ReportMetric(kslow, "bare-fanotify-slowdown-%")
		fmt.Printf("  same with a bare fanotify group (same flags and mark, events read and discarded): %v, slowdown %+.1f%% (all %v)\n",
			mk.Round(time.Millisecond), kslow, bare)
		b.ReportMetric(float64(n)/mw.Seconds(), "files/s-without")
		b.ReportMetric(float64(n)/mj.Seconds(), "files/s-with")
		slices.Sort(journalCPU)
		fmt.Printf("create+write %d small files (median of %d, creator in another process): without journal %v (%.0f files/s), with journal %v (%.0f files/s): slowdown %+.1f%%; "+
			"journal caught up %v after the last file, used %v CPU (all: without %v, with %v)\n",
			n, rounds, mw.Round(time.Millisecond), float64(n)/mw.Seconds(), mj.Round(time.Millisecond), float64(n)/mj.Seconds(), slow,
			catchUps[rounds/2].Round(time.Millisecond), journalCPU[len(journalCPU)/2].Round(time.Millisecond), without, with)
	}
}

// BenchmarkDirRenameChurn measures the cost of dropping the directory cache
// on every directory rename: renames of a directory interleaved with
// creates in 100 other directories, all in the root.
func BenchmarkDirRenameChurn(b *testing.B) {
	requireRoot(b)
	const n = 20_000
	fs := testutil.LoopExt4(b, 1024)
	root := filepath.Join(fs, "root")
	must(b, os.Mkdir(root, 0o755))
	for d := range 100 {
		must(b, os.Mkdir(filepath.Join(root, "d"+strconv.Itoa(d)), 0o755))
	}
	must(b, os.Mkdir(filepath.Join(root, "moving0"), 0o755))
	h, seen := benchJournal(b, root, -1)
	time.Sleep(100 * time.Millisecond)
	h.pause()
	must(b, os.WriteFile(filepath.Join(root, "wake"), nil, 0o644))
	time.Sleep(100 * time.Millisecond)
	before := h.j.Stats()
	for i := range n {
		if i%10 == 0 {
			must(b, os.Rename(filepath.Join(root, "moving"+strconv.Itoa(i)), filepath.Join(root, "moving"+strconv.Itoa(i+10))))
		}
		fd, err := unix.Open(filepath.Join(root, "d"+strconv.Itoa(i%100), "f"+strconv.Itoa(i)), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		must(b, err)
		unix.Close(fd)
	}
	must(b, os.WriteFile(filepath.Join(root, sentinel), nil, 0o644))
	b.ResetTimer()
	t0 := time.Now()
	h.unpause()
	<-seen
	el := time.Since(t0)
	b.StopTimer()
	must(b, h.stop())
	after := h.j.Stats()
	events := after.Events - before.Events
	b.ReportMetric(float64(events)/el.Seconds(), "events/s")
	fmt.Printf("dir rename churn: %d events (%d dir renames) in %v: %.0f events/s, %d resolves, %d cache clears\n",
		events, n/10, el.Round(time.Millisecond), float64(events)/el.Seconds(), after.Resolves-before.Resolves, after.CacheClears-before.CacheClears)
}
