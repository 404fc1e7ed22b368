package changelog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"strconv"
	"strings"

	"github.com/georep/georep/internal/fileid"
)

// The file format, one record per line, fields separated by single spaces:
//
//	GEOREP-CHANGELOG 1 <seq> <start-ns> <source>
//	E <id> <OP> <parent-id> <name>
//	E <id> RENAME <old-parent-id> <old-name> <new-parent-id> <new-name>
//	D <id> [<parent-id> <name>]
//	M <id> [<parent-id> <name>]
//	G <from-ns> <to-ns> <reason>
//	END <end-ns> <record-count> <crc32c>
//
// Names and reasons are escaped with EscapeName. Numbers are decimal as
// strconv formats them; the CRC-32C (Castagnoli) is 8 lower-case hex digits
// and covers every byte before the END line. Every line ends in '\n' and
// nothing follows the END line. The decoder accepts only this canonical form,
// so decoding and re-encoding a valid file reproduces it byte for byte.

// Version is the format version this package writes and reads.
const Version = 1

const (
	magic         = "GEOREP-CHANGELOG"
	versionString = "1"
	trailerTag    = "END"
)

// Sources of a changelog file, as recorded in its header.
const (
	SourceJournal = "journal" // written by the live journal
	SourceCrawl   = "crawl"   // produced by a crawl (e.g. to cover a gap)
)

// Header is the first line of a changelog file.
type Header struct {
	Seq    uint64 // sequence number of the file; also in its name
	Start  int64  // start of the time window, ns since the epoch
	Source string // SourceJournal or SourceCrawl
}

// Trailer is the last line of a changelog file.
type Trailer struct {
	End   int64 // end of the time window, ns since the epoch
	Count int   // number of records in the file
}

// Classes of decoding errors; a *FormatError wraps exactly one of them, so
// callers can use errors.Is.
var (
	// ErrTruncated: the file has no complete trailer (e.g. a crash while
	// it was being written).
	ErrTruncated = errors.New("truncated (no complete trailer)")
	// ErrChecksum: the trailer's CRC does not match the contents.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrVersion: a changelog of a format version this code does not read.
	ErrVersion = errors.New("unsupported version")
	// ErrCorrupt: anything else that is not a well-formed changelog.
	ErrCorrupt = errors.New("malformed changelog")
)

// FormatError describes why a changelog could not be decoded.
type FormatError struct {
	Path string // file name, when known
	Line int    // 1-based line number, 0 when not about one line
	Kind error  // ErrTruncated, ErrChecksum, ErrVersion or ErrCorrupt
	Msg  string // details
}

// Error implements error.
func (e *FormatError) Error() string {
	b := make([]byte, 0, 64+len(e.Path)+len(e.Msg))
	b = append(b, "changelog"...)
	if e.Path != "" {
		b = append(b, ' ')
		b = append(b, e.Path...)
	}
	if e.Line > 0 {
		b = append(b, ": line "...)
		b = strconv.AppendInt(b, int64(e.Line), 10)
	}
	b = append(b, ": "...)
	b = append(b, e.Kind.Error()...)
	if e.Msg != "" {
		b = append(b, ": "...)
		b = append(b, e.Msg...)
	}
	return string(b)
}

// Unwrap returns the error class.
func (e *FormatError) Unwrap() error { return e.Kind }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Writer encodes a changelog file as a stream: the header when created, one
// line per Write, the trailer on Close. Output is buffered; the caller owns
// syncing and closing the underlying writer. After a write error or Close
// the Writer refuses further use. A Writer is not safe for concurrent use.
type Writer struct {
	bw     *bufio.Writer
	crc    uint32
	count  int
	size   int64
	line   []byte
	err    error
	closed bool
}

// NewWriter validates h and writes the header line to w.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	if err := h.Validate(); err != nil {
		return nil, fmt.Errorf("changelog header: %w", err)
	}
	cw := &Writer{bw: bufio.NewWriterSize(w, 64<<10), line: make([]byte, 0, 512)}
	b := cw.line[:0]
	b = append(b, magic...)
	b = append(b, ' ')
	b = append(b, versionString...)
	b = append(b, ' ')
	b = strconv.AppendUint(b, h.Seq, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, h.Start, 10)
	b = append(b, ' ')
	b = append(b, h.Source...)
	b = append(b, '\n')
	if err := cw.emit(b); err != nil {
		return nil, err
	}
	return cw, nil
}

func (w *Writer) emit(b []byte) error {
	w.line = b[:0]
	w.crc = crc32.Update(w.crc, castagnoli, b)
	w.size += int64(len(b))
	if _, err := w.bw.Write(b); err != nil {
		w.err = fmt.Errorf("changelog write: %w", err)
		return w.err
	}
	return nil
}

func (w *Writer) usable() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errors.New("changelog write: writer is closed")
	}
	return nil
}

// Write validates r (see Record.Validate) and appends its line. An invalid
// record is refused with an error and does not poison the Writer.
func (w *Writer) Write(r Record) error {
	if err := w.usable(); err != nil {
		return err
	}
	if err := r.Validate(); err != nil {
		return fmt.Errorf("changelog write: %w", err)
	}
	return w.writeValid(&r)
}

// writeValid appends the line of a record that has passed Validate.
func (w *Writer) writeValid(r *Record) error {
	if err := w.usable(); err != nil {
		return err
	}
	if err := w.emit(appendRecord(w.line[:0], r)); err != nil {
		return err
	}
	w.count++
	return nil
}

// Count is the number of records written so far.
func (w *Writer) Count() int { return w.count }

// Size is the number of bytes produced so far (including any still
// buffered), for rollover decisions.
func (w *Writer) Size() int64 { return w.size }

// Flush writes buffered lines to the underlying writer. A flushed file
// without its trailer still decodes as ErrTruncated, never as valid.
func (w *Writer) Flush() error {
	if err := w.usable(); err != nil {
		return err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = fmt.Errorf("changelog write: %w", err)
		return w.err
	}
	return nil
}

// Close writes the trailer with the given window end (ns) and flushes. It
// does not close or sync the underlying writer.
func (w *Writer) Close(end int64) error {
	if err := w.usable(); err != nil {
		return err
	}
	w.closed = true
	crc := w.crc
	b := w.line[:0]
	b = append(b, trailerTag...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, end, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(w.count), 10)
	b = append(b, ' ')
	b = appendHex32(b, crc)
	b = append(b, '\n')
	if err := w.emit(b); err != nil {
		return err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = fmt.Errorf("changelog write: %w", err)
		return w.err
	}
	return nil
}

func appendHex32(b []byte, v uint32) []byte {
	const lowerHex = "0123456789abcdef"
	for shift := 28; shift >= 0; shift -= 4 {
		b = append(b, lowerHex[(v>>uint(shift))&0xf])
	}
	return b
}

// appendRecord appends the line (with '\n') for a validated record.
func appendRecord(b []byte, r *Record) []byte {
	return appendRecordWith(b, r, appendEscaped, " ")
}

// appendRecordWith appends r's line with its strings (names, a gap's
// reason) written by str and a rename's two slots separated by renameSep:
// the changelog's escaping for files, Go quoting for dumps.
func appendRecordWith(b []byte, r *Record, str func([]byte, string) []byte, renameSep string) []byte {
	b = append(b, byte(r.Type))
	switch r.Type {
	case Entry:
		b = append(b, ' ')
		b = append(b, r.ID...)
		b = append(b, ' ')
		b = append(b, r.Op.String()...)
		b = append(b, ' ')
		b = append(b, r.Parent...)
		b = append(b, ' ')
		b = str(b, r.Name)
		if r.Op == OpRename {
			b = append(b, renameSep...)
			b = append(b, r.NewParent...)
			b = append(b, ' ')
			b = str(b, r.NewName)
		}
	case Data, Meta:
		b = append(b, ' ')
		b = append(b, r.ID...)
		if r.Parent != "" {
			b = append(b, ' ')
			b = append(b, r.Parent...)
			b = append(b, ' ')
			b = str(b, r.Name)
		}
	case Gap:
		b = append(b, ' ')
		b = strconv.AppendInt(b, r.From, 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, r.To, 10)
		b = append(b, ' ')
		b = str(b, r.Reason)
	}
	return append(b, '\n')
}

// Encode writes a whole changelog file: header, records and a trailer with
// the given window end (ns). The header and all records are validated first;
// if any is invalid nothing is written.
func Encode(w io.Writer, h Header, recs []Record, end int64) error {
	if err := h.Validate(); err != nil {
		return fmt.Errorf("changelog header: %w", err)
	}
	for i := range recs {
		if err := recs[i].Validate(); err != nil {
			return fmt.Errorf("changelog record %d: %w", i, err)
		}
	}
	cw, err := NewWriter(w, h)
	if err != nil {
		return err
	}
	for i := range recs {
		if err := cw.writeValid(&recs[i]); err != nil {
			return err
		}
	}
	return cw.Close(end)
}

// Decode reads and verifies a whole changelog file. Any defect — missing or
// incomplete trailer, checksum or count mismatch, unknown version, type or
// op, malformed ID, number or escape, invalid name, extra fields, data after
// the trailer — is reported as a *FormatError naming the line, and no
// header, records or trailer are returned with it.
func Decode(r io.Reader) (Header, []Record, Trailer, error) {
	data, err := readAll(r)
	if err != nil {
		return Header{}, nil, Trailer{}, fmt.Errorf("changelog read: %w", err)
	}
	return decode(data, "")
}

// readAll is io.ReadAll, sized up front when r knows its length.
func readAll(r io.Reader) ([]byte, error) {
	size := 0
	switch v := r.(type) {
	case interface{ Len() int }: // bytes.Reader, bytes.Buffer, strings.Reader
		size = v.Len()
	case interface{ Stat() (fs.FileInfo, error) }: // *os.File
		if fi, err := v.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() < 1<<40 {
			size = int(fi.Size())
		}
	}
	var buf bytes.Buffer
	buf.Grow(size + bytes.MinRead)
	_, err := buf.ReadFrom(r)
	return buf.Bytes(), err
}

// maxFields is the most fields any line has (E RENAME).
const maxFields = 7

// fields holds the fields of one line; one extra slot detects too many.
type fields [maxFields + 1]string

type decoder struct {
	path string
}

func (d *decoder) errorf(line int, kind error, format string, args ...any) error {
	return &FormatError{Path: d.path, Line: line, Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// splitFields splits line at single spaces into out. It returns the number of
// fields (len(out) meaning "too many"), or -1 if a field is empty.
func splitFields(line string, out *fields) int {
	n := 0
	for {
		if n == len(out) {
			return n
		}
		i := strings.IndexByte(line, ' ')
		if i < 0 {
			if len(line) == 0 {
				return -1
			}
			out[n] = line
			return n + 1
		}
		if i == 0 {
			return -1
		}
		out[n] = line[:i]
		n++
		line = line[i+1:]
	}
}

func decode(data []byte, path string) (Header, []Record, Trailer, error) {
	h, recs, t, err := (&decoder{path: path}).decode(data)
	if err != nil {
		return Header{}, nil, Trailer{}, err
	}
	return h, recs, t, nil
}

func (d *decoder) decode(data []byte) (Header, []Record, Trailer, error) {
	var h Header
	var t Trailer
	var f fields

	// Header: magic and version first, so a future format is reported as
	// such rather than as corruption.
	if len(data) == 0 {
		return h, nil, t, d.errorf(0, ErrTruncated, "empty file")
	}
	hdrEnd := bytes.IndexByte(data, '\n')
	if hdrEnd < 0 {
		if bytes.HasPrefix([]byte(magic+" "), data) || bytes.HasPrefix(data, []byte(magic+" ")) {
			return h, nil, t, d.errorf(1, ErrTruncated, "incomplete header line")
		}
		return h, nil, t, d.errorf(1, ErrCorrupt, "not a georep changelog (bad magic)")
	}
	hdr := string(data[:hdrEnd])
	nf := splitFields(hdr, &f)
	switch {
	case !strings.HasPrefix(hdr, magic):
		return h, nil, t, d.errorf(1, ErrCorrupt, "not a georep changelog (bad magic)")
	case nf < 0:
		return h, nil, t, d.errorf(1, ErrCorrupt, "header has %s", fieldCount(nf))
	case f[0] != magic:
		return h, nil, t, d.errorf(1, ErrCorrupt, "not a georep changelog (bad magic)")
	case nf < 2:
		return h, nil, t, d.errorf(1, ErrCorrupt, "header has no version")
	}
	if f[1] != versionString {
		return h, nil, t, d.errorf(1, ErrVersion, "version %q, this program reads version %s", f[1], versionString)
	}

	// Trailer: normally the last line. Verify the checksum before parsing
	// records, so a flipped byte is reported as such.
	trStart := -1
	if data[len(data)-1] == '\n' {
		trStart = bytes.LastIndexByte(data[:len(data)-1], '\n') + 1
		if trStart <= hdrEnd || !isTrailerLine(data[trStart:]) {
			trStart = -1
		}
	}
	if trStart < 0 {
		if i := findTrailerLine(data, hdrEnd+1); i >= 0 {
			return h, nil, t, d.errorf(lineNumber(data, i)+1, ErrCorrupt, "data after trailer")
		}
		if data[len(data)-1] != '\n' {
			return h, nil, t, d.errorf(lineNumber(data, len(data)), ErrTruncated, "incomplete last line")
		}
		return h, nil, t, d.errorf(0, ErrTruncated, "no trailer after %d lines", lineNumber(data, len(data))-1)
	}
	trLine := lineNumber(data, trStart)
	if nf := splitFields(string(data[trStart:len(data)-1]), &f); nf != 4 {
		return h, nil, t, d.errorf(trLine, ErrCorrupt, "trailer: want 4 fields, have %s", fieldCount(nf))
	}
	end, err := parseInt(f[1])
	if err != nil {
		return h, nil, t, d.errorf(trLine, ErrCorrupt, "trailer: end time: %v", err)
	}
	count, err := parseInt(f[2])
	if err != nil || count < 0 {
		return h, nil, t, d.errorf(trLine, ErrCorrupt, "trailer: bad record count %q", f[2])
	}
	want, ok := parseHex32(f[3])
	if !ok {
		return h, nil, t, d.errorf(trLine, ErrCorrupt, "trailer: bad checksum field %q (want 8 lower-case hex digits)", f[3])
	}
	if got := crc32.Checksum(data[:trStart], castagnoli); got != want {
		if i := findTrailerLine(data[:trStart], hdrEnd+1); i >= 0 {
			return h, nil, t, d.errorf(lineNumber(data, i)+1, ErrCorrupt, "data after trailer")
		}
		return h, nil, t, d.errorf(trLine, ErrChecksum, "trailer says %08x, contents have %08x", want, got)
	}
	t = Trailer{End: end, Count: int(count)}

	// Rest of the header.
	nf = splitFields(hdr, &f)
	if nf != 5 {
		return h, nil, t, d.errorf(1, ErrCorrupt, "header: want 5 fields, have %s", fieldCount(nf))
	}
	seq, err := parseUint(f[2])
	if err != nil {
		return h, nil, t, d.errorf(1, ErrCorrupt, "header: sequence number: %v", err)
	}
	start, err := parseInt(f[3])
	if err != nil {
		return h, nil, t, d.errorf(1, ErrCorrupt, "header: start time: %v", err)
	}
	h = Header{Seq: seq, Start: start, Source: f[4]}
	if err := h.Validate(); err != nil {
		return h, nil, t, d.errorf(1, ErrCorrupt, "header: %v", err)
	}

	// Records. Check the (checksummed) count against the line count before
	// sizing the slice by it.
	body := data[hdrEnd+1 : trStart]
	if n := bytes.Count(body, []byte{'\n'}); n != int(count) {
		return h, nil, t, d.errorf(trLine, ErrCorrupt, "trailer counts %d records, file has %d lines of records", count, n)
	}
	recs := make([]Record, count)
	line := 1
	for i := range recs {
		line++
		n := bytes.IndexByte(body, '\n')
		// One string per line; the record's unescaped fields share it.
		if err := parseRecord(&recs[i], string(body[:n]), &f); err != nil {
			return h, nil, t, d.errorf(line, ErrCorrupt, "%v", err)
		}
		body = body[n+1:]
	}
	return h, recs, t, nil
}

func fieldCount(nf int) string {
	switch {
	case nf < 0:
		return "an empty field (double, leading or trailing space)"
	case nf > maxFields:
		return "too many"
	}
	return strconv.Itoa(nf)
}

// isTrailerLine reports whether the line starting at b begins with "END ".
func isTrailerLine(b []byte) bool {
	return len(b) >= 4 && string(b[:4]) == trailerTag+" "
}

// findTrailerLine returns the offset of the first complete line at or after
// from that looks like a trailer, or -1.
func findTrailerLine(data []byte, from int) int {
	for from < len(data) {
		i := bytes.IndexByte(data[from:], '\n')
		if i < 0 {
			return -1
		}
		if isTrailerLine(data[from:]) {
			return from
		}
		from += i + 1
	}
	return -1
}

// lineNumber is the 1-based number of the line holding offset off.
func lineNumber(data []byte, off int) int {
	if off > len(data) {
		off = len(data)
	}
	return bytes.Count(data[:off], []byte{'\n'}) + 1
}

// parseRecord parses one record line (without '\n') into r and validates it.
func parseRecord(r *Record, line string, f *fields) error {
	nf := splitFields(line, f)
	if nf < 1 {
		return fmt.Errorf("record has %s", fieldCount(nf))
	}
	if len(f[0]) != 1 {
		return fmt.Errorf("unknown record type %q", f[0])
	}
	r.Type = Type(f[0][0])
	var err error
	switch r.Type {
	case Entry:
		if nf < 3 {
			return fmt.Errorf("E record: want at least 5 fields, have %s", fieldCount(nf))
		}
		op, ok := ParseOp(f[2])
		if !ok {
			return fmt.Errorf("E record: unknown op %q", f[2])
		}
		want := 5
		if op == OpRename {
			want = 7
		}
		if nf != want {
			return fmt.Errorf("E %s record: want %d fields, have %s", op, want, fieldCount(nf))
		}
		r.Op = op
		r.ID = fileid.ID(f[1])
		r.Parent = fileid.ID(f[3])
		if r.Name, err = UnescapeName(f[4]); err != nil {
			return fmt.Errorf("E %s record: name %q: %v", op, f[4], err)
		}
		if op == OpRename {
			r.NewParent = fileid.ID(f[5])
			if r.NewName, err = UnescapeName(f[6]); err != nil {
				return fmt.Errorf("E RENAME record: new name %q: %v", f[6], err)
			}
		}
	case Data, Meta:
		if nf != 2 && nf != 4 {
			return fmt.Errorf("%c record: want 2 or 4 fields, have %s", r.Type, fieldCount(nf))
		}
		r.ID = fileid.ID(f[1])
		if nf == 4 {
			r.Parent = fileid.ID(f[2])
			if r.Name, err = UnescapeName(f[3]); err != nil {
				return fmt.Errorf("%c record: name %q: %v", r.Type, f[3], err)
			}
		}
	case Gap:
		if nf != 4 {
			return fmt.Errorf("G record: want 4 fields, have %s", fieldCount(nf))
		}
		if r.From, err = parseInt(f[1]); err != nil {
			return fmt.Errorf("G record: from: %v", err)
		}
		if r.To, err = parseInt(f[2]); err != nil {
			return fmt.Errorf("G record: to: %v", err)
		}
		if r.Reason, err = UnescapeName(f[3]); err != nil {
			return fmt.Errorf("G record: reason %q: %v", f[3], err)
		}
	default:
		return fmt.Errorf("unknown record type %q", f[0])
	}
	// IDs and names are checked here, by the same rules the writer uses.
	return r.Validate()
}

// parseInt parses a decimal int64 in canonical form (as strconv.FormatInt
// writes it: no '+', no leading zeros, no "-0").
func parseInt(s string) (int64, error) {
	digits := strings.TrimPrefix(s, "-")
	if !canonicalDigits(digits) || digits == "0" && len(s) > 1 {
		return 0, fmt.Errorf("bad number %q", s)
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad number %q", s)
	}
	return v, nil
}

// parseUint parses a decimal uint64 in canonical form.
func parseUint(s string) (uint64, error) {
	if !canonicalDigits(s) {
		return 0, fmt.Errorf("bad number %q", s)
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad number %q", s)
	}
	return v, nil
}

func canonicalDigits(s string) bool {
	if len(s) == 0 || len(s) > 1 && s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func parseHex32(s string) (uint32, bool) {
	if len(s) != 8 {
		return 0, false
	}
	var v uint32
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint32(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint32(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}
