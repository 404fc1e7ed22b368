package changelog

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/georep/georep/internal/fileid"
)

func TestRoundTripEachRecord(t *testing.T) {
	h := Header{Seq: 42, Start: 1_700_000_000_000_000_000, Source: SourceJournal}
	for _, rec := range allRecords() {
		t.Run(rec.String(), func(t *testing.T) {
			data := mustEncode(t, h, []Record{rec}, h.Start+5)
			if bytes.Count(data, []byte{'\n'}) != 3 {
				t.Fatalf("want 3 lines, got %q", data)
			}
			for _, c := range data {
				if c != '\n' && (c < 0x20 || c >= 0x7f) {
					t.Fatalf("non-printable byte %#x in %q", c, data)
				}
			}
			gh, recs, tr, err := Decode(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("Decode: %v\n%s", err, data)
			}
			if gh != h {
				t.Errorf("header %+v, want %+v", gh, h)
			}
			if tr != (Trailer{End: h.Start + 5, Count: 1}) {
				t.Errorf("trailer %+v", tr)
			}
			if len(recs) != 1 || !reflect.DeepEqual(recs[0], rec) {
				t.Errorf("records %#v, want %#v", recs, rec)
			}
		})
	}
}

func TestRoundTripWholeFile(t *testing.T) {
	for _, h := range []Header{
		{Seq: 0, Start: 0, Source: SourceJournal},
		{Seq: 1<<64 - 1, Start: -1, Source: SourceCrawl},
		{Seq: 12345, Start: 1<<63 - 1, Source: SourceJournal},
	} {
		for _, recs := range [][]Record{nil, allRecords()} {
			data := mustEncode(t, h, recs, -1<<63)
			gh, got, tr, err := Decode(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if gh != h || tr.End != -1<<63 || tr.Count != len(recs) {
				t.Fatalf("header %+v trailer %+v", gh, tr)
			}
			if len(got) != len(recs) || len(recs) > 0 && !reflect.DeepEqual(got, recs) {
				t.Fatalf("records differ")
			}
			// Canonical: re-encoding reproduces the bytes.
			if again := mustEncode(t, gh, got, tr.End); !bytes.Equal(again, data) {
				t.Fatalf("re-encoding differs")
			}
		}
	}
}

// TestGolden pins the exact bytes of the format.
func TestGolden(t *testing.T) {
	id := "0102030405060708" + "01000000" + "aabbcc"
	pid := "0102030405060708" + "01000000" + "ddeeff"
	recs := []Record{
		{Type: Entry, Op: OpCreate, ID: "" + fid(id), Parent: fid(pid), Name: "a b%c\n"},
		{Type: Entry, Op: OpRename, ID: fid(id), Parent: fid(pid), Name: "-", NewParent: fid(pid), NewName: "\xff"},
		{Type: Data, ID: fid(id)},
		{Type: Meta, ID: fid(id), Parent: fid(pid), Name: "x"},
		{Type: Gap, From: 10, To: 20},
		{Type: Gap, From: -5, To: 20, Reason: "overflow"},
	}
	body := "GEOREP-CHANGELOG 1 3 100 crawl\n" +
		"E " + id + " CREATE " + pid + " a%20b%25c%0A\n" +
		"E " + id + " RENAME " + pid + " %2D " + pid + " %FF\n" +
		"D " + id + "\n" +
		"M " + id + " " + pid + " x\n" +
		"G 10 20 -\n" +
		"G -5 20 overflow\n"
	want := seal(body, 200, 6)
	got := mustEncode(t, Header{Seq: 3, Start: 100, Source: SourceCrawl}, recs, 200)
	if string(got) != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestEmptyHintRoundTrip(t *testing.T) {
	data := mustEncode(t, Header{Source: SourceJournal}, []Record{{Type: Data, ID: idA}}, 0)
	_, recs, _, err := Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if recs[0].Parent != "" || recs[0].Name != "" {
		t.Fatalf("hint %q %q, want empty", recs[0].Parent, recs[0].Name)
	}
}

func validFile(t testing.TB) []byte {
	return mustEncode(t, Header{Seq: 9, Start: 1000, Source: SourceJournal}, allRecords()[:40], 2000)
}

func checkFails(t *testing.T, data []byte, kind error) error {
	t.Helper()
	var (
		h    Header
		recs []Record
		tr   Trailer
		err  error
	)
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("Decode panicked on %q: %v", data, p)
			}
		}()
		h, recs, tr, err = Decode(bytes.NewReader(data))
	}()
	if err == nil {
		t.Fatalf("Decode succeeded on %q", data)
	}
	if recs != nil || h != (Header{}) || tr != (Trailer{}) {
		t.Fatalf("Decode returned partial results with error %v", err)
	}
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *FormatError", err, err)
	}
	if kind != nil && !errors.Is(err, kind) {
		t.Fatalf("error %v is not %v", err, kind)
	}
	return err
}

func TestTruncatedEveryOffset(t *testing.T) {
	data := validFile(t)
	for n := 0; n < len(data); n++ {
		err := checkFails(t, data[:n], nil)
		// Cutting anywhere before the trailer's end loses the trailer.
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("offset %d: want ErrTruncated, got %v", n, err)
		}
	}
}

func TestFlippedBytes(t *testing.T) {
	data := validFile(t)
	hdrEnd := bytes.IndexByte(data, '\n') + 1
	trStart := bytes.LastIndexByte(data[:len(data)-1], '\n') + 1
	for i := range data {
		for _, mask := range []byte{0x01, 0x20, 0x80} {
			bad := bytes.Clone(data)
			bad[i] ^= mask
			if i >= trStart+len("END ") && i < trStart+len("END 2000") {
				// The window end is not covered by the checksum; a
				// flipped digit there can decode, but only to a
				// different End.
				h, recs, tr, err := Decode(bytes.NewReader(bad))
				if err == nil && (tr.End == 2000 || len(recs) != 40 || h.Seq != 9) {
					t.Fatalf("flip %#x at %d: decoded %+v", mask, i, tr)
				}
				continue
			}
			err := checkFails(t, bad, nil)
			// (The newline before END is excluded: without it there is no
			// trailer line.)
			if i >= hdrEnd && i < trStart-1 && !errors.Is(err, ErrChecksum) {
				t.Fatalf("flip %#x at %d (record area): want checksum error, got %v", mask, i, err)
			}
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	id, pid := string(idA), string(idB)
	rec := func(lines ...string) []byte {
		body := testHeaderLine + strings.Join(lines, "")
		return []byte(seal(body, 2000, len(lines)))
	}
	tests := []struct {
		name string
		data []byte
		kind error
		msg  string
	}{
		{"empty", nil, ErrTruncated, "empty file"},
		{"not a changelog", []byte("hello world\n"), ErrCorrupt, "bad magic"},
		{"bad version", []byte(seal("GEOREP-CHANGELOG 2 7 1000 journal\n", 2000, 0)), ErrVersion, `"2"`},
		{"version 01", []byte(seal("GEOREP-CHANGELOG 01 7 1000 journal\n", 2000, 0)), ErrVersion, ""},
		{"no version", []byte(seal("GEOREP-CHANGELOG\n", 2000, 0)), ErrCorrupt, "no version"},
		{"header extra field", []byte(seal("GEOREP-CHANGELOG 1 7 1000 journal x\n", 2000, 0)), ErrCorrupt, "header"},
		{"header double space", []byte(seal("GEOREP-CHANGELOG 1  7 1000 journal\n", 2000, 0)), ErrCorrupt, "empty field"},
		{"unknown source", []byte(seal("GEOREP-CHANGELOG 1 7 1000 rsync\n", 2000, 0)), ErrCorrupt, "source"},
		{"seq leading zero", []byte(seal("GEOREP-CHANGELOG 1 07 1000 journal\n", 2000, 0)), ErrCorrupt, "sequence"},
		{"seq negative", []byte(seal("GEOREP-CHANGELOG 1 -7 1000 journal\n", 2000, 0)), ErrCorrupt, "sequence"},
		{"start plus", []byte(seal("GEOREP-CHANGELOG 1 7 +1000 journal\n", 2000, 0)), ErrCorrupt, "start"},
		{"start overflow", []byte(seal("GEOREP-CHANGELOG 1 7 9223372036854775808 journal\n", 2000, 0)), ErrCorrupt, "start"},
		{"no trailer", []byte(testHeaderLine), ErrTruncated, "no trailer"},
		{"unknown op", rec("E " + id + " FROB " + pid + " x\n"), ErrCorrupt, "unknown op"},
		{"op NONE", rec("E " + id + " NONE " + pid + " x\n"), ErrCorrupt, "unknown op"},
		{"lower-case op", rec("E " + id + " create " + pid + " x\n"), ErrCorrupt, "unknown op"},
		{"unknown type", rec("X " + id + "\n"), ErrCorrupt, "unknown record type"},
		{"long type", rec("EE " + id + "\n"), ErrCorrupt, "unknown record type"},
		{"empty line", rec("\n"), ErrCorrupt, "line 2"},
		{"name dotdot", rec("E " + id + " CREATE " + pid + " ..\n"), ErrCorrupt, "invalid name"},
		{"name dot", rec("E " + id + " CREATE " + pid + " .\n"), ErrCorrupt, "invalid name"},
		{"name slash", rec("E " + id + " CREATE " + pid + " a/b\n"), ErrCorrupt, "invalid name"},
		{"name escaped slash", rec("E " + id + " CREATE " + pid + " a%2Fb\n"), ErrCorrupt, "escape"},
		{"name NUL", rec("E " + id + " CREATE " + pid + " a%00b\n"), ErrCorrupt, "invalid name"},
		{"name empty", rec("E " + id + " CREATE " + pid + " -\n"), ErrCorrupt, "invalid name"},
		{"name too long", rec("E " + id + " CREATE " + pid + " " + strings.Repeat("y", 256) + "\n"), ErrCorrupt, "invalid name"},
		{"new name slash", rec("E " + id + " RENAME " + pid + " a " + pid + " /\n"), ErrCorrupt, "invalid new name"},
		{"bad escape hex", rec("E " + id + " CREATE " + pid + " a%zzb\n"), ErrCorrupt, "escape"},
		{"lower-case escape", rec("E " + id + " CREATE " + pid + " a%0ab\n"), ErrCorrupt, "escape"},
		{"short escape", rec("E " + id + " CREATE " + pid + " a%2\n"), ErrCorrupt, "escape"},
		{"needless escape", rec("E " + id + " CREATE " + pid + " %41\n"), ErrCorrupt, "non-canonical"},
		{"raw tab", rec("E " + id + " CREATE " + pid + " a\tb\n"), ErrCorrupt, "unescaped"},
		{"raw high byte", rec("E " + id + " CREATE " + pid + " a\xffb\n"), ErrCorrupt, "unescaped"},
		{"raw CR", rec("E " + id + " CREATE " + pid + " ab\r\n"), ErrCorrupt, "unescaped"},
		{"bad id", rec("E xyz CREATE " + pid + " a\n"), ErrCorrupt, "invalid file id"},
		{"upper-case id", rec("E 0102030405060708" + "01000000" + "AABBCC CREATE " + pid + " a\n"), ErrCorrupt, "invalid file id"},
		{"bad parent", rec("E " + id + " CREATE 00 a\n"), ErrCorrupt, "invalid file id"},
		{"extra field", rec("E " + id + " CREATE " + pid + " a b\n"), ErrCorrupt, "want 5 fields"},
		{"rename short", rec("E " + id + " RENAME " + pid + " a\n"), ErrCorrupt, "want 7 fields"},
		{"too many fields", rec("E " + id + " RENAME " + pid + " a " + pid + " b c d e\n"), ErrCorrupt, "too many"},
		{"double space", rec("D  " + id + "\n"), ErrCorrupt, "empty field"},
		{"trailing space", rec("D " + id + " \n"), ErrCorrupt, "empty field"},
		{"D three fields", rec("D " + id + " " + pid + "\n"), ErrCorrupt, "2 or 4"},
		{"D dash hint", rec("D " + id + " - -\n"), ErrCorrupt, "invalid file id"},
		{"M bad hint name", rec("M " + id + " " + pid + " ..\n"), ErrCorrupt, "invalid name"},
		{"G from after to", rec("G 5 4 x\n"), ErrCorrupt, "after"},
		{"G bad number", rec("G 5x 6 x\n"), ErrCorrupt, "from"},
		{"G -0", rec("G -0 6 x\n"), ErrCorrupt, "from"},
		{"G missing reason", rec("G 5 6\n"), ErrCorrupt, "want 4"},
		{"data after trailer", append(rec("D "+id+"\n"), "D "+id+"\n"...), ErrCorrupt, "data after trailer"},
		{"partial data after trailer", append(rec("D "+id+"\n"), 'x'), ErrCorrupt, "data after trailer"},
		{"two trailers", append(rec(), rec()...), ErrCorrupt, "data after trailer"},
		{"count too high", []byte(seal(testHeaderLine+"D "+id+"\n", 2000, 2)), ErrCorrupt, "counts 2"},
		{"count too low", []byte(seal(testHeaderLine+"D "+id+"\n", 2000, 0)), ErrCorrupt, "counts 0"},
		{"count huge", []byte(seal(testHeaderLine+"D "+id+"\n", 2000, 1<<62)), ErrCorrupt, "counts"},
		{"bad checksum", []byte(testHeaderLine + "END 2000 0 00000000\n"), ErrChecksum, "line 2"},
		{"upper-case checksum", []byte(testHeaderLine + "END 2000 0 ABCDEF01\n"), ErrCorrupt, "checksum field"},
		{"short checksum", []byte(testHeaderLine + "END 2000 0 abc\n"), ErrCorrupt, "checksum field"},
		{"trailer extra field", []byte(testHeaderLine + "END 2000 0 00000000 x\n"), ErrCorrupt, "trailer"},
		{"trailer bad count", []byte(testHeaderLine + "END 2000 -1 00000000\n"), ErrCorrupt, "count"},
		{"trailer no newline", []byte(strings.TrimSuffix(seal(testHeaderLine, 2000, 0), "\n")), ErrTruncated, "incomplete"},
		{"CRLF", []byte(strings.ReplaceAll(seal(testHeaderLine, 2000, 0), "\n", "\r\n")), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkFails(t, tt.data, tt.kind)
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
			t.Log(err)
		})
	}
}

func TestErrorNamesLine(t *testing.T) {
	data := []byte(seal(testHeaderLine+"D "+string(idA)+"\n"+"E "+string(idA)+" CREATE "+string(idB)+" ..\n", 1, 2))
	err := checkFails(t, data, ErrCorrupt)
	var fe *FormatError
	errors.As(err, &fe)
	if fe.Line != 3 || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("error %q: line %d, want 3", err, fe.Line)
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	bad := []Record{
		{},
		{Type: 'X', ID: idA},
		{Type: Entry, ID: idA, Parent: idB, Name: "x"}, // no op
		{Type: Entry, Op: Op(99), ID: idA, Parent: idB, Name: "x"},
		{Type: Entry, Op: OpCreate, Parent: idB, Name: "x"},
		{Type: Entry, Op: OpCreate, ID: "ABC", Parent: idB, Name: "x"},
		{Type: Entry, Op: OpCreate, ID: idA, Name: "x"},
		{Type: Entry, Op: OpCreate, ID: idA, Parent: idB, Name: ""},
		{Type: Entry, Op: OpCreate, ID: idA, Parent: idB, Name: ".."},
		{Type: Entry, Op: OpCreate, ID: idA, Parent: idB, Name: "a/b"},
		{Type: Entry, Op: OpCreate, ID: idA, Parent: idB, Name: "a\x00b"},
		{Type: Entry, Op: OpCreate, ID: idA, Parent: idB, Name: strings.Repeat("x", 256)},
		{Type: Entry, Op: OpCreate, ID: idA, Parent: idB, Name: "x", NewName: "y"},
		{Type: Entry, Op: OpCreate, ID: idA, Parent: idB, Name: "x", Reason: "r"},
		{Type: Entry, Op: OpRename, ID: idA, Parent: idB, Name: "x"},
		{Type: Entry, Op: OpRename, ID: idA, Parent: idB, Name: "x", NewParent: idC},
		{Type: Entry, Op: OpRename, ID: idA, Parent: idB, Name: "x", NewParent: idC, NewName: "."},
		{Type: Data},
		{Type: Data, ID: idA, Parent: idB},
		{Type: Data, ID: idA, Name: "x"},
		{Type: Data, ID: idA, Op: OpCreate},
		{Type: Meta, ID: idA, NewParent: idB},
		{Type: Meta, ID: idA, From: 1, To: 2},
		{Type: Gap, From: 2, To: 1},
		{Type: Gap, ID: idA},
		{Type: Gap, Name: "x"},
		{Type: Gap, Op: OpCreate},
	}
	h := Header{Source: SourceJournal}
	for i, r := range bad {
		if err := r.Validate(); err == nil {
			t.Errorf("%d: Validate(%+v) = nil", i, r)
			continue
		}
		var buf bytes.Buffer
		if err := Encode(&buf, h, []Record{{Type: Data, ID: idA}, r}, 0); err == nil {
			t.Errorf("%d: Encode accepted %+v", i, r)
		}
		if buf.Len() != 0 {
			t.Errorf("%d: Encode wrote %d bytes before failing", i, buf.Len())
		}
		w, err := NewWriter(&buf, h)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(r); err == nil {
			t.Errorf("%d: Writer.Write accepted %+v", i, r)
		}
		// An invalid record does not poison the writer.
		if err := w.Write(Record{Type: Data, ID: idA}); err != nil {
			t.Errorf("%d: Write after refused record: %v", i, err)
		}
		if err := w.Close(0); err != nil {
			t.Fatal(err)
		}
		if _, recs, _, err := Decode(&buf); err != nil || len(recs) != 1 {
			t.Errorf("%d: decode after refused record: %v, %d records", i, err, len(recs))
		}
	}
	for _, h := range []Header{{}, {Source: "Journal"}, {Source: "x y"}} {
		if err := Encode(io.Discard, h, nil, 0); err == nil {
			t.Errorf("Encode accepted header %+v", h)
		}
		if _, err := NewWriter(io.Discard, h); err == nil {
			t.Errorf("NewWriter accepted header %+v", h)
		}
	}
}

func TestWriterStreaming(t *testing.T) {
	var buf bytes.Buffer
	h := Header{Seq: 1, Start: 10, Source: SourceJournal}
	w, err := NewWriter(&buf, h)
	if err != nil {
		t.Fatal(err)
	}
	recs := allRecords()
	for i, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
		if w.Count() != i+1 {
			t.Fatalf("Count %d, want %d", w.Count(), i+1)
		}
	}
	// Flushed but unclosed: the underlying file is a truncated changelog.
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if int64(buf.Len()) != w.Size() {
		t.Fatalf("Size %d, buffer %d", w.Size(), buf.Len())
	}
	checkFails(t, buf.Bytes(), ErrTruncated)
	if err := w.Close(99); err != nil {
		t.Fatal(err)
	}
	if int64(buf.Len()) != w.Size() {
		t.Fatalf("Size %d, buffer %d", w.Size(), buf.Len())
	}
	if err := w.Write(recs[0]); err == nil {
		t.Fatal("Write after Close succeeded")
	}
	if err := w.Close(99); err == nil {
		t.Fatal("second Close succeeded")
	}
	if !bytes.Equal(buf.Bytes(), mustEncode(t, h, recs, 99)) {
		t.Fatal("streamed file differs from Encode")
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n < len(p) {
		n := f.n
		f.n = 0
		return n, errors.New("disk full")
	}
	f.n -= len(p)
	return len(p), nil
}

func TestWriterSurfacesWriteErrors(t *testing.T) {
	recs := allRecords()
	full := mustEncode(t, Header{Source: SourceJournal}, recs, 0)
	for _, limit := range []int{0, 10, len(full) / 2, len(full) - 1} {
		if err := Encode(&failWriter{n: limit}, Header{Source: SourceJournal}, recs, 0); err == nil {
			t.Errorf("limit %d: Encode succeeded", limit)
		}
	}
}

func TestWriterErrorIsSticky(t *testing.T) {
	recs := benchRecords(5000) // several bufio buffers
	w, err := NewWriter(&failWriter{n: 100 << 10}, Header{Source: SourceJournal})
	if err != nil {
		t.Fatal(err)
	}
	var failed int
	for failed = range recs {
		if err = w.Write(recs[failed]); err != nil {
			break
		}
	}
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("writes past the limit: %v", err)
	}
	if err := w.Write(recs[0]); err == nil {
		t.Error("Write after a write error succeeded")
	}
	if err := w.Flush(); err == nil {
		t.Error("Flush after a write error succeeded")
	}
	if err := w.Close(1); err == nil {
		t.Error("Close after a write error succeeded")
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("boom") }

func TestDecodeReadError(t *testing.T) {
	if _, recs, _, err := Decode(errReader{}); err == nil || recs != nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("got %v", err)
	}
}

// fid is a string-to-ID shorthand for tests.
func fid(s string) fileid.ID { return fileid.ID(s) }
