package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/georep/georep/internal/testutil"
	"github.com/georep/georep/internal/transport"
	"github.com/georep/georep/internal/worker"
)

// syncInProcess runs one crawl pass with cfg (as `georep sync` does) and
// returns the session's stats and how long it took.
func syncInProcess(t *testing.T, cfg worker.Config) (worker.Stats, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	sess, err := worker.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	job, err := sess.Crawl(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Execute(ctx, job); err != nil {
		t.Fatalf("execute: %v (failures %+v)", err, sess.Stats().FailureList)
	}
	if err := sess.CommitStime(ctx, time.Now().UnixNano()); err != nil {
		t.Fatal(err)
	}
	return sess.Stats(), time.Since(start)
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func randomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	r.Read(b)
	return b
}

// TestThroughputOneReplyPerBatch: small files travel in batches over ssh,
// one reply per batch rather than per file, with little framing per file;
// the replica verifies.
func TestThroughputOneReplyPerBatch(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.GeorepBin(t)
	sshd := testutil.StartSSHD(t, testutil.SSHDOptions{})
	dir := workdir(t)
	p, s, st := filepath.Join(dir, "P"), filepath.Join(dir, "S"), filepath.Join(dir, "state")
	const files = 3000
	testutil.Workload(t, "populate", p, "--files", "3000", "--dirs", "30")
	cmd := exec.Command(bin, "sync", "--json", p, sshd.UserHost()+":"+s, "--state-dir", st, "--ssh-command", sshd.SSHCommand(), "--remote-georep", bin)
	out, err := cmd.Output()
	var sum struct {
		OK    bool         `json:"ok"`
		Stats worker.Stats `json:"stats"`
	}
	if jerr := json.Unmarshal(out, &sum); jerr != nil || err != nil || !sum.OK {
		t.Fatalf("georep sync: %v %v\n%s", err, jerr, out)
	}
	if ok, out := testutil.VerifyPy(t, p, s); !ok {
		t.Fatalf("replica does not verify:\n%s", out)
	}
	if sum.Stats.DataFiles != files {
		t.Fatalf("%d files sent, want %d", sum.Stats.DataFiles, files)
	}
	// One reply per file cost at least ~10 bytes each (a frame header and
	// a FileOK); a batch's reply is shared by hundreds of files.
	if per := float64(sum.Stats.BytesRecv) / files; per > 2 {
		t.Errorf("%.1f bytes received per file: replies are not batched", per)
	}
	if per := float64(sum.Stats.BytesSent-sum.Stats.DataBytes) / files; per > 200 {
		t.Errorf("%.0f bytes of protocol per file sent", per)
	}
}

// TestThroughputSizesAroundTheBatchLimit: files on both sides of the batch
// limit, empty, sparse, hardlinked and with xattrs arrive intact, then the
// same after their content changes (sizes crossing the limit both ways).
func TestThroughputSizesAroundTheBatchLimit(t *testing.T) {
	testutil.RequireRoot(t)
	dir := workdir(t)
	p, s := filepath.Join(dir, "P"), filepath.Join(dir, "S")
	r := rand.New(rand.NewSource(1))
	sizes := map[string]int{"empty": 0, "one": 1, "below": 1<<20 - 1, "at": 1 << 20, "above": 1<<20 + 1, "big": 3<<20 + 17}
	for name, n := range sizes {
		writeFile(t, filepath.Join(p, "sizes", name), randomBytes(r, n))
	}
	writeFile(t, filepath.Join(p, "links", "a"), []byte("linked"))
	if err := os.Link(filepath.Join(p, "links", "a"), filepath.Join(p, "links", "b")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setxattr(filepath.Join(p, "sizes", "one"), "user.k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(p, "sizes", "below"), 1234, 5678); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(p, "sizes", "below"), 0o4751)
	f, err := os.Create(filepath.Join(p, "sizes", "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(8 << 20)
	f.WriteAt([]byte("tail"), 8<<20-4)
	f.Close()
	for i := 0; i < 300; i++ {
		writeFile(t, filepath.Join(p, "many", "f"+string(rune('a'+i%26))+string(rune('a'+i/26))), randomBytes(r, r.Intn(20000)))
	}
	cfg := worker.Config{Source: p, Dest: transport.Destination{Path: s}, SyncJobs: 3}
	syncInProcess(t, cfg)
	if ok, out := testutil.VerifyPy(t, p, s, "--mtime-ns"); !ok {
		t.Fatalf("first sync does not verify:\n%s", out)
	}
	var sst syscall.Stat_t
	if err := syscall.Stat(filepath.Join(s, "sizes", "sparse"), &sst); err != nil || sst.Blocks*512 > 1<<20 {
		t.Errorf("the sparse file takes %d bytes on the secondary (%v)", sst.Blocks*512, err)
	}
	// New content: sizes cross the batch limit both ways; one file of a
	// hardlinked pair changes in place.
	writeFile(t, filepath.Join(p, "sizes", "below"), randomBytes(r, 2<<20))
	writeFile(t, filepath.Join(p, "sizes", "big"), randomBytes(r, 1000))
	writeFile(t, filepath.Join(p, "sizes", "empty"), []byte("no longer empty"))
	writeFile(t, filepath.Join(p, "sizes", "at"), append(randomBytes(r, 4096), make([]byte, 1<<20-4096)...))
	if err := os.WriteFile(filepath.Join(p, "links", "b"), []byte("changed through b"), 0o644); err != nil {
		t.Fatal(err)
	}
	st := syncStats(t, cfg)
	if ok, out := testutil.VerifyPy(t, p, s, "--mtime-ns"); !ok {
		t.Fatalf("second sync does not verify:\n%s", out)
	}
	if st.DataFiles < 5 {
		t.Errorf("only %d files re-sent after 5 changed", st.DataFiles)
	}
}

func syncStats(t *testing.T, cfg worker.Config) worker.Stats {
	st, _ := syncInProcess(t, cfg)
	return st
}

// TestThroughputCompressionAndLimit: a local secondary never compresses,
// even asked to (-z: nothing crosses a wire; TestCompressionAdaptsToLink
// shows compression over ssh), and the replica verifies; a bandwidth
// limit paces the stream.
func TestThroughputCompressionAndLimit(t *testing.T) {
	testutil.RequireRoot(t)
	dir := workdir(t)
	p := filepath.Join(dir, "P")
	r := rand.New(rand.NewSource(2))
	text := bytes.Repeat([]byte("georep replicates trees; "), 1<<16) // 1.6 MB, compressible
	for i := 0; i < 200; i++ {
		writeFile(t, filepath.Join(p, "small", string(rune('a'+i%26))+string(rune('a'+i/26))), text[:r.Intn(30000)])
	}
	writeFile(t, filepath.Join(p, "large"), bytes.Repeat(text, 5))    // streamed in chunks
	writeFile(t, filepath.Join(p, "random"), randomBytes(r, 512<<10)) // stored, not compressed
	cfg := worker.Config{Source: p, Dest: transport.Destination{Path: filepath.Join(dir, "Z")}, Compression: "zstd"}
	st, _ := syncInProcess(t, cfg)
	if ok, out := testutil.VerifyPy(t, p, cfg.Dest.Path, "--mtime-ns"); !ok {
		t.Fatalf("compressed sync does not verify:\n%s", out)
	}
	if st.BytesSent < st.DataBytes || st.Compression != "none (local secondary)" {
		t.Errorf("local secondary with compression zstd: %d bytes sent for %d bytes of data, compression %q; want none (local secondary)",
			st.BytesSent, st.DataBytes, st.Compression)
	}

	q := filepath.Join(dir, "Q")
	writeFile(t, filepath.Join(q, "random"), randomBytes(r, 3<<20))
	cfg = worker.Config{Source: q, Dest: transport.Destination{Path: filepath.Join(dir, "L")}, BandwidthLimit: 1 << 20}
	_, took := syncInProcess(t, cfg)
	if ok, out := testutil.VerifyPy(t, q, cfg.Dest.Path); !ok {
		t.Fatalf("limited sync does not verify:\n%s", out)
	}
	// 3 MiB at 1 MiB/s with 0.1 s bursts: not less than about 2.8 s.
	if took < 2500*time.Millisecond || took > 20*time.Second {
		t.Errorf("3 MiB at a 1 MiB/s limit took %s", took)
	}
}
