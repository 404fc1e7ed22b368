package delta

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPhases(t *testing.T) {
	if os.Getenv("PHASES") == "" {
		t.Skip()
	}
	dir := t.TempDir()
	o := randBytes(1, 256<<20)
	n := append([]byte(nil), o...)
	changeRuns(n, 2, 4, 256<<10)
	os.WriteFile(filepath.Join(dir, "old"), o, 0o644)
	os.WriteFile(filepath.Join(dir, "new"), n, 0o644)
	o, n = nil, nil
	for r := 0; r < 3; r++ {
		of, _ := os.Open(filepath.Join(dir, "old"))
		c0 := processCPU()
		t0 := time.Now()
		sig, _ := ComputeSignature(of, 256<<20)
		t1 := time.Now()
		c1 := processCPU()
		nf, _ := os.Open(filepath.Join(dir, "new"))
		var wire bytes.Buffer
		enc := NewEncoder(&wire)
		sum, err := ComputeDelta(sig, nf, enc.WriteOp)
		enc.Close(sum)
		t2 := time.Now()
		c2 := processCPU()
		w2 := wire.Bytes()
		out, _ := os.Create(filepath.Join(dir, "out"))
		err = PatchFrom(of, sig, NewDecoder(&wire), out)
		out.Close()
		t3 := time.Now()
		c3 := processCPU()
		t.Logf("sig %v (cpu %v) delta %v (cpu %v) patch %v (cpu %v) err %v", t1.Sub(t0), time.Duration(c1-c0), t2.Sub(t1), time.Duration(c2-c1), t3.Sub(t2), time.Duration(c3-c2), err)
		// Concurrent delta and patch.
		os.Remove(filepath.Join(dir, "out"))
		nf.Seek(0, 0)
		pr, pw := io.Pipe()
		t4 := time.Now()
		go func() {
			enc := NewEncoder(pw)
			sum, err := ComputeDelta(sig, nf, enc.WriteOp)
			enc.Close(sum)
			pw.CloseWithError(err)
		}()
		out, _ = os.Create(filepath.Join(dir, "out"))
		err = PatchFrom(of, sig, NewDecoder(pr), out)
		out.Close()
		c5 := processCPU()
		t.Logf("concurrent delta+patch %v (cpu %v) %v %d", time.Since(t4), time.Duration(c5-c3), err, len(w2))
		os.Remove(filepath.Join(dir, "out"))
		of.Close()
		nf.Close()
	}
}
