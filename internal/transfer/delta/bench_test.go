package delta

// Benchmarks. The 256 MiB ones model the target workload: a 256 MiB file of
// which 1 MiB changed, as 4 runs of 256 KiB at random offsets. They report
// MB/s (through b.SetBytes) and, for the delta, the bytes a transfer puts on
// the wire: the marshaled signature plus the encoded op stream.
//
// For a comparison with rsync on the same change, run
//
//	GEOREP_RSYNC_COMPARE=1 go test -run TestRsyncCompare -v ./internal/transfer/delta/
//
// (see rsynccompare_test.go; it needs /usr/bin/rsync and is skipped otherwise).

import (
	"bytes"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

const benchSize = 256 << 20

var (
	benchOnce     sync.Once
	benchOld      []byte
	benchNew      []byte
	benchChangeAt []int
)

// benchData returns the 256 MiB old file and its new version with 1 MiB
// changed (4 random, non-overlapping runs of 256 KiB).
func benchData() (old, new []byte) {
	benchOnce.Do(func() {
		benchOld = randBytes(1000, benchSize)
		benchNew = append([]byte(nil), benchOld...)
		benchChangeAt = changeRuns(benchNew, 1001, 4, 256<<10)
	})
	return benchOld, benchNew
}

// changeRuns overwrites n non-overlapping runs of size bytes at random
// offsets of b with random data and returns the offsets.
func changeRuns(b []byte, seed uint64, n, size int) []int {
	r := rand.New(rand.NewPCG(seed, 3))
	var offs []int
	for len(offs) < n {
		off := r.IntN(len(b) - size)
		ok := true
		for _, o := range offs {
			if off < o+size && o < off+size {
				ok = false
			}
		}
		if ok {
			offs = append(offs, off)
			copy(b[off:], randBytes(seed+uint64(len(offs)), size))
		}
	}
	return offs
}

// cpuMeter reports the process CPU time per op (user+system, all threads),
// a figure that, unlike wall time, does not depend on what else the machine
// runs.
type cpuMeter struct{ start int64 }

func processCPU() int64 {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func startCPU(b *testing.B) *cpuMeter {
	b.ResetTimer()
	return &cpuMeter{start: processCPU()}
}

func (c *cpuMeter) report(b *testing.B) {
	b.ReportMetric(float64(processCPU()-c.start)/1e6/float64(b.N), "cpu-ms/op")
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

func BenchmarkSignature256MiB(b *testing.B) {
	old, _ := benchData()
	b.SetBytes(int64(len(old)))
	cpu := startCPU(b)
	var sig *Signature
	for i := 0; i < b.N; i++ {
		var err error
		sig, err = ComputeSignature(bytes.NewReader(old), int64(len(old)))
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cpu.report(b)
	sb, _ := sig.MarshalBinary()
	b.ReportMetric(float64(len(sb)), "sig-bytes")
}

func BenchmarkDelta256MiB1MiBChanged(b *testing.B) {
	old, new := benchData()
	sig, err := ComputeSignature(bytes.NewReader(old), int64(len(old)))
	if err != nil {
		b.Fatal(err)
	}
	sb, _ := sig.MarshalBinary()
	b.SetBytes(int64(len(new)))
	cpu := startCPU(b)
	var cw countWriter
	for i := 0; i < b.N; i++ {
		cw = countWriter{}
		enc := NewEncoder(&cw)
		sum, err := ComputeDelta(sig, bytes.NewReader(new), enc.WriteOp)
		if err != nil {
			b.Fatal(err)
		}
		if err := enc.Close(sum); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cpu.report(b)
	b.ReportMetric(float64(len(sb)), "sig-bytes")
	b.ReportMetric(float64(cw.n), "delta-bytes")
	b.ReportMetric(float64(int64(len(sb))+cw.n), "wire-bytes")
}

func BenchmarkPatch256MiB1MiBChanged(b *testing.B) {
	old, new := benchData()
	sig, err := ComputeSignature(bytes.NewReader(old), int64(len(old)))
	if err != nil {
		b.Fatal(err)
	}
	var wire bytes.Buffer
	enc := NewEncoder(&wire)
	sum, err := ComputeDelta(sig, bytes.NewReader(new), enc.WriteOp)
	if err != nil {
		b.Fatal(err)
	}
	if err := enc.Close(sum); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(new)))
	cpu := startCPU(b)
	for i := 0; i < b.N; i++ {
		dec := NewDecoder(bytes.NewReader(wire.Bytes()))
		if err := PatchFrom(bytes.NewReader(old), sig, dec, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cpu.report(b)
}

// BenchmarkEndToEnd256MiB1MiBChanged runs signature, delta (streamed through
// the wire encoding) and patch for one file, delta and patch concurrently as
// the two ends of a transfer would.
func BenchmarkEndToEnd256MiB1MiBChanged(b *testing.B) {
	old, new := benchData()
	b.SetBytes(int64(len(new)))
	var wireBytes int64
	cpu := startCPU(b)
	for i := 0; i < b.N; i++ {
		sig, err := ComputeSignature(bytes.NewReader(old), int64(len(old)))
		if err != nil {
			b.Fatal(err)
		}
		sb, _ := sig.MarshalBinary()
		var rsig Signature
		if err := rsig.UnmarshalBinary(sb); err != nil {
			b.Fatal(err)
		}
		pr, pw := io.Pipe()
		cw := &countWriter{}
		errc := make(chan error, 1)
		go func() {
			enc := NewEncoder(io.MultiWriter(pw, cw))
			sum, err := ComputeDelta(&rsig, bytes.NewReader(new), enc.WriteOp)
			if err == nil {
				err = enc.Close(sum)
			}
			pw.CloseWithError(err)
			errc <- err
		}()
		if err := PatchFrom(bytes.NewReader(old), sig, NewDecoder(pr), io.Discard); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		wireBytes = int64(len(sb)) + cw.n
	}
	b.StopTimer()
	cpu.report(b)
	b.ReportMetric(float64(wireBytes), "wire-bytes")
}

// BenchmarkRollingDifferent64MiB measures the rolling search: nothing
// matches, so every byte of the new file is rolled over.
func BenchmarkRollingDifferent64MiB(b *testing.B) {
	old := randBytes(2000, 64<<20)
	new := randBytes(2001, 64<<20)
	sig, err := ComputeSignature(bytes.NewReader(old), int64(len(old)))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(new)))
	cpu := startCPU(b)
	for i := 0; i < b.N; i++ {
		if _, err := ComputeDelta(sig, bytes.NewReader(new), func(Op) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cpu.report(b)
}
