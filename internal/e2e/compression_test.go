package e2e

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/georep/georep/internal/testutil"
	"github.com/georep/georep/internal/worker"
)

// copySourceTree copies some of the Go distribution's src/ (real,
// compressible files: about 9 MB) under dst.
func copySourceTree(t *testing.T, dst string) {
	t.Helper()
	for _, sub := range []string{"net", "go"} {
		root := filepath.Join(runtime.GOROOT(), "src", sub)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			out := filepath.Join(dst, sub, rel)
			if d.IsDir() {
				return os.MkdirAll(out, 0o755)
			}
			if !d.Type().IsRegular() {
				return nil
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(out, data, 0o644)
		})
		if err != nil {
			t.Skipf("cannot copy GOROOT sources: %v", err)
		}
	}
}

// syncJSONStats runs `georep sync --json` with args and returns its stats.
func syncJSONStats(t *testing.T, bin string, args ...string) worker.Stats {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"sync", "--json"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var sum struct {
		OK    bool         `json:"ok"`
		Stats worker.Stats `json:"stats"`
	}
	if jerr := json.Unmarshal(out.Bytes(), &sum); jerr != nil || err != nil || !sum.OK {
		t.Fatalf("georep sync %v: %v %v\nstdout: %s\nstderr: %s", args, err, jerr, out.String(), tail(errb.String(), 3000))
	}
	return sum.Stats
}

// TestCompressionAdaptsToLink: with default flags, over ssh to another
// host (an sshd in a network namespace, its link shaped to 50 Mbit/s
// when tc is there), a tree of source code travels compressed (far fewer
// bytes on the wire than file data) and a tree of random files is sent as
// is (its samples do not shrink); over loopback ssh the source tree is
// not compressed (the "link" is the same CPUs), unless -z asks for it.
// Every replica verifies.
func TestCompressionAdaptsToLink(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.GeorepBin(t)
	dir := workdir(t)
	ns := testutil.NewNetnsPair(t)
	if tc, err := exec.LookPath("tc"); err == nil {
		if out, err := exec.Command(tc, "qdisc", "add", "dev", ns.HostVeth, "root", "tbf", "rate", "50mbit", "burst", "64kb", "latency", "200ms").CombinedOutput(); err != nil {
			t.Logf("link not shaped (tc: %v: %s)", err, out)
		}
	}
	remote := testutil.StartSSHDInNetns(t, ns, testutil.SSHDOptions{})
	local := testutil.StartSSHD(t, testutil.SSHDOptions{})

	src, rnd := filepath.Join(dir, "src"), filepath.Join(dir, "random")
	copySourceTree(t, src)
	testutil.Workload(t, "populate", rnd, "--files", "1000", "--dirs", "10")
	sync := func(name, tree string, sshd *testutil.SSHD, extra ...string) worker.Stats {
		t.Helper()
		s := filepath.Join(dir, "S-"+name)
		args := append([]string{tree, sshd.UserHost() + ":" + s, "--state-dir", filepath.Join(dir, "state-"+name),
			"--ssh-command", sshd.SSHCommand(), "--remote-georep", bin, "--no-progress"}, extra...)
		st := syncJSONStats(t, bin, args...)
		if ok, out := testutil.VerifyPy(t, tree, s); !ok {
			t.Fatalf("%s: replica differs:\n%s", name, out)
		}
		t.Logf("%s: %d files, %d data bytes, %d bytes sent, compression %s, %.2fx", name, st.DataFiles, st.DataBytes, st.BytesSent, st.Compression, st.CompressionRatio)
		return st
	}

	st := sync("src-remote", src, remote)
	if !strings.HasPrefix(st.Compression, "zstd:") || st.CompressionRatio < 2.5 || st.BytesSent*5/2 > st.DataBytes {
		t.Errorf("source tree over a 50 Mbit/s link, default flags: compression %q, ratio %.2f, %d bytes sent for %d of data; want zstd, >= 2.5x fewer bytes",
			st.Compression, st.CompressionRatio, st.BytesSent, st.DataBytes)
	}
	st = sync("random-remote", rnd, remote)
	if st.Compression != "none (incompressible data)" || st.CompressionRatio > 1.01 || st.BytesSent < st.DataBytes {
		t.Errorf("random tree over the same link: compression %q, ratio %.2f, %d bytes sent for %d of data; want it sent as is",
			st.Compression, st.CompressionRatio, st.BytesSent, st.DataBytes)
	}
	st = sync("src-loopback", src, local)
	if st.Compression != "none (loopback)" || st.BytesSent < st.DataBytes {
		t.Errorf("source tree over loopback ssh, default flags: compression %q, %d bytes sent for %d of data; want none (loopback)",
			st.Compression, st.BytesSent, st.DataBytes)
	}
	st = sync("src-loopback-z", src, local, "-z")
	if !strings.HasPrefix(st.Compression, "zstd:") || st.BytesSent*5/2 > st.DataBytes {
		t.Errorf("source tree over loopback ssh with -z: compression %q, %d bytes sent for %d of data; want compressed",
			st.Compression, st.BytesSent, st.DataBytes)
	}
	st = sync("src-loopback-level", filepath.Join(src, "go"), local, "--compress-level", "19")
	if !strings.HasPrefix(st.Compression, "zstd:4 (fixed level)") {
		t.Errorf("--compress-level 19: compression %q, want zstd:4 (fixed level)", st.Compression)
	}
}

var runCompression = regexp.MustCompile(`compression="?(zstd:\d)[^ ]* .*compression_ratio=([0-9.]+)`)

// TestRunHonoursTransferFlags: `georep run` applies -z and --bwlimit in
// continuous mode: over loopback ssh, -z compresses the source tree (its
// status lines say so, with the ratio), and --bwlimit 1M holds a 6 MB
// random tree back for about 6 s.
func TestRunHonoursTransferFlags(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.GeorepBin(t)
	dir := workdir(t)
	sshd := testutil.StartSSHD(t, testutil.SSHDOptions{})

	src, s := filepath.Join(dir, "src"), filepath.Join(dir, "S-src")
	copySourceTree(t, src)
	r := startRun(t, bin, nil, src, sshd.UserHost()+":"+s, "--state-dir", filepath.Join(dir, "state-src"), "--ssh-command", sshd.SSHCommand(),
		"--remote-georep", bin, "-z", "--status-interval", "100ms", "--change-interval", "100ms")
	waitConverged(t, r, src, s, 2*time.Minute)
	deadline := time.Now().Add(10 * time.Second)
	var m []string
	for time.Now().Before(deadline) {
		if m = runCompression.FindStringSubmatch(lastLine(r.Logs(), "compression_ratio=")); m != nil {
			if ratio, _ := strconv.ParseFloat(m[2], 64); ratio > 1 {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if m == nil {
		t.Fatalf("georep run -z: no status line with a zstd compression:\n%s", tail(r.Logs(), 3000))
	}
	if ratio, _ := strconv.ParseFloat(m[2], 64); ratio < 2.5 {
		t.Errorf("georep run -z: compression %s at %.2fx, want >= 2.5x on source code", m[1], ratio)
	}

	rnd, s2 := filepath.Join(dir, "random"), filepath.Join(dir, "S-random")
	testutil.Workload(t, "populate", rnd, "--files", "700", "--dirs", "7")
	size := treeSize(t, rnd)
	start := time.Now()
	r2 := startRun(t, bin, nil, rnd, sshd.UserHost()+":"+s2, "--state-dir", filepath.Join(dir, "state-random"), "--ssh-command", sshd.SSHCommand(),
		"--remote-georep", bin, "--bwlimit", "1M", "--change-interval", "100ms")
	waitConverged(t, r2, rnd, s2, 2*time.Minute)
	took := time.Since(start)
	floor := time.Duration(float64(size) / (1 << 20) * float64(time.Second))
	if took < floor*8/10 {
		t.Errorf("georep run --bwlimit 1M: %d bytes in %s, under the limit's %s: the limit is not applied", size, took.Round(time.Millisecond), floor.Round(time.Millisecond))
	}
	t.Logf("--bwlimit 1M: %d bytes in %s (limit's floor %s)", size, took.Round(time.Millisecond), floor.Round(time.Millisecond))
}

// lastLine returns the last line of logs that contains sub.
func lastLine(logs, sub string) string {
	lines := strings.Split(logs, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], sub) {
			return lines[i]
		}
	}
	return ""
}
