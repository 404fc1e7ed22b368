package changelog

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// fuzzSeeds are valid files and near misses; more live in
// testdata/fuzz/FuzzDecode.
func fuzzSeeds(t testing.TB) [][]byte {
	small := []Record{
		{Type: Entry, Op: OpCreate, ID: idA, Parent: idB, Name: "a b"},
		{Type: Entry, Op: OpRename, ID: idA, Parent: idB, Name: "a b", NewParent: idC, NewName: "-"},
		{Type: Data, ID: idA},
		{Type: Meta, ID: idA, Parent: idB, Name: "%\n"},
		{Type: Gap, From: 1, To: 2},
	}
	valid := mustEncode(t, Header{Seq: 1, Start: 2, Source: SourceJournal}, small, 3)
	return [][]byte{
		valid,
		mustEncode(t, Header{Seq: 0, Start: 0, Source: SourceCrawl}, nil, 0),
		valid[:len(valid)-1],
		append(bytes.Clone(valid), valid...),
		bytes.Replace(valid, []byte("CREATE"), []byte("CREATF"), 1),
		[]byte(seal("GEOREP-CHANGELOG 1 1 2 journal\nE "+string(idA)+" CREATE "+string(idB)+" ..\n", 3, 1)),
	}
}

// FuzzDecode feeds arbitrary bytes to Decode. Run it with a short
// -fuzzminimizetime (e.g. 2s): minimizing a new input of a few KB can take
// the default 60s, during which the fuzzer reports no executions.
func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(checkDecodeRoundTrip)
}

// FuzzDecodeSealed is FuzzDecode with a correct trailer (count and CRC)
// appended to the input, so mutations reach the header and record parsers
// instead of stopping at the checksum.
func FuzzDecodeSealed(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		if i := bytes.LastIndex(s, []byte("\nEND ")); i >= 0 {
			s = s[:i+1]
		}
		f.Add(s, int64(3))
	}
	f.Fuzz(func(t *testing.T, body []byte, end int64) {
		n := bytes.Count(body, []byte{'\n'}) - 1
		if n < 0 {
			n = 0
		}
		checkDecodeRoundTrip(t, []byte(seal(string(body), end, n)))
	})
}

// checkDecodeRoundTrip asserts that Decode does not panic, fails cleanly,
// and that whatever it accepts re-encodes to the same bytes.
func checkDecodeRoundTrip(t *testing.T, data []byte) {
	h, recs, tr, err := Decode(bytes.NewReader(data))
	if err != nil {
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Fatalf("error is not a *FormatError: %v", err)
		}
		if recs != nil || h != (Header{}) || tr != (Trailer{}) {
			t.Fatalf("partial result with error %v", err)
		}
		return
	}
	if tr.Count != len(recs) {
		t.Fatalf("trailer count %d, %d records", tr.Count, len(recs))
	}
	var buf bytes.Buffer
	if err := Encode(&buf, h, recs, tr.End); err != nil {
		t.Fatalf("re-encoding a decoded file: %v", err)
	}
	// The decoder accepts only canonical files, so the bytes come back.
	if !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("re-encoding differs:\n%q\n%q", data, buf.Bytes())
	}
	h2, recs2, tr2, err := Decode(&buf)
	if err != nil {
		t.Fatalf("decoding re-encoded file: %v", err)
	}
	if h2 != h || tr2 != tr || !reflect.DeepEqual(recs2, recs) {
		t.Fatalf("second decode differs")
	}
}

func FuzzEscape(f *testing.F) {
	for _, s := range awkwardNames {
		f.Add(s)
	}
	for _, s := range []string{"", "-", "%2D", "%41", "%0a", "%", "a%2", "%FF", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		esc := EscapeName(s)
		if esc == "" {
			t.Fatalf("EscapeName(%q) is empty", s)
		}
		for i := 0; i < len(esc); i++ {
			if c := esc[i]; c <= 0x20 || c >= 0x7f {
				t.Fatalf("EscapeName(%q) = %q has byte %#x", s, esc, c)
			}
		}
		if got := string(appendEscaped(nil, s)); got != esc {
			t.Fatalf("appendEscaped(%q) = %q, EscapeName = %q", s, got, esc)
		}
		back, err := UnescapeName(esc)
		if err != nil || back != s {
			t.Fatalf("UnescapeName(EscapeName(%q)) = %q, %v", s, back, err)
		}
		// Any accepted input is the canonical encoding of its result.
		u, err := UnescapeName(s)
		if err == nil && EscapeName(u) != s {
			t.Fatalf("UnescapeName(%q) = %q, which escapes to %q", s, u, EscapeName(u))
		}
	})
}

// TestFuzzDecodeCorpus checks that the committed seeds are what their names
// say: "valid-*" files decode, the near misses do not.
func TestFuzzDecodeCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) < 5 {
		t.Fatalf("only %d seeds in %s", len(ents), dir)
	}
	for _, e := range ents {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitN(strings.TrimSuffix(string(raw), "\n"), "\n", 2)
		if len(lines) != 2 || lines[0] != "go test fuzz v1" ||
			!strings.HasPrefix(lines[1], "[]byte(") || !strings.HasSuffix(lines[1], ")") {
			t.Fatalf("%s: not a go fuzz corpus file", e.Name())
		}
		data, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		_, _, _, err = Decode(strings.NewReader(data))
		if valid := strings.HasPrefix(e.Name(), "valid-"); valid != (err == nil) {
			t.Errorf("%s: Decode error = %v", e.Name(), err)
		}
	}
}
