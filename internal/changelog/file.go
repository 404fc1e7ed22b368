package changelog

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// filePrefix starts every changelog file name; 20 decimal digits follow.
const (
	filePrefix = "CHANGELOG."
	seqDigits  = 20
)

// FileName is the name of the changelog file with sequence number seq:
// "CHANGELOG." and seq as 20 zero-padded decimal digits, so names sort in
// sequence order.
func FileName(seq uint64) string {
	var b [len(filePrefix) + seqDigits]byte
	copy(b[:], filePrefix)
	d := b[len(filePrefix):]
	for i := len(d) - 1; i >= 0; i-- {
		d[i] = byte('0' + seq%10)
		seq /= 10
	}
	return string(b[:])
}

// ParseFileName returns the sequence number of a name that FileName could
// have produced, and false for any other name (including temporary files).
func ParseFileName(name string) (uint64, bool) {
	if len(name) != len(filePrefix)+seqDigits || name[:len(filePrefix)] != filePrefix {
		return 0, false
	}
	digits := name[len(filePrefix):]
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return 0, false // beyond uint64
	}
	return seq, true
}

// FileInfo names one changelog file found by List.
type FileInfo struct {
	Seq  uint64 // sequence number, from the name
	Path string // dir joined with the file name
}

// List returns the changelog files in dir (names as FileName makes them,
// regular files only) sorted by Seq. Temporary files of WriteFile and other
// names are ignored; a missing dir is an empty list.
func List(dir string) ([]FileInfo, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list changelogs: %w", err)
	}
	var out []FileInfo
	for _, e := range ents {
		seq, ok := ParseFileName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		out = append(out, FileInfo{Seq: seq, Path: filepath.Join(dir, e.Name())})
	}
	slices.SortFunc(out, func(a, b FileInfo) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

// WriteFile writes a whole changelog file atomically: it encodes into a
// temporary file in the same directory (ignored by List), fsyncs it, renames
// it to path and fsyncs the directory. If it fails before the rename, path
// is untouched; the temporary file is always removed on error. The file is
// created with mode 0600.
func WriteFile(path string, h Header, recs []Record, end int64) error {
	if err := writeFile(path, h, recs, end); err != nil {
		return fmt.Errorf("write changelog %s: %w", path, err)
	}
	return nil
}

func writeFile(path string, h Header, recs []Record, end int64) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := Encode(f, h, recs, end); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}

// ReadFile reads and verifies a whole changelog file (see Decode). Format
// errors are *FormatError values carrying the path.
func ReadFile(path string) (Header, []Record, Trailer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Header{}, nil, Trailer{}, fmt.Errorf("read changelog: %w", err)
	}
	return decode(data, path)
}

// Dump writes a human-readable rendering of the changelog file at path: the
// header, one record per line with full IDs and names quoted by
// strconv.Quote, and the trailer. The file is verified first; if it is not
// valid nothing is written and the error is returned.
func Dump(w io.Writer, path string) error {
	h, recs, t, err := ReadFile(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	b := make([]byte, 0, 512)
	b = append(b, "changelog "...)
	b = append(b, path...)
	b = append(b, "\nversion "...)
	b = strconv.AppendInt(b, Version, 10)
	b = append(b, "  seq "...)
	b = strconv.AppendUint(b, h.Seq, 10)
	b = append(b, "  source "...)
	b = append(b, h.Source...)
	b = append(b, "\nstart "...)
	b = appendTime(b, h.Start)
	b = append(b, '\n')
	bw.Write(b)
	for i := range recs {
		bw.Write(appendDumpRecord(b[:0], &recs[i]))
	}
	b = append(b[:0], "end   "...)
	b = appendTime(b, t.End)
	b = append(b, "\nrecords "...)
	b = strconv.AppendInt(b, int64(t.Count), 10)
	b = append(b, "  checksum ok\n"...)
	bw.Write(b)
	return bw.Flush()
}

// appendTime appends ns and its UTC rendering.
func appendTime(b []byte, ns int64) []byte {
	b = strconv.AppendInt(b, ns, 10)
	b = append(b, " ("...)
	b = time.Unix(0, ns).UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, ')')
}

func appendDumpRecord(b []byte, r *Record) []byte {
	return appendRecordWith(b, r, strconv.AppendQuote, " -> ")
}
