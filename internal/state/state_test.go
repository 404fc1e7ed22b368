package state

import (
	"os"
	"path/filepath"
	"testing"
)

// TestStimeRecords: both writers round-trip; a missing record reads 0; a
// corrupt one is an error for ReadStime and a reported 0 for the lenient
// reader (what a crash can leave of a lazily written record).
func TestStimeRecords(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "stime")
	if v, err := ReadStime(p); err != nil || v != 0 {
		t.Fatalf("missing record: %d, %v", v, err)
	}
	if err := WriteStime(p, 1234567890123); err != nil {
		t.Fatal(err)
	}
	if v, err := ReadStime(p); err != nil || v != 1234567890123 {
		t.Fatalf("durable record: %d, %v", v, err)
	}
	if err := WriteStimeLazy(p, 42); err != nil {
		t.Fatal(err)
	}
	if v, corrupt, err := ReadStimeLenient(p); err != nil || corrupt || v != 42 {
		t.Fatalf("lazy record: %d, %v, %v", v, corrupt, err)
	}
	for _, junk := range []string{"", "\n", "12ab\n", "\x00\x00\x00"} {
		if err := os.WriteFile(p, []byte(junk), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadStime(p); err == nil {
			t.Errorf("ReadStime(%q) gave no error", junk)
		}
		if v, corrupt, err := ReadStimeLenient(p); err != nil || !corrupt || v != 0 {
			t.Errorf("ReadStimeLenient(%q) = %d, %v, %v; want 0, corrupt", junk, v, corrupt, err)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Errorf("temp files left beside the record: %v", entries)
	}
}
