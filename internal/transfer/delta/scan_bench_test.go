package delta

import (
	"bytes"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

func threadCPU() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return ts.Nano()
}

// threadCPU and the benchmarks below measure single-goroutine loops in CPU
// time of the locked OS thread ("cpuMB/s"), which stays meaningful on a busy
// machine.

// BenchmarkScanOnly measures the rolling-checksum loop alone: 8 MiB of data
// matching none of the 16384 blocks of a 256 MiB signature.
func BenchmarkScanOnly(b *testing.B) {
	old := randBytes(2000, 256<<20)
	sig, _ := ComputeSignatureWith(bytes.NewReader(old), int64(len(old)), SignatureOptions{Seed: 5})
	m := newMatcher(sig, nil, nil)
	data := randBytes(2001, 8<<20)
	m.win = data
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.SetBytes(int64(len(data) - m.bs))
	b.ResetTimer()
	t0 := threadCPU()
	for i := 0; i < b.N; i++ {
		h := m.wh.sum(data[:m.bs])
		p, end := 0, len(data)-m.bs
		for p < end {
			var hit bool
			p, h, hit = m.scan(p, end, h)
			_ = hit
			if p < end {
				h = h*rollMul + m.wh.t[7][data[p+m.bs]] - m.wh.u[data[p]]
				p++
			}
		}
	}
	b.ReportMetric(float64(int64(b.N)*int64(len(data)-m.bs))/(float64(threadCPU()-t0)/1e9)/1e6, "cpuMB/s")
}

// BenchmarkWeakSumCPU measures the non-rolling weak checksum of one 16 KiB
// block (the signature's and the rolling search's starting point).
func BenchmarkWeakSumCPU(b *testing.B) {
	data := randBytes(3000, 16384)
	wh := newWeakHasher(1, len(data))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.SetBytes(int64(len(data)))
	t0 := threadCPU()
	for i := 0; i < b.N; i++ {
		wh.sum(data)
	}
	b.ReportMetric(float64(int64(b.N)*int64(len(data)))/(float64(threadCPU()-t0)/1e9)/1e6, "cpuMB/s")
}
