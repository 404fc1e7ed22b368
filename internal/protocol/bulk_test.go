package protocol

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/tree"
	"github.com/klauspost/compress/zstd"
)

func bulkEntry(n byte, size int64) *tree.Entry {
	dir := fileid.Make(fileid.FSID{1}, 1, []byte{9, 9, 9, 9})
	id := fileid.Make(fileid.FSID{1}, 1, []byte{1, 2, 3, n})
	return &tree.Entry{Slot: tree.Slot{Parent: dir, Name: "f" + string('a'+n)}, ID: id, Kind: tree.KindRegular, Size: size, Meta: tree.Meta{Mode: 0o644, Mtime: 42}}
}

func decodeFrame(t *testing.T, m Message) Message {
	t.Helper()
	var b bytes.Buffer
	if err := WriteFrame(&b, m.Type(), 3, Encode(m)); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFrame(&b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestFilesBuilder(t *testing.T) {
	var b FilesBuilder
	e0, e1, e2 := bulkEntry(0, 5), bulkEntry(1, 10), bulkEntry(2, 0)
	other := tree.Slot{Parent: e1.Slot.Parent, Name: "hardlink"}
	xs := []Xattr{{Name: "user.a", Value: []byte("v")}}
	add := func(mode FileMode, e *tree.Entry, slots []tree.Slot, xs []Xattr, content string, size int) {
		t.Helper()
		err := b.Add(mode, e, slots, xs, size, func(p []byte) (int, error) { return copy(p, content), nil })
		if err != nil {
			t.Fatal(err)
		}
	}
	add(FileNew, e0, []tree.Slot{e0.Slot}, nil, "hello", 5)
	add(FileNew, e1, []tree.Slot{e1.Slot, other}, xs, "short", 10) // shrank while read
	add(FileReplace, e2, []tree.Slot{e2.Slot}, nil, "", 0)
	if err := b.Add(FileNew, bulkEntry(3, 4), nil, nil, 4, func([]byte) (int, error) { return 0, errors.New("EIO") }); err == nil {
		t.Fatal("a fill error must be returned")
	}
	if b.Len() != 3 || b.Bytes() != 10 {
		t.Fatalf("builder counts %d files %d bytes, want 3 and 10", b.Len(), b.Bytes())
	}
	if e1.Size != 5 {
		t.Fatalf("a shrunk file's entry says %d bytes, want 5", e1.Size)
	}
	for _, m := range []Message{b.Message(), &Compressed{Inner: b.Message()}} {
		got := decodeFrame(t, m)
		if z, ok := got.(*Compressed); ok {
			got = z.Inner
		}
		pf, ok := got.(*PutFiles)
		if !ok || len(pf.Files) != 3 {
			t.Fatalf("decoded %T with %v", got, pf)
		}
		f0, f1, f2 := pf.Files[0], pf.Files[1], pf.Files[2]
		if string(f0.Data) != "hello" || f0.Mode != FileNew || len(f0.Slots) != 1 || f0.Slots[0] != e0.Slot || f0.Entry.ID != e0.ID {
			t.Fatalf("file 0: %+v", f0)
		}
		if string(f1.Data) != "short" || f1.Entry.Size != 5 || len(f1.Slots) != 2 || f1.Slots[1] != other || len(f1.Xattrs) != 1 {
			t.Fatalf("file 1: %+v", f1)
		}
		if len(f2.Data) != 0 || f2.Mode != FileReplace {
			t.Fatalf("file 2: %+v", f2)
		}
		if !bytes.Equal(Encode(pf), Encode(b.Message())) {
			t.Fatal("PutFiles does not re-encode to the same bytes")
		}
	}
	b.Reset()
	if b.Len() != 0 || len(encodeBody(b.Message())) != 0 {
		t.Fatal("Reset leaves content")
	}
}

func TestCompressedShrinksAndRefusesNesting(t *testing.T) {
	e := bulkEntry(0, 1<<20)
	var b FilesBuilder
	b.Add(FileNew, e, []tree.Slot{e.Slot}, nil, 1<<20, func(p []byte) (int, error) { return len(p), nil }) // zeros
	z := &Compressed{Inner: b.Message()}
	if enc := Encode(z); len(enc) > 1<<14 {
		t.Fatalf("a MiB of zeros compressed to %d bytes", len(enc))
	}
	nested := Encode(&Compressed{Inner: z})
	if _, err := Decode(Frame{Type: TCompressed, Body: nested}); err == nil {
		t.Fatal("a compressed message inside a compressed message must be refused")
	}
	// A body claiming a size it does not have.
	body := Encode(z)
	body[1]++ // the raw size (second uvarint) is off by one
	if _, err := Decode(Frame{Type: TCompressed, Body: body}); err == nil {
		t.Fatal("a wrong decompressed size must be refused")
	}
	// Random bytes are stored, not compressed, and still arrive.
	rnd := make([]byte, 1<<16)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range rnd {
		rnd[i] = byte(r.Uint32())
	}
	b.Reset()
	b.Add(FileNew, e, []tree.Slot{e.Slot}, nil, len(rnd), func(p []byte) (int, error) { return copy(p, rnd), nil })
	stored := &Compressed{Inner: b.Message()}
	if enc := Encode(stored); enc[len(enc)-len(Encode(b.Message()))-1] != 0 {
		t.Fatal("random data was not stored as is")
	}
	got := decodeFrame(t, stored).(*Compressed).Inner.(*PutFiles)
	if !bytes.Equal(got.Files[0].Data, rnd) {
		t.Fatal("stored body does not round-trip")
	}
	for _, bad := range [][]byte{{}, {byte(TPutFiles)}, {byte(TPutFiles), 200, 200, 200, 200, 200, 1}, {byte(TPutFiles), 4, 1, 2, 3}, {byte(TPutFiles), 3, 2, 1, 2, 3}, {byte(TPutFiles), 3, 0, 1, 2}} {
		if _, err := Decode(Frame{Type: TCompressed, Body: bad}); err == nil {
			t.Fatalf("malformed compressed body %v decoded", bad)
		}
	}
}

// TestCompressPreEncoded: Compress encodes once, at the given level; the
// message writes that body as is, decodes to the inner message, and
// stores what does not shrink (Wire then exceeds the raw size by the
// header only).
func TestCompressPreEncoded(t *testing.T) {
	e := bulkEntry(0, 1<<16)
	text := bytes.Repeat([]byte("func (m *Compressed) Encode(e *Enc) { e.B = append(e.B, m.body...) }\n"), 1000)
	rnd := make([]byte, 1<<16)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range rnd {
		rnd[i] = byte(r.Uint32())
	}
	for _, c := range []struct {
		data   []byte
		level  zstd.EncoderLevel
		shrink bool
	}{{text, zstd.SpeedFastest, true}, {text, zstd.SpeedBetterCompression, true}, {rnd, zstd.SpeedDefault, false}} {
		var b FilesBuilder
		b.Add(FileNew, e, []tree.Slot{e.Slot}, nil, len(c.data), func(p []byte) (int, error) { return copy(p, c.data), nil })
		m := b.Message()
		raw := Body(m)
		z := Compress(m, raw, c.level)
		if z.Raw != len(raw) || z.Wire() != len(Encode(z)) {
			t.Fatalf("level %v: Raw %d Wire %d, encoded %d (raw %d)", c.level, z.Raw, z.Wire(), len(Encode(z)), len(raw))
		}
		if shrunk := z.Wire() < len(raw)/2; shrunk != c.shrink {
			t.Fatalf("level %v: %d bytes became %d", c.level, len(raw), z.Wire())
		}
		if !c.shrink && z.Wire() > len(raw)+16 {
			t.Fatalf("stored body %d bytes for %d", z.Wire(), len(raw))
		}
		got := decodeFrame(t, z).(*Compressed).Inner.(*PutFiles)
		if !bytes.Equal(got.Files[0].Data, c.data) {
			t.Fatalf("level %v: content does not round-trip", c.level)
		}
	}
}

func TestPutFilesRejectsBadItems(t *testing.T) {
	e := bulkEntry(0, 3)
	good := Encode(&PutFiles{Files: []FileItem{{Mode: FileNew, Entry: e, Slots: []tree.Slot{e.Slot}, Data: []byte("abc")}}})
	if _, err := Decode(Frame{Type: TPutFiles, Body: good}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(good); i++ {
		if _, err := Decode(Frame{Type: TPutFiles, Body: good[:i]}); err == nil {
			t.Fatalf("a batch cut at %d of %d bytes decoded", i, len(good))
		}
	}
	bad := Encode(&PutFiles{Files: []FileItem{{Mode: 9, Entry: e, Slots: []tree.Slot{e.Slot}, Data: []byte("abc")}}})
	if _, err := Decode(Frame{Type: TPutFiles, Body: bad}); err == nil {
		t.Fatal("a bad file mode decoded")
	}
	// Data the headers do not account for, or headers claiming more.
	for _, d := range []int{-1, 1} {
		var h Enc
		encFileHead(&h, FileNew, e, []tree.Slot{e.Slot}, nil)
		h.Uvarint(uint64(3 + d))
		body := appendHeaders([]byte("abc"), h.B)
		if _, err := Decode(Frame{Type: TPutFiles, Body: body}); err == nil {
			t.Fatalf("data length off by %d decoded", d)
		}
	}
}

func TestFileChunkAndFramePool(t *testing.T) {
	var cb ChunkBuilder
	var pool FramePool
	var wire bytes.Buffer
	content := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: a pooled frame
	for i, n := range []int{len(content), 100, 0} {
		c, err := cb.Chunk(7, int64(i)<<20, n == 0, n, func(p []byte) (int, error) { return copy(p, content), nil })
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteFrame(&wire, c.Type(), uint64(i+1), encodeBody(c)); err != nil {
			t.Fatal(err)
		}
	}
	c, err := cb.Chunk(7, 0, false, 10, func(p []byte) (int, error) { return 4, errors.New("EIO") })
	if err == nil || len(c.Data) != 4 {
		t.Fatalf("a failed read gives %d bytes and %v; want 4 and the error", len(c.Data), err)
	}
	for i, want := range []int{len(content), 100, 0} {
		f, buf, err := pool.ReadFrame(&wire)
		if err != nil {
			t.Fatal(err)
		}
		if (buf != nil) != (f.ReqID == 1) {
			t.Fatalf("frame %d: pooled %v", f.ReqID, buf != nil)
		}
		m, err := Decode(f)
		if err != nil {
			t.Fatal(err)
		}
		fc := m.(*FileChunk)
		if fc.Stream != 7 || fc.Offset != int64(i)<<20 || fc.Last != (want == 0) || !bytes.Equal(fc.Data, content[:want]) {
			t.Fatalf("chunk %d: stream %d offset %d last %v, %d bytes", i, fc.Stream, fc.Offset, fc.Last, len(fc.Data))
		}
		if !bytes.Equal(Encode(fc), f.Body) {
			t.Fatalf("chunk %d does not re-encode to its frame", i)
		}
		pool.Release(buf)
	}
	// Cut frames are errors, not short reads.
	var one bytes.Buffer
	c, _ = cb.Chunk(1, 0, true, 3, func(p []byte) (int, error) { return copy(p, "abc"), nil })
	WriteFrame(&one, c.Type(), 1, encodeBody(c))
	for cut := 1; cut < one.Len(); cut++ {
		if _, _, err := pool.ReadFrame(bytes.NewReader(one.Bytes()[:cut])); err == nil {
			t.Fatalf("a frame cut at %d of %d bytes was read", cut, one.Len())
		}
	}
}
