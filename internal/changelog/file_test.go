package changelog

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestFileName(t *testing.T) {
	for _, seq := range []uint64{0, 1, 42, 1e15, 1<<64 - 1} {
		name := FileName(seq)
		if len(name) != len("CHANGELOG.")+20 || !strings.HasPrefix(name, "CHANGELOG.") {
			t.Fatalf("FileName(%d) = %q", seq, name)
		}
		if got, ok := ParseFileName(name); !ok || got != seq {
			t.Fatalf("ParseFileName(%q) = %d, %v", name, got, ok)
		}
	}
	if FileName(42) != "CHANGELOG.00000000000000000042" {
		t.Fatalf("FileName(42) = %q", FileName(42))
	}
	if FileName(1) >= FileName(10) || FileName(9) >= FileName(10) {
		t.Fatal("names do not sort by sequence")
	}
	for _, bad := range []string{
		"", "CHANGELOG.", "CHANGELOG.1", "CHANGELOG.0000000000000000004", "CHANGELOG.000000000000000000042",
		"changelog.00000000000000000042", "CHANGELOG.0000000000000000004x", "CHANGELOG.+0000000000000000042",
		"CHANGELOG.99999999999999999999", ".CHANGELOG.00000000000000000042.tmp-123",
	} {
		if _, ok := ParseFileName(bad); ok {
			t.Errorf("ParseFileName(%q) accepted", bad)
		}
	}
}

func TestWriteReadFile(t *testing.T) {
	dir := t.TempDir()
	h := Header{Seq: 5, Start: 100, Source: SourceCrawl}
	recs := allRecords()
	path := filepath.Join(dir, FileName(h.Seq))
	if err := WriteFile(path, h, recs, 200); err != nil {
		t.Fatal(err)
	}
	gh, got, tr, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if gh != h || tr != (Trailer{End: 200, Count: len(recs)}) || !reflect.DeepEqual(got, recs) {
		t.Fatalf("round trip differs: %+v %+v", gh, tr)
	}
	// Decode from an open file (sized by Stat).
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, got, _, err := Decode(f); err != nil || !reflect.DeepEqual(got, recs) {
		t.Fatalf("Decode(*os.File): %v", err)
	}
	// Overwrite atomically with fewer records.
	if err := WriteFile(path, h, recs[:1], 300); err != nil {
		t.Fatal(err)
	}
	if _, got, _, err := ReadFile(path); err != nil || len(got) != 1 {
		t.Fatalf("after overwrite: %v, %d records", err, len(got))
	}
	// A refused write leaves the old file and no temporary behind.
	if err := WriteFile(path, h, []Record{{Type: Gap, From: 2, To: 1}}, 300); err == nil {
		t.Fatal("WriteFile accepted an invalid record")
	}
	if _, got, _, err := ReadFile(path); err != nil || len(got) != 1 {
		t.Fatalf("after failed write: %v, %d records", err, len(got))
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("directory has %d entries, want 1", len(ents))
	}
	// Relative path in the current directory.
	t.Chdir(dir)
	if err := WriteFile(FileName(6), h, nil, 1); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := ReadFile(FileName(6)); err != nil {
		t.Fatal(err)
	}
}

func TestWriteFileMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope", FileName(1))
	if err := WriteFile(path, Header{Source: SourceJournal}, nil, 0); err == nil {
		t.Fatal("WriteFile into a missing directory succeeded")
	}
}

func TestReadFileErrorsNamePath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName(3))
	data := mustEncode(t, Header{Seq: 3, Source: SourceJournal}, allRecords(), 9)
	if err := os.WriteFile(path, data[:len(data)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	_, recs, _, err := ReadFile(path)
	if err == nil || recs != nil {
		t.Fatalf("ReadFile of truncated file: %v, %d records", err, len(recs))
	}
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Path != path || !strings.Contains(err.Error(), path) || !errors.Is(err, ErrTruncated) {
		t.Fatalf("error %q does not name %s / is not ErrTruncated", err, path)
	}
	if _, _, _, err := ReadFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestList(t *testing.T) {
	if got, err := List(filepath.Join(t.TempDir(), "missing")); err != nil || len(got) != 0 {
		t.Fatalf("missing dir: %v, %v", got, err)
	}
	dir := t.TempDir()
	for _, seq := range []uint64{10, 2, 1 << 40, 0} {
		if err := WriteFile(filepath.Join(dir, FileName(seq)), Header{Seq: seq, Source: SourceJournal}, nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, junk := range []string{"." + FileName(7) + ".tmp-123", "CHANGELOG.7", "README", FileName(8) + ".bak"} {
		if err := os.WriteFile(filepath.Join(dir, junk), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, FileName(9)), 0o700); err != nil {
		t.Fatal(err)
	}
	got, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []FileInfo{
		{0, filepath.Join(dir, FileName(0))},
		{2, filepath.Join(dir, FileName(2))},
		{10, filepath.Join(dir, FileName(10))},
		{1 << 40, filepath.Join(dir, FileName(1<<40))},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
	if _, err := List(filepath.Join(dir, FileName(0))); err == nil {
		t.Fatal("List of a regular file succeeded")
	}
}

func TestDump(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName(4))
	recs := []Record{
		{Type: Entry, Op: OpCreate, ID: idA, Parent: idB, Name: "new\nline"},
		{Type: Entry, Op: OpRename, ID: idA, Parent: idB, Name: "a b", NewParent: idC, NewName: "\xff"},
		{Type: Data, ID: idA},
		{Type: Meta, ID: idA, Parent: idB, Name: "x"},
		{Type: Gap, From: 1, To: 2, Reason: "queue overflow"},
	}
	if err := WriteFile(path, Header{Seq: 4, Start: 1_700_000_000_000_000_000, Source: SourceJournal}, recs, 1_700_000_001_500_000_000); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Dump(&buf, path); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	t.Log("\n" + out)
	for _, want := range []string{
		"changelog " + path + "\n",
		"version 1  seq 4  source journal\n",
		"start 1700000000000000000 (2023-11-14T22:13:20Z)\n",
		"E " + string(idA) + " CREATE " + string(idB) + ` "new\nline"` + "\n",
		"E " + string(idA) + " RENAME " + string(idB) + ` "a b" -> ` + string(idC) + ` "\xff"` + "\n",
		"D " + string(idA) + "\n",
		"M " + string(idA) + " " + string(idB) + ` "x"` + "\n",
		`G 1 2 "queue overflow"` + "\n",
		"end   1700000001500000000 (2023-11-14T22:13:21.5Z)\n",
		"records 5  checksum ok\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dump lacks %q", want)
		}
	}
	if strings.Count(out, "\n") != 3+len(recs)+2 {
		t.Errorf("dump has %d lines", strings.Count(out, "\n"))
	}
	// A corrupt file: error, no output.
	data, _ := os.ReadFile(path)
	data[len(testHeaderLine)+3] ^= 1
	os.WriteFile(path, data, 0o600)
	buf.Reset()
	if err := Dump(&buf, path); !errors.Is(err, ErrChecksum) || buf.Len() != 0 {
		t.Fatalf("Dump of corrupt file: %v, %d bytes written", err, buf.Len())
	}
}
