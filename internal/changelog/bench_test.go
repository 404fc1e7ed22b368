package changelog

import (
	"bytes"
	"fmt"
	"testing"
)

// benchRecords is a journal-like mix: mostly entry ops and data/meta
// changes in a thousand directories, with ordinary and a few awkward names.
func benchRecords(n int) []Record {
	recs := make([]Record, 0, n)
	for i := 0; i < n; i++ {
		id := testID(uint64(1_000_000 + i))
		parent := testID(uint64(i % 1000))
		name := fmt.Sprintf("file-%07d.dat", i)
		if i%50 == 0 {
			name = fmt.Sprintf("with space %d\n%%", i)
		}
		switch i % 8 {
		case 0, 1:
			recs = append(recs, Record{Type: Entry, Op: OpCreate, ID: id, Parent: parent, Name: name})
		case 2, 3, 4:
			recs = append(recs, Record{Type: Data, ID: id, Parent: parent, Name: name})
		case 5:
			recs = append(recs, Record{Type: Meta, ID: id})
		case 6:
			recs = append(recs, Record{Type: Entry, Op: OpRename, ID: id, Parent: parent, Name: name, NewParent: testID(uint64(i % 997)), NewName: name + ".new"})
		case 7:
			recs = append(recs, Record{Type: Entry, Op: OpUnlink, ID: id, Parent: parent, Name: name})
		}
	}
	return recs
}

func BenchmarkDecode100k(b *testing.B) {
	const n = 100_000
	data := mustEncode(b, Header{Seq: 1, Start: 1, Source: SourceJournal}, benchRecords(n), 2)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		_, recs, _, err := Decode(bytes.NewReader(data))
		if err != nil || len(recs) != n {
			b.Fatalf("%v, %d records", err, len(recs))
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkWriter100k(b *testing.B) {
	const n = 100_000
	recs := benchRecords(n)
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		w, err := NewWriter(&buf, Header{Seq: 1, Start: 1, Source: SourceJournal})
		if err != nil {
			b.Fatal(err)
		}
		for i := range recs {
			if err := w.Write(recs[i]); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(2); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(buf.Len()))
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
