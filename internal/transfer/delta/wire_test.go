package delta

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

// validSignature returns a small marshaled signature.
func validSignature(t testing.TB) []byte {
	t.Helper()
	data := randBytes(70, 3000)
	sig, err := ComputeSignatureWith(bytes.NewReader(data), int64(len(data)), SignatureOptions{BlockSize: 256, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	b, err := sig.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sigHeader(bs, sl, size uint64) []byte {
	b := []byte(sigMagic)
	b = binary.AppendUvarint(b, bs)
	b = binary.AppendUvarint(b, sl)
	b = binary.AppendUvarint(b, size)
	return binary.LittleEndian.AppendUint64(b, 1)
}

func TestSignatureUnmarshalHostile(t *testing.T) {
	valid := validSignature(t)
	var s Signature
	if err := s.UnmarshalBinary(valid); err != nil {
		t.Fatalf("valid signature: %v", err)
	}
	// Every truncation fails.
	for i := 0; i < len(valid); i++ {
		var s Signature
		if err := s.UnmarshalBinary(valid[:i]); err == nil {
			t.Fatalf("truncated to %d bytes: no error", i)
		}
	}
	bad := map[string][]byte{
		"nil":              nil,
		"bad magic":        append([]byte("GRSX"), valid[4:]...),
		"trailing byte":    append(append([]byte(nil), valid...), 0),
		"block size 0":     sigHeader(0, 4, 0),
		"block size 8":     sigHeader(8, 4, 0),
		"block size huge":  sigHeader(1<<40, 4, 0),
		"strong len 0":     sigHeader(1024, 0, 0),
		"strong len 17":    sigHeader(1024, 17, 0),
		"absurd blocks":    sigHeader(16, 4, 1<<62),
		"too many blocks":  sigHeader(16, 4, MaxBlocks*16+1),
		"size overflow":    sigHeader(1024, 4, 1<<63),
		"huge size, empty": sigHeader(MaxBlockSize, 16, 1<<45),
		"missing seed":     append([]byte(sigMagic), 0x80, 0x08, 4, 0),
		"non-canonical":    append(append([]byte(sigMagic), 0x80, 0x88, 0x00), valid[6:]...),
		"varint overflow":  append([]byte(sigMagic), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f),
		"varint truncated": append([]byte(sigMagic), 0xff),
		"one block short":  append(sigHeader(16, 4, 17), make([]byte, 8)...),
		"one block extra":  append(sigHeader(16, 4, 16), make([]byte, 16)...),
	}
	for name, b := range bad {
		var s Signature
		s.BlockSize = 123
		if err := s.UnmarshalBinary(b); err == nil {
			t.Errorf("%s: no error", name)
		} else if s.BlockSize != 123 {
			t.Errorf("%s: signature modified on error", name)
		}
	}
	// Empty file: header only.
	if err := s.UnmarshalBinary(sigHeader(700, 4, 0)); err != nil || s.FileSize != 0 || len(s.Weak) != 0 {
		t.Errorf("empty-file signature: %v", err)
	}
	// Marshal refuses an inconsistent signature.
	if _, err := (&Signature{BlockSize: 700, StrongLen: 4, FileSize: 701, Weak: []uint32{1}, Strong: make([]byte, 4)}).MarshalBinary(); err == nil {
		t.Error("inconsistent signature marshaled")
	}
}

// encodeOps encodes ops and the end record.
func encodeOps(t testing.TB, sum [32]byte, ops ...Op) []byte {
	t.Helper()
	var buf bytes.Buffer
	e := NewEncoder(&buf)
	for _, op := range ops {
		if err := e.WriteOp(op); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Close(sum); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func decodeAll(b []byte) ([]Op, [32]byte, error) {
	d := NewDecoder(bytes.NewReader(b))
	var ops []Op
	for {
		op, err := d.Next()
		if err == io.EOF {
			return ops, d.Sum(), nil
		}
		if err != nil {
			return ops, [32]byte{}, err
		}
		if op.Kind == OpLiteral {
			op.Data = append([]byte(nil), op.Data...)
		}
		ops = append(ops, op)
	}
}

func TestEncoderDecoder(t *testing.T) {
	sum := [32]byte{1, 2, 3, 31: 4}
	big := randBytes(71, 2*MaxLiteral+10)
	txt := textBytes(72, 100_000)
	b := encodeOps(t, sum,
		Op{Kind: OpCopy, Block: 5, Count: 2},
		Op{Kind: OpCopy, Block: 7, Count: 3},
		Op{Kind: OpLiteral, Data: []byte("hi")},
		Op{Kind: OpLiteral},                  // dropped
		Op{Kind: OpCopy, Block: 0, Count: 1}, // negative delta
		Op{Kind: OpLiteral, Data: big},       // split
		Op{Kind: OpLiteral, Data: txt},       // compressed
		Op{Kind: OpCopy, Block: MaxBlocks - 1, Count: 1},
	)
	ops, got, err := decodeAll(b)
	if err != nil {
		t.Fatal(err)
	}
	if got != sum {
		t.Fatal("sum mismatch")
	}
	var lit []byte
	var copies []Op
	for _, op := range ops {
		if op.Kind == OpLiteral {
			if len(op.Data) > MaxLiteral {
				t.Fatalf("literal of %d bytes", len(op.Data))
			}
			lit = append(lit, op.Data...)
		} else {
			copies = append(copies, op)
		}
	}
	want := append(append([]byte("hi"), big...), txt...)
	if !bytes.Equal(lit, want) {
		t.Fatal("literal data differs")
	}
	wantCopies := []Op{{Kind: OpCopy, Block: 5, Count: 2}, {Kind: OpCopy, Block: 7, Count: 3}, {Kind: OpCopy, Block: 0, Count: 1}, {Kind: OpCopy, Block: MaxBlocks - 1, Count: 1}}
	if len(copies) != len(wantCopies) {
		t.Fatalf("copies = %+v", copies)
	}
	for i := range copies {
		if copies[i].Block != wantCopies[i].Block || copies[i].Count != wantCopies[i].Count {
			t.Fatalf("copies = %+v, want %+v", copies, wantCopies)
		}
	}
	if len(b) > len(big)+len(txt)/2+200 {
		t.Errorf("stream is %d bytes: text literal not compressed?", len(b))
	}

	// Next after EOF keeps returning EOF.
	d := NewDecoder(bytes.NewReader(encodeOps(t, sum)))
	for i := 0; i < 3; i++ {
		if _, err := d.Next(); err != io.EOF {
			t.Fatalf("Next #%d: %v", i, err)
		}
	}

	// Encoder misuse.
	e := NewEncoder(io.Discard)
	for _, op := range []Op{{Kind: OpCopy, Block: -1, Count: 1}, {Kind: OpCopy, Count: 0}, {Kind: OpCopy, Block: MaxBlocks, Count: 1}, {Kind: 7}} {
		if err := e.WriteOp(op); err == nil {
			t.Errorf("WriteOp(%+v): no error", op)
		}
	}
	if err := e.Close(sum); err != nil {
		t.Fatal(err)
	}
	if err := e.WriteOp(Op{Kind: OpLiteral, Data: []byte("x")}); err == nil {
		t.Error("WriteOp after Close: no error")
	}
	if err := e.Close(sum); err == nil {
		t.Error("second Close: no error")
	}
	boom := errors.New("boom")
	e = NewEncoder(errWriter{boom})
	_ = e.WriteOp(Op{Kind: OpLiteral, Data: big})
	if err := e.Close(sum); !errors.Is(err, boom) {
		t.Errorf("write error: got %v", err)
	}
}

func TestDecoderStopsAtEndRecord(t *testing.T) {
	sum := [32]byte{9}
	stream := encodeOps(t, sum, Op{Kind: OpLiteral, Data: []byte("abc")})
	br := bufio.NewReader(io.MultiReader(bytes.NewReader(stream), strings.NewReader("TRAILER")))
	d := NewDecoder(br)
	for {
		_, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	rest, _ := io.ReadAll(br)
	if string(rest) != "TRAILER" {
		t.Fatalf("decoder consumed data after the end record: rest %q", rest)
	}
}

func TestDecoderHostile(t *testing.T) {
	sum := [32]byte{7}
	valid := encodeOps(t, sum,
		Op{Kind: OpCopy, Block: 3, Count: 4},
		Op{Kind: OpLiteral, Data: []byte("literal")},
		Op{Kind: OpLiteral, Data: textBytes(73, 5000)},
		Op{Kind: OpCopy, Block: 1, Count: 1},
	)
	if _, _, err := decodeAll(valid); err != nil {
		t.Fatalf("valid stream: %v", err)
	}
	// Every truncation is an error, and an unexpected-EOF one.
	for i := 0; i < len(valid); i++ {
		_, _, err := decodeAll(valid[:i])
		if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("truncated to %d bytes: got %v", i, err)
		}
	}
	h := []byte(streamMagic)
	rec := func(b ...byte) []byte { return append(append([]byte(nil), h...), b...) }
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	end := append([]byte{tagEnd}, sum[:]...)
	bad := map[string][]byte{
		"empty":               nil,
		"bad magic":           []byte("GRD2"),
		"unknown tag":         rec(0x04),
		"copy count 0":        cat(rec(tagCopy), uv(0), uv(0), end),
		"copy negative block": cat(rec(tagCopy), uv(1), uv(1), end),
		"copy beyond max":     cat(rec(tagCopy), uv(2*MaxBlocks), uv(1), end),
		"copy count huge":     cat(rec(tagCopy), uv(0), uv(1<<62), end),
		"copy count overflow": cat(rec(tagCopy), uv(2*(MaxBlocks-1)), uv(2), end),
		"copy varint overlong": cat(rec(tagCopy), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
			uv(1), end),
		"copy varint 10th byte": cat(rec(tagCopy), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, uv(1), end),
		"non-canonical varint":  cat(rec(tagCopy), []byte{0x80, 0x00}, uv(1), end),
		"literal 0":             cat(rec(tagLiteral), uv(0), end),
		"literal too long":      cat(rec(tagLiteral), uv(MaxLiteral+1), make([]byte, MaxLiteral+1), end),
		"literal huge":          cat(rec(tagLiteral), uv(1<<60)),
		"literal short":         cat(rec(tagLiteral), uv(10), []byte("abc")),
		"s2 0":                  cat(rec(tagS2), uv(0), end),
		"s2 huge":               cat(rec(tagS2), uv(1<<40)),
		"s2 garbage":            cat(rec(tagS2), uv(5), []byte{0x05, 0xff, 0xff, 0xff, 0xff}, end),
		"s2 decodes to 0":       cat(rec(tagS2), uv(1), []byte{0x00}, end),
		"s2 decodes too long":   cat(rec(tagS2), uv(4), binary.AppendUvarint(nil, MaxLiteral+1), []byte{0, 0}, end),
		"s2 bad length header":  cat(rec(tagS2), uv(6), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, end),
		"end truncated":         rec(tagEnd, 1, 2, 3),
		"no end":                cat(rec(tagCopy), uv(0), uv(1)),
	}
	for name, b := range bad {
		_, _, err := decodeAll(b)
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// Errors are sticky.
	d := NewDecoder(bytes.NewReader(rec(0x04)))
	_, err1 := d.Next()
	_, err2 := d.Next()
	if err1 == nil || err1 != err2 {
		t.Errorf("errors not sticky: %v, %v", err1, err2)
	}
}

func TestDecoderReaderError(t *testing.T) {
	boom := errors.New("boom")
	stream := encodeOps(t, [32]byte{}, Op{Kind: OpLiteral, Data: randBytes(74, 1000)})
	d := NewDecoder(io.MultiReader(bytes.NewReader(stream[:500]), errReader{boom}))
	var err error
	for err == nil {
		_, err = d.Next()
	}
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
}
