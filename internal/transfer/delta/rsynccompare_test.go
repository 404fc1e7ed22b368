package delta

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestRsyncCompare compares this package with rsync on the target workload:
// files of 256 MiB (GEOREP_RSYNC_SIZE_MIB) of which 1 MiB changed as 4 runs
// of 256 KiB at random offsets, GEOREP_RSYNC_FILES of them (default 1),
// best of GEOREP_RSYNC_ROUNDS (default 3), GEOREP_RSYNC_PARALLEL files at a
// time on our side (default 1), GEOREP_RSYNC_PHASES=1 for per-file phase
// times. It runs only with GEOREP_RSYNC_COMPARE=1 and an rsync binary:
//
//	GEOREP_RSYNC_COMPARE=1 GEOREP_RSYNC_FILES=8 go test -run TestRsyncCompare -v -timeout 30m ./internal/transfer/delta/
//
// rsync runs locally with --no-whole-file (a local copy is whole-file by
// default) and --ignore-times, and its "Total bytes sent" + "Total bytes
// received" is compared with our signature + delta bytes. Our side runs each
// file's signature, then its delta and patch concurrently (the two ends of
// a transfer), writing a temporary file renamed over the old one like rsync
// does. Both work from the page cache.
func TestRsyncCompare(t *testing.T) {
	if os.Getenv("GEOREP_RSYNC_COMPARE") != "1" {
		t.Skip("set GEOREP_RSYNC_COMPARE=1 to compare with rsync")
	}
	rsync, err := exec.LookPath("rsync")
	if err != nil {
		t.Skip("rsync not installed")
	}
	files := envInt("GEOREP_RSYNC_FILES", 1)
	size := envInt("GEOREP_RSYNC_SIZE_MIB", 256) << 20
	rounds := envInt("GEOREP_RSYNC_ROUNDS", 3)
	// Files transferred at once by our side (rsync pipelines the next file's
	// signature with the current file's transfer; 1 is strictly sequential).
	parallel := envInt("GEOREP_RSYNC_PARALLEL", 1)

	dir := t.TempDir()
	orig := filepath.Join(dir, "orig")
	src := filepath.Join(dir, "src")
	rdst := filepath.Join(dir, "rsync")
	odst := filepath.Join(dir, "ours")
	for _, d := range []string{orig, src, rdst, odst} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	wantSums := make([][32]byte, files)
	names := make([]string, files)
	for i := range names {
		names[i] = fmt.Sprintf("f%02d", i)
		o := randBytes(uint64(5000+i), size)
		if err := os.WriteFile(filepath.Join(orig, names[i]), o, 0o644); err != nil {
			t.Fatal(err)
		}
		changeRuns(o, uint64(6000+i), 4, 256<<10)
		wantSums[i] = sha256.Sum256(o)
		if err := os.WriteFile(filepath.Join(src, names[i]), o, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// reset puts the old versions into dst.
	reset := func(dst string) {
		for _, name := range names {
			b, err := os.ReadFile(filepath.Join(orig, name))
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dst, name)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			old := time.Now().Add(-time.Hour)
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
		// Write the reset files back now rather than during the timed run.
		syscall.Sync()
	}
	check := func(dst string) {
		for i, name := range names {
			b, err := os.ReadFile(filepath.Join(dst, name))
			if err != nil {
				t.Fatal(err)
			}
			if sha256.Sum256(b) != wantSums[i] {
				t.Fatalf("%s/%s is not the new file", dst, name)
			}
		}
	}

	var rsyncTimes, ourTimes []time.Duration
	var sent, recv, literal, sigBytes, deltaBytes int64
	for r := 0; r < rounds; r++ {
		reset(rdst)
		start := time.Now()
		out, err := exec.Command(rsync, "-r", "--no-whole-file", "--ignore-times", "--stats", src+"/", rdst+"/").CombinedOutput()
		rsyncTimes = append(rsyncTimes, time.Since(start))
		if err != nil {
			t.Fatalf("rsync: %v\n%s", err, out)
		}
		sent = statInt(t, out, "Total bytes sent")
		recv = statInt(t, out, "Total bytes received")
		literal = statInt(t, out, "Literal data")
		check(rdst)

		reset(odst)
		start = time.Now()
		sigBytes, deltaBytes = 0, 0
		var (
			mu   sync.Mutex
			wg   sync.WaitGroup
			errs []error
		)
		sem := make(chan struct{}, parallel)
		for _, name := range names {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				s, d, err := transferFile(t, filepath.Join(src, name), filepath.Join(odst, name))
				mu.Lock()
				defer mu.Unlock()
				sigBytes += s
				deltaBytes += d
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", name, err))
				}
			}()
		}
		wg.Wait()
		ourTimes = append(ourTimes, time.Since(start))
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		check(odst)
	}

	ours := sigBytes + deltaBytes
	best := func(d []time.Duration) time.Duration { return slices.Min(d).Round(time.Millisecond) }
	t.Logf("%d file(s) of %d MiB, 1 MiB changed in each (4 x 256 KiB), best of %d rounds, %d file(s) at a time on our side", files, size>>20, rounds, parallel)
	t.Logf("rsync: %10d bytes on the wire (sent %d + received %d; literal %d), %v %v", sent+recv, sent, recv, literal, best(rsyncTimes), rsyncTimes)
	t.Logf("delta: %10d bytes on the wire (delta %d + signature %d), %v %v", ours, deltaBytes, sigBytes, best(ourTimes), ourTimes)
	t.Logf("ratio: bytes %.3f, time %.2f", float64(ours)/float64(sent+recv), best(ourTimes).Seconds()/best(rsyncTimes).Seconds())
	if float64(ours) > 1.1*float64(sent+recv) {
		t.Errorf("wire bytes %d exceed 1.1 x rsync's %d", ours, sent+recv)
	}
}

// transferFile brings dstPath up to date with srcPath through the delta
// protocol and returns the signature and delta sizes.
func transferFile(t *testing.T, srcPath, dstPath string) (sigBytes, deltaBytes int64, err error) {
	oldF, err := os.Open(dstPath)
	if err != nil {
		return 0, 0, err
	}
	defer oldF.Close()
	st, err := oldF.Stat()
	if err != nil {
		return 0, 0, err
	}
	// Secondary: signature.
	t0 := time.Now()
	sig, err := ComputeSignature(oldF, st.Size())
	if err != nil {
		return 0, 0, err
	}
	t1 := time.Now()
	sb, err := sig.MarshalBinary()
	if err != nil {
		return 0, 0, err
	}
	// Primary: delta, streamed to the secondary.
	var psig Signature
	if err := psig.UnmarshalBinary(sb); err != nil {
		return 0, 0, err
	}
	pr, pw := io.Pipe()
	cw := &countWriter{}
	errc := make(chan error, 1)
	go func() {
		newF, err := os.Open(srcPath)
		if err == nil {
			defer newF.Close()
			enc := NewEncoder(io.MultiWriter(pw, cw))
			var sum [32]byte
			sum, err = ComputeDelta(&psig, newF, enc.WriteOp)
			if err == nil {
				err = enc.Close(sum)
			}
		}
		pw.CloseWithError(err)
		errc <- err
	}()
	// Secondary: patch into a temporary file, then rename.
	tmp, err := os.CreateTemp(filepath.Dir(dstPath), ".delta-*")
	if err != nil {
		pr.CloseWithError(err)
		<-errc
		return 0, 0, err
	}
	perr := PatchFrom(oldF, sig, NewDecoder(pr), tmp)
	pr.CloseWithError(io.ErrClosedPipe)
	if err := <-errc; err != nil && perr == nil {
		perr = err
	}
	if err := tmp.Close(); err != nil && perr == nil {
		perr = err
	}
	if perr != nil {
		os.Remove(tmp.Name())
		return 0, 0, perr
	}
	t2 := time.Now()
	oldF.Close()
	if err := os.Rename(tmp.Name(), dstPath); err != nil {
		return 0, 0, err
	}
	if testing.Verbose() && os.Getenv("GEOREP_RSYNC_PHASES") == "1" {
		t.Logf("%s: signature %v, delta+patch %v, close+rename %v", filepath.Base(dstPath), t1.Sub(t0).Round(time.Millisecond), t2.Sub(t1).Round(time.Millisecond), time.Since(t2).Round(time.Millisecond))
	}
	return int64(len(sb)), cw.n, nil
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func statInt(t *testing.T, out []byte, label string) int64 {
	t.Helper()
	m := regexp.MustCompile(regexp.QuoteMeta(label) + `: ([0-9,]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no %q in rsync output:\n%s", label, out)
	}
	v, err := strconv.ParseInt(strings.ReplaceAll(string(m[1]), ",", ""), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
