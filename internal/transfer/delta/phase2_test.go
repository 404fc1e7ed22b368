package delta

import (
	"os"
	"testing"
	"time"
)

func TestDeltaOnly(t *testing.T) {
	if os.Getenv("PHASES") == "" {
		t.Skip()
	}
	of, _ := os.Open("/tmp/rs/old")
	sig, _ := ComputeSignature(of, 256<<20)
	for r := 0; r < 8; r++ {
		nf, _ := os.Open("/tmp/rs/new")
		c0 := processCPU()
		t0 := time.Now()
		enc := NewEncoder(&countWriter{})
		sum, err := ComputeDelta(sig, nf, enc.WriteOp)
		enc.Close(sum)
		t.Logf("delta %v cpu %v %v", time.Since(t0), time.Duration(processCPU()-c0), err)
		nf.Close()
	}
}
