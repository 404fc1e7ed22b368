package protocol

import (
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"

	"github.com/georep/georep/internal/tree"
	"github.com/klauspost/compress/zstd"
)

// Bulk data messages (types 40-49).
//
//	PutFiles    ->  PutFilesOK     many small files whole, one reply per batch
//	FileChunk   ->  (PutFileOK after the last)  a large file's content after its PutFile
//	Compressed  ->  (the reply of the message it wraps)
//
// One frame and one reply per small file made the ssh stream, both
// processes and the scheduler pay per file; a batch carries hundreds.
const (
	TPutFiles   Type = 40
	TPutFilesOK Type = 41
	TCompressed Type = 42
	TFileChunk  Type = 43
)

func init() {
	Register(TPutFiles, func() Message { return &PutFiles{} })
	Register(TPutFilesOK, func() Message { return &PutFilesOK{} })
	Register(TCompressed, func() Message { return &Compressed{} })
	Register(TFileChunk, func() Message { return &FileChunk{} })
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
// The body holds the files' contents back to back, then their headers,
// then a 9-byte trailer:
//
//	data 0 | data 1 | ... | headers | method | raw headers size (u32) | headers size (u32)
//
// Headers are, per file, mode | entry | slots | xattrs | data length;
// slots is a count plus one and the slots, or 0 for the common "linked at
// Entry.Slot only". Method 1 means the headers are zstd-compressed (IDs and
// names repeat from file to file: about a fifth of their size), 0 that
// they are stored. The contents come first so that files are read straight
// into the message buffer; the headers, built aside, are appended last.
type PutFiles struct {
	Files []FileItem
	body  []byte // pre-encoded (FilesBuilder)
}

const putFilesTrailer = 9

func (*PutFiles) Type() Type { return TPutFiles }

func (m *PutFiles) Encode(e *Enc) {
	if m.body != nil {
		e.B = append(e.B, m.body...)
		return
	}
	if len(m.Files) == 0 {
		return
	}
	var h Enc
	for i := range m.Files {
		it := &m.Files[i]
		e.B = append(e.B, it.Data...)
		encFileHead(&h, it.Mode, it.Entry, it.Slots, it.Xattrs)
		h.Uvarint(uint64(len(it.Data)))
	}
	e.B = appendHeaders(e.B, h.B)
}

// appendHeaders appends a PutFiles body's headers and trailer.
func appendHeaders(b, h []byte) []byte {
	at := len(b)
	method := byte(1)
	b = encoder(0).EncodeAll(h, b)
	if len(b)-at >= len(h) {
		b, method = append(b[:at], h...), 0
	}
	n := len(b) - at
	b = append(b, method)
	b = binary.BigEndian.AppendUint32(b, uint32(len(h)))
	return binary.BigEndian.AppendUint32(b, uint32(n))
}

// Decode reads the items; Data aliases the frame (no copy: the frame buffer
// is the receiver's own).
func (m *PutFiles) Decode(d *Dec) {
	b := d.B
	if len(b) == 0 {
		return // no files
	}
	if len(b) < putFilesTrailer {
		d.fail("files trailer")
		return
	}
	t := b[len(b)-putFilesTrailer:]
	method, raw, n := t[0], binary.BigEndian.Uint32(t[1:5]), binary.BigEndian.Uint32(t[5:9])
	if method > 1 || uint64(n) > uint64(len(b)-putFilesTrailer) || raw > MaxFrame || (method == 0 && raw != n) {
		d.fail("files trailer")
		return
	}
	data, hb := b[:len(b)-putFilesTrailer-int(n)], b[len(b)-putFilesTrailer-int(n):len(b)-putFilesTrailer]
	d.B = nil
	if method == 1 {
		var err error
		if hb, err = decoder().DecodeAll(hb, make([]byte, 0, raw)); err != nil || len(hb) != int(raw) {
			d.fail("files headers")
			return
		}
	}
	h := &Dec{B: hb}
	for h.Err == nil && len(h.B) > 0 {
		if len(m.Files) >= maxItems {
			h.fail("file count")
			break
		}
		var it FileItem
		it.Mode = FileMode(h.Uvarint())
		if it.Mode != FileNew && it.Mode != FileReplace {
			h.fail("file mode")
			break
		}
		it.Entry = decEntry(h)
		if h.Err != nil {
			break
		}
		if len(h.B) > 0 && h.B[0] == 0 {
			h.B = h.B[1:]
			it.Slots = []tree.Slot{it.Entry.Slot}
		} else if k := h.Len(maxItems+1, 2); k > 0 {
			it.Slots = make([]tree.Slot, k-1)
			for i := range it.Slots {
				it.Slots[i] = decSlot(h)
			}
		}
		it.Xattrs = decXattrs(h)
		size := h.Uvarint()
		if h.Err == nil && size > uint64(len(data)) {
			h.fail("file data length")
		}
		if h.Err != nil {
			break
		}
		it.Data, data = data[:size:size], data[size:]
		m.Files = append(m.Files, it)
	}
	if h.Err == nil && len(data) > 0 {
		h.fail("data beyond the files")
	}
	d.Err = h.Err
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

// FilesBuilder encodes a PutFiles batch file by file, reading each file's
// content straight into the message buffer.
type FilesBuilder struct {
	e     Enc // the contents; Message appends headers and trailer
	h     Enc // the headers
	data  int // length of the contents in e
	n     int
	bytes int64
}

// Len is the number of files added; Bytes their content bytes.
func (b *FilesBuilder) Len() int     { return b.n }
func (b *FilesBuilder) Bytes() int64 { return b.bytes }

// Grow makes room for n more content bytes.
func (b *FilesBuilder) Grow(n int) { b.e.B = slices.Grow(b.e.B[:b.data], n) }

// Reset empties the builder, keeping its buffers.
func (b *FilesBuilder) Reset() {
	b.e.B, b.h.B, b.data, b.n, b.bytes = b.e.B[:0], b.h.B[:0], 0, 0, 0
}

// Add appends one file of size bytes whose content fill reads into the
// buffer it is given, returning how many bytes it read. When fill reads
// fewer (the file shrank meanwhile), x.Size is set to what was read. On a
// fill error nothing is added.
func (b *FilesBuilder) Add(mode FileMode, x *tree.Entry, slots []tree.Slot, xs []Xattr, size int, fill func([]byte) (int, error)) error {
	off := b.data
	b.e.B = slices.Grow(b.e.B[:off], size)[:off+size]
	got, err := fill(b.e.B[off:])
	if err != nil {
		b.e.B = b.e.B[:off]
		return err
	}
	if got != size {
		x.Size = int64(got)
	}
	b.data = off + got
	b.e.B = b.e.B[:b.data]
	encFileHead(&b.h, mode, x, slots, xs)
	b.h.Uvarint(uint64(got))
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
func (b *FilesBuilder) Message() *PutFiles {
	if b.n == 0 {
		return &PutFiles{}
	}
	b.e.B = appendHeaders(b.e.B[:b.data], b.h.B)
	return &PutFiles{body: b.e.B[:len(b.e.B):len(b.e.B)]}
}

// PutFilesOK answers a PutFiles: the files that failed (by index) and the
// bytes written.
type PutFilesOK struct {
	Errors []OpError
	Bytes  int64
}

func (*PutFilesOK) Type() Type      { return TPutFilesOK }
func (m *PutFilesOK) Encode(e *Enc) { e.Varint(m.Bytes); encErrs(e, m.Errors) }
func (m *PutFilesOK) Decode(d *Dec) { m.Bytes = d.Varint(); m.Errors = decErrs(d) }

// FileChunk carries a piece of a file streamed after its first frame (a
// PutFile with the entry and no data) in the same Stream; the last chunk
// (Last, possibly empty) is answered like the PutFile stream's last frame.
// The data runs to the end of the frame:
//
//	stream | offset | last | data
//
// Chunks are built straight from the file into a reused buffer
// (ChunkBuilder) and decoded without copying the data.
type FileChunk struct {
	Stream uint64
	Offset int64
	Last   bool
	Data   []byte
	body   []byte // pre-encoded (ChunkBuilder)
}

func (*FileChunk) Type() Type { return TFileChunk }

func (m *FileChunk) Encode(e *Enc) {
	if m.body != nil {
		e.B = append(e.B, m.body...)
		return
	}
	e.Uvarint(m.Stream)
	e.Varint(m.Offset)
	e.Bool(m.Last)
	e.B = append(e.B, m.Data...)
}

func (m *FileChunk) Decode(d *Dec) {
	m.Stream = d.Uvarint()
	m.Offset = d.Varint()
	m.Last = d.Bool()
	if d.Err == nil {
		m.Data, d.B = d.B, nil
	}
}

func (m *FileChunk) encodedBody() []byte { return m.body }

// ChunkBuilder makes FileChunks in one reused buffer.
type ChunkBuilder struct{ e Enc }

// Chunk returns a chunk of at most n bytes that fill reads into the buffer
// it is given; it shares the builder's buffer (send it before the next
// Chunk). On an error the chunk holds what fill read before it.
func (c *ChunkBuilder) Chunk(stream uint64, off int64, last bool, n int, fill func([]byte) (int, error)) (*FileChunk, error) {
	c.e.B = c.e.B[:0]
	c.e.Uvarint(stream)
	c.e.Varint(off)
	c.e.Bool(last)
	hdr := len(c.e.B)
	c.e.B = slices.Grow(c.e.B, n)[:hdr+n]
	var got int
	var err error
	if n > 0 {
		got, err = fill(c.e.B[hdr:])
	}
	c.e.B = c.e.B[:hdr+got]
	return &FileChunk{Stream: stream, Offset: off, Last: last, Data: c.e.B[hdr:], body: c.e.B}, err
}

// FramePool reads frames into reused buffers: large frames (bulk data)
// are otherwise the agent's main allocation, zeroed and collected each
// time. A pooled frame's buffer goes back with Release once nothing refers
// to the frame's body.
type FramePool struct{ p sync.Pool }

// Pooled frames: at least poolMin bytes, buffers of at least poolSize (a
// large file's chunk, the common size).
const (
	poolMin  = 64 << 10
	poolSize = 1<<20 + 64
)

// ReadFrame reads one frame as the package's ReadFrame does; buf is the
// pooled buffer holding it (nil when not pooled), for Release.
func (fp *FramePool) ReadFrame(r io.Reader) (f Frame, buf *[]byte, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Frame{}, nil, err
	}
	total := binary.BigEndian.Uint32(hdr[:4])
	if total < 2 || total > MaxFrame {
		return Frame{}, nil, fmt.Errorf("%w: frame length %d", ErrMalformed, total)
	}
	n := int(total - 1)
	var b []byte
	if n >= poolMin {
		buf, _ = fp.p.Get().(*[]byte)
		if buf == nil || cap(*buf) < n {
			nb := make([]byte, max(n, poolSize))
			buf = &nb
		}
		b = (*buf)[:n]
	} else {
		b = make([]byte, n)
	}
	if _, err := io.ReadFull(r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, nil, err
	}
	id, k := binary.Uvarint(b)
	if k <= 0 {
		return Frame{}, nil, fmt.Errorf("%w: request id", ErrMalformed)
	}
	return Frame{Type: Type(hdr[4]), ReqID: id, Body: b[k:]}, buf, nil
}

// Release hands a pooled frame buffer back (nil is ignored).
func (fp *FramePool) Release(buf *[]byte) {
	if buf != nil {
		fp.p.Put(buf)
	}
}

// Compressed wraps another message whose body is zstd-compressed; the
// receiver handles the inner message as if it had come alone, and replies
// to it. Requests use it for bulk data, entry operations and metadata, the
// agent for the chunks of its listing. A body zstd cannot
// shrink by a few percent (random or already compressed data) is stored
// as is, so that the receiver does not spend time on it.
//
//	inner type | raw size | method (0 stored, 1 zstd) | body to the end
type Compressed struct {
	Inner Message
	Level zstd.EncoderLevel // sender side; 0 = zstd.SpeedFastest
	Raw   int               // encoded size of the inner body (set by Encode and Decode)
	body  []byte            // pre-encoded (Compress)
}

func (*Compressed) Type() Type { return TCompressed }

func (m *Compressed) Encode(e *Enc) {
	if m.body != nil {
		e.B = append(e.B, m.body...)
		return
	}
	raw := encodeBody(m.Inner)
	m.Raw = len(raw)
	e.B = appendCompressed(e.B, m.Inner.Type(), raw, m.Level)
}

func (m *Compressed) encodedBody() []byte { return m.body }

// appendCompressed appends a Compressed body wrapping raw, an encoded
// body of type t.
func appendCompressed(b []byte, t Type, raw []byte, l zstd.EncoderLevel) []byte {
	b = binary.AppendUvarint(b, uint64(t))
	b = binary.AppendUvarint(b, uint64(len(raw)))
	at := len(b)
	b = append(b, 1)
	b = encoder(l).EncodeAll(raw, b)
	if len(b)-at-1 >= len(raw)-len(raw)/32 {
		b = append(b[:at], 0)
		b = append(b, raw...)
	}
	return b
}

// Compress wraps m compressed at level l, encoding it now: the result
// holds its body (Send writes it without encoding again), and Wire is its
// size. raw is m's encoded body (Body). A body zstd cannot shrink by 1/32
// is stored.
func Compress(m Message, raw []byte, l zstd.EncoderLevel) *Compressed {
	b := appendCompressed(make([]byte, 0, len(raw)/2+64), m.Type(), raw, l)
	return &Compressed{Inner: m, Level: l, Raw: len(raw), body: b}
}

// Wire is the size of a Compressed message's encoded body (0 unless it
// was made by Compress).
func (m *Compressed) Wire() int { return len(m.body) }

// Body returns m's encoded body: the one it holds when pre-encoded (no
// copy), else a fresh encoding.
func Body(m Message) []byte { return encodeBody(m) }

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

// encoder returns a shared encoder. EncodeAll is safe for concurrent use
// but runs on one of the encoder's states at a time: with one state the
// senders would compress one after the other, so it has one per CPU.
func encoder(l zstd.EncoderLevel) *zstd.Encoder {
	if l == 0 {
		l = zstd.SpeedFastest
	}
	encMu.Lock()
	defer encMu.Unlock()
	enc := encoders[l]
	if enc == nil {
		var err error
		enc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(l), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithEncoderCRC(false))
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
