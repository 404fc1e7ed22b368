package protocol

import (
	"fmt"
	"slices"
	"sync"

	"github.com/georep/georep/internal/tree"
	"github.com/klauspost/compress/zstd"
)

// Bulk data messages (types 40-49).
//
//	PutFiles    ->  PutFilesOK     many small files whole, one reply per batch
//	Compressed  ->  (the reply of the message it wraps)
//
// One frame and one reply per small file made the ssh stream, both
// processes and the scheduler pay per file; a batch carries hundreds.
const (
	TPutFiles   Type = 40
	TPutFilesOK Type = 41
	TCompressed Type = 42
)

func init() {
	Register(TPutFiles, func() Message { return &PutFiles{} })
	Register(TPutFilesOK, func() Message { return &PutFilesOK{} })
	Register(TCompressed, func() Message { return &Compressed{} })
}

// FileItem is one whole file of a PutFiles batch.
type FileItem struct {
	Mode   FileMode
	Entry  *tree.Entry // kind, meta, size of the primary's file
	Slots  []tree.Slot // FileNew: where to link it; FileReplace: a hint where it is
	Xattrs []Xattr     // the file's synced xattrs, exactly
	Data   []byte      // the content; shorter than Entry.Size only for a zero tail
}

// PutFiles carries several whole files. Each is installed on its own: a
// failure is reported by index in PutFilesOK and does not stop the others.
// The body is the items one after the other, up to the end of the frame:
//
//	mode | entry | slots | xattrs | data
//
// where slots is a count plus one and the slots, or 0 for the common
// "linked at Entry.Slot only" (that slot is not sent twice).
type PutFiles struct {
	Files []FileItem
	body  []byte // pre-encoded items (FilesBuilder)
}

func (*PutFiles) Type() Type { return TPutFiles }

func (m *PutFiles) Encode(e *Enc) {
	if m.body != nil {
		e.B = append(e.B, m.body...)
		return
	}
	for i := range m.Files {
		it := &m.Files[i]
		encFileHead(e, it.Mode, it.Entry, it.Slots, it.Xattrs)
		e.Bytes(it.Data)
	}
}

// Decode reads the items; Data aliases the frame (no copy: the frame buffer
// is the receiver's own).
func (m *PutFiles) Decode(d *Dec) {
	for d.Err == nil && len(d.B) > 0 {
		if len(m.Files) >= maxItems {
			d.fail("file count")
			return
		}
		var it FileItem
		it.Mode = FileMode(d.Uvarint())
		if it.Mode != FileNew && it.Mode != FileReplace {
			d.fail("file mode")
			return
		}
		it.Entry = decEntry(d)
		if d.Err != nil {
			return
		}
		if len(d.B) > 0 && d.B[0] == 0 {
			d.B = d.B[1:]
			it.Slots = []tree.Slot{it.Entry.Slot}
		} else if n := d.Len(maxItems+1, 2); n > 0 {
			it.Slots = make([]tree.Slot, n-1)
			for i := range it.Slots {
				it.Slots[i] = decSlot(d)
			}
		}
		it.Xattrs = decXattrs(d)
		it.Data = d.bytesRef()
		m.Files = append(m.Files, it)
	}
}

func encFileHead(e *Enc, mode FileMode, x *tree.Entry, slots []tree.Slot, xs []Xattr) {
	e.Uvarint(uint64(mode))
	encEntry(e, x)
	if len(slots) == 1 && slots[0] == x.Slot {
		e.Uvarint(0)
	} else {
		e.Uvarint(uint64(len(slots)) + 1)
		for _, s := range slots {
			encSlot(e, s)
		}
	}
	encXattrs(e, xs)
}

// bytesRef reads a length-prefixed byte slice without copying it.
func (d *Dec) bytesRef() []byte {
	n := d.Uvarint()
	if d.Err != nil {
		return nil
	}
	if n > uint64(len(d.B)) {
		d.fail("byte length")
		return nil
	}
	b := d.B[:n:n]
	d.B = d.B[n:]
	return b
}

// FilesBuilder encodes a PutFiles batch item by item, reading each file's
// content straight into the message buffer.
type FilesBuilder struct {
	e     Enc
	n     int
	bytes int64
}

// Len is the number of files added; Bytes their content bytes; Size the
// encoded size so far.
func (b *FilesBuilder) Len() int     { return b.n }
func (b *FilesBuilder) Bytes() int64 { return b.bytes }
func (b *FilesBuilder) Size() int    { return len(b.e.B) }

// Grow makes room for n more encoded bytes.
func (b *FilesBuilder) Grow(n int) { b.e.B = slices.Grow(b.e.B, n) }

// Reset empties the builder, keeping its buffer.
func (b *FilesBuilder) Reset() { b.e.B, b.n, b.bytes = b.e.B[:0], 0, 0 }

// Add appends one file of size bytes whose content fill reads into the
// buffer it is given, returning how many bytes it read. When fill reads
// fewer (the file shrank meanwhile), x.Size is set to what was read. On a
// fill error nothing is added.
func (b *FilesBuilder) Add(mode FileMode, x *tree.Entry, slots []tree.Slot, xs []Xattr, size int, fill func([]byte) (int, error)) error {
	start := len(b.e.B)
	encFileHead(&b.e, mode, x, slots, xs)
	b.e.Uvarint(uint64(size))
	off := len(b.e.B)
	b.e.B = slices.Grow(b.e.B, size)[:off+size]
	got, err := fill(b.e.B[off:])
	if err != nil {
		b.e.B = b.e.B[:start]
		return err
	}
	if got != size {
		data := append([]byte(nil), b.e.B[off:off+got]...)
		b.e.B = b.e.B[:start]
		x.Size = int64(got)
		encFileHead(&b.e, mode, x, slots, xs)
		b.e.Bytes(data)
	}
	b.n++
	b.bytes += int64(got)
	return nil
}

// preEncoded is a message that holds its encoded body already: Conn.Send
// writes that (before its next change) instead of encoding a copy.
type preEncoded interface{ encodedBody() []byte }

func encodeBody(m Message) []byte {
	if p, ok := m.(preEncoded); ok {
		if b := p.encodedBody(); b != nil {
			return b
		}
	}
	return Encode(m)
}

func (m *PutFiles) encodedBody() []byte { return m.body }

// Message returns the batch as a message. It shares the builder's buffer:
// send it (Conn.Send encodes at once) before the next Reset or Add.
func (b *FilesBuilder) Message() *PutFiles { return &PutFiles{body: b.e.B[:len(b.e.B):len(b.e.B)]} }

// PutFilesOK answers a PutFiles: the files that failed (by index) and the
// bytes written.
type PutFilesOK struct {
	Errors []OpError
	Bytes  int64
}

func (*PutFilesOK) Type() Type      { return TPutFilesOK }
func (m *PutFilesOK) Encode(e *Enc) { e.Varint(m.Bytes); encErrs(e, m.Errors) }
func (m *PutFilesOK) Decode(d *Dec) { m.Bytes = d.Varint(); m.Errors = decErrs(d) }

// Compressed wraps another message whose body is zstd-compressed; the
// receiver handles the inner message as if it had come alone, and replies
// to it. Only the request side uses it, for bulk data. A body zstd cannot
// shrink by a few percent (random or already compressed data) is stored
// as is, so that the receiver does not spend time on it.
//
//	inner type | raw size | method (0 stored, 1 zstd) | body to the end
type Compressed struct {
	Inner Message
	Level zstd.EncoderLevel // sender side; 0 = zstd.SpeedFastest
	Raw   int               // encoded size of the inner body (set by Encode and Decode)
}

func (*Compressed) Type() Type { return TCompressed }

func (m *Compressed) Encode(e *Enc) {
	raw := Encode(m.Inner)
	m.Raw = len(raw)
	e.Uvarint(uint64(m.Inner.Type()))
	e.Uvarint(uint64(len(raw)))
	at := len(e.B)
	e.B = append(e.B, 1)
	e.B = encoder(m.Level).EncodeAll(raw, e.B)
	if len(e.B)-at-1 >= len(raw)-len(raw)/32 {
		e.B = append(e.B[:at], 0)
		e.B = append(e.B, raw...)
	}
}

func (m *Compressed) Decode(d *Dec) {
	t := d.Uvarint()
	raw := d.Uvarint()
	if d.Err != nil {
		return
	}
	if t == uint64(TCompressed) || t > 255 {
		d.fail("compressed message type")
		return
	}
	if raw > MaxFrame {
		d.fail("compressed size")
		return
	}
	inner, err := New(Type(t))
	if err != nil {
		d.Err = err
		return
	}
	if len(d.B) == 0 || d.B[0] > 1 {
		d.fail("compression method")
		return
	}
	body := d.B[1:]
	if d.B[0] == 1 {
		body, err = decoder().DecodeAll(body, make([]byte, 0, raw))
		if err != nil {
			d.fail("compressed body")
			return
		}
	}
	if uint64(len(body)) != raw {
		d.fail("compressed size")
		return
	}
	d.B = nil
	id := &Dec{B: body}
	inner.Decode(id)
	if err := id.Done(); err != nil {
		d.Err = fmt.Errorf("compressed %T: %w", inner, err)
		return
	}
	m.Inner, m.Raw = inner, int(raw)
}

var (
	encMu    sync.Mutex
	encoders = map[zstd.EncoderLevel]*zstd.Encoder{}
	decOnce  sync.Once
	dec      *zstd.Decoder
)

// encoder returns a shared encoder (EncodeAll is safe for concurrent use).
func encoder(l zstd.EncoderLevel) *zstd.Encoder {
	if l == 0 {
		l = zstd.SpeedFastest
	}
	encMu.Lock()
	defer encMu.Unlock()
	enc := encoders[l]
	if enc == nil {
		var err error
		enc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(l), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false))
		if err != nil {
			panic(err) // only bad options fail
		}
		encoders[l] = enc
	}
	return enc
}

func decoder() *zstd.Decoder {
	decOnce.Do(func() {
		var err error
		dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(MaxFrame),
			zstd.WithDecodeAllCapLimit(true), zstd.WithDecoderLowmem(true))
		if err != nil {
			panic(err)
		}
	})
	return dec
}

// ParseCompression reads a compression setting: "" or "none", "zstd"
// (fastest level), or "zstd:N" with N from 1 (fastest) to 4 (best).
func ParseCompression(s string) (on bool, level zstd.EncoderLevel, err error) {
	switch s {
	case "", "none", "off":
		return false, 0, nil
	case "zstd":
		return true, zstd.SpeedFastest, nil
	}
	var n int
	if _, err := fmt.Sscanf(s, "zstd:%d", &n); err == nil && n >= 1 && n <= 4 {
		return true, zstd.EncoderLevel(n), nil
	}
	return false, 0, fmt.Errorf("compression %q: want none, zstd or zstd:1..4", s)
}
