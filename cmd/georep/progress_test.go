package main

import (
	"strings"
	"testing"
	"time"

	"github.com/georep/georep/internal/worker"
)

// TestProgressLineETA: 40 of 100 MiB answered in 4 s leaves 60 MiB at
// 10 MiB/s: ETA 6s (the line used to say 0s whatever was left).
func TestProgressLineETA(t *testing.T) {
	line := progressLine(worker.Progress{Files: 4, TotalFiles: 10, Bytes: 60 << 20, Settled: 40 << 20, TotalBytes: 100 << 20, Elapsed: 4 * time.Second})
	if !strings.HasSuffix(line, "ETA 6s") || !strings.Contains(line, "10.0 MiB/s") {
		t.Errorf("progress line %q", line)
	}
	if line := progressLine(worker.Progress{TotalBytes: 10, Elapsed: time.Second}); !strings.HasSuffix(line, "ETA -") {
		t.Errorf("nothing answered yet: %q", line)
	}
}
