package changelog

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"

	"github.com/georep/georep/internal/fileid"
)

// testID makes a deterministic, valid file ID.
func testID(n uint64) fileid.ID {
	var h [8]byte
	binary.LittleEndian.PutUint64(h[:], n)
	return fileid.Make(fileid.FSID{1, 2, 3, 4, 5, 6, 7, 8}, 1, h[:])
}

var (
	idA = testID(1)
	idB = testID(2)
	idC = testID(3)
	idD = testID(4)
)

// awkwardNames are valid names that stress the escaping.
var awkwardNames = []string{
	"plain",
	"with space",
	"new\nline",
	"tab\there",
	"\xff\xfe-not-utf8",
	strings.Repeat("x", 255),
	strings.Repeat("\n", 255),
	"percent%20sign",
	"%",
	"%%",
	"%2D",
	"back\\slash",
	"-",
	"--",
	"-leading-dash",
	"trailing-",
	"unicode-ünïcødé-日本語-🙂",
	"quote\"s'",
	"cr\r",
	"\x01\x1f\x7f\x80",
	"END",
	"END 1 2 3",
	"E",
	"...",
	".hidden",
	" ",
	"a b c",
	"=+,;:~!@#$^&*()[]{}<>?|`",
}

// allRecords has every record type and op with awkward names.
func allRecords() []Record {
	var recs []Record
	ops := []Op{OpCreate, OpMkdir, OpMknod, OpSymlink, OpLink, OpUnlink, OpRmdir}
	for i, name := range awkwardNames {
		op := ops[i%len(ops)]
		recs = append(recs,
			Record{Type: Entry, Op: op, ID: idA, Parent: idB, Name: name},
			Record{Type: Entry, Op: OpRename, ID: idA, Parent: idB, Name: name, NewParent: idC, NewName: awkwardNames[(i+1)%len(awkwardNames)]},
			Record{Type: Data, ID: idD, Parent: idB, Name: name},
			Record{Type: Meta, ID: idD, Parent: idB, Name: name},
			Record{Type: Gap, From: int64(i), To: int64(i) + 1e9, Reason: name},
		)
	}
	recs = append(recs,
		Record{Type: Data, ID: idA},
		Record{Type: Meta, ID: idA},
		Record{Type: Gap, From: 5, To: 5, Reason: ""},
		Record{Type: Gap, From: -10, To: 0, Reason: "-"},
		Record{Type: Gap, From: -1 << 63, To: 1<<63 - 1, Reason: "overflow: queue full"},
	)
	return recs
}

// seal appends a correct trailer to text (header and record lines).
func seal(text string, end int64, count int) string {
	crc := crc32.Checksum([]byte(text), castagnoli)
	return fmt.Sprintf("%sEND %d %d %08x\n", text, end, count, crc)
}

const testHeaderLine = "GEOREP-CHANGELOG 1 7 1000 journal\n"

func mustEncode(t testing.TB, h Header, recs []Record, end int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Encode(&buf, h, recs, end); err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return buf.Bytes()
}
