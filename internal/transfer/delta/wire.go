package delta

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/s2"
)

const (
	streamMagic = "GRD1"

	tagEnd     = 0x00
	tagCopy    = 0x01
	tagLiteral = 0x02
	tagS2      = 0x03

	// minCompress is the smallest literal chunk worth trying to compress.
	minCompress = 64
)

// maxS2Len bounds the size of one compressed literal record.
var maxS2Len = s2.MaxEncodedLen(MaxLiteral)

var errClosed = errors.New("delta: encoder closed")

// Encoder writes an op stream (see the package documentation) to an
// io.Writer. It writes each op as given (ComputeDelta already merges
// copies), splits literals into chunks of at most MaxLiteral bytes and
// compresses the compressible ones. Output is buffered, but the buffer is
// flushed after every copy of flushCopyBlocks blocks or more, so that a
// receiver streaming the ops can start on them at once. Close writes the end
// record and flushes; it does not close the underlying writer.
type Encoder struct {
	w       *bufio.Writer
	err     error
	started bool
	closed  bool
	next    int64 // block following the last copy record
	cbuf    []byte
	written int64
	tmp     [1 + 2*binary.MaxVarintLen64]byte
}

// flushCopyBlocks is the copy size after which the Encoder flushes.
const flushCopyBlocks = 64

// NewEncoder returns an Encoder writing to w.
func NewEncoder(w io.Writer) *Encoder {
	return &Encoder{w: bufio.NewWriterSize(w, 32<<10)}
}

// Written returns the number of bytes the encoder has produced so far
// (including bytes still buffered until Close).
func (e *Encoder) Written() int64 { return e.written }

func (e *Encoder) write(b []byte) {
	if e.err != nil {
		return
	}
	_, e.err = e.w.Write(b)
	e.written += int64(len(b))
}

func (e *Encoder) start() {
	if !e.started {
		e.started = true
		e.write([]byte(streamMagic))
	}
}

// WriteOp appends one op to the stream. Literal data is copied or written
// before WriteOp returns.
func (e *Encoder) WriteOp(op Op) error {
	if e.closed {
		return errClosed
	}
	if e.err != nil {
		return e.err
	}
	e.start()
	switch op.Kind {
	case OpCopy:
		if op.Block < 0 || op.Count < 1 || op.Block >= MaxBlocks || op.Count > MaxBlocks-op.Block {
			return fmt.Errorf("delta: invalid copy op (block %d, count %d)", op.Block, op.Count)
		}
		b := e.tmp[:0]
		b = append(b, tagCopy)
		d := op.Block - e.next
		b = binary.AppendUvarint(b, uint64(d<<1)^uint64(d>>63))
		b = binary.AppendUvarint(b, uint64(op.Count))
		e.write(b)
		e.next = op.Block + op.Count
		if op.Count >= flushCopyBlocks && e.err == nil {
			e.err = e.w.Flush()
		}
	case OpLiteral:
		for d := op.Data; len(d) > 0 && e.err == nil; {
			k := min(len(d), MaxLiteral)
			e.literal(d[:k])
			d = d[k:]
		}
	default:
		return fmt.Errorf("delta: invalid op kind %d", op.Kind)
	}
	return e.err
}

func (e *Encoder) literal(d []byte) {
	if len(d) >= minCompress {
		if need := s2.MaxEncodedLen(len(d)); cap(e.cbuf) < need {
			e.cbuf = make([]byte, need)
		}
		c := s2.Encode(e.cbuf, d)
		if len(c) <= len(d)-len(d)/32 {
			b := append(e.tmp[:0], tagS2)
			e.write(binary.AppendUvarint(b, uint64(len(c))))
			e.write(c)
			return
		}
	}
	b := append(e.tmp[:0], tagLiteral)
	e.write(binary.AppendUvarint(b, uint64(len(d))))
	e.write(d)
}

// Close writes the end record carrying sum (the whole-file check of the new file) and
// flushes the buffered output.
func (e *Encoder) Close(sum [32]byte) error {
	if e.closed {
		return errClosed
	}
	if e.err != nil {
		return e.err
	}
	e.start()
	e.write([]byte{tagEnd})
	e.write(sum[:])
	e.closed = true
	if e.err == nil {
		e.err = e.w.Flush()
	}
	return e.err
}

// byteReader is what the Decoder reads from.
type byteReader interface {
	io.Reader
	io.ByteReader
}

// Decoder reads an op stream written by an Encoder. It is strict: any
// malformed, truncated or out-of-range record is an error (never a panic),
// and it allocates at most a few hundred KiB whatever its input. If r is not
// an io.ByteReader it is wrapped in a bufio.Reader, which may read past the
// end record; pass a *bufio.Reader to read further data after the stream.
type Decoder struct {
	r     byteReader
	state int // 0: before header, 1: records, 2: done
	err   error
	sum   [32]byte
	next  int64
	buf   []byte
	cbuf  []byte
}

// NewDecoder returns a Decoder reading from r.
func NewDecoder(r io.Reader) *Decoder {
	br, ok := r.(byteReader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	return &Decoder{r: br}
}

// Sum returns the whole-file check of the new file carried by the end record. It is
// valid once Next has returned io.EOF.
func (d *Decoder) Sum() [32]byte { return d.sum }

// Next returns the next op. It returns io.EOF after the end record; any
// other error is sticky. The Data of a literal op is valid until the next
// call.
func (d *Decoder) Next() (Op, error) {
	if d.err != nil {
		return Op{}, d.err
	}
	op, err := d.next1()
	if err != nil {
		if err != io.EOF {
			if errors.Is(err, io.EOF) || err == io.ErrUnexpectedEOF {
				err = io.ErrUnexpectedEOF
			}
			err = fmt.Errorf("delta: op stream: %w", err)
		}
		d.err = err
	}
	return op, err
}

func (d *Decoder) next1() (Op, error) {
	switch d.state {
	case 2:
		return Op{}, io.EOF
	case 0:
		var m [len(streamMagic)]byte
		if _, err := io.ReadFull(d.r, m[:]); err != nil {
			return Op{}, noEOF(err)
		}
		if string(m[:]) != streamMagic {
			return Op{}, errors.New("bad magic")
		}
		d.state = 1
	}
	tag, err := d.r.ReadByte()
	if err != nil {
		return Op{}, noEOF(err)
	}
	switch tag {
	case tagEnd:
		if _, err := io.ReadFull(d.r, d.sum[:]); err != nil {
			return Op{}, noEOF(err)
		}
		d.state = 2
		return Op{}, io.EOF
	case tagCopy:
		z, err := d.uvarint()
		if err != nil {
			return Op{}, err
		}
		delta := int64(z>>1) ^ -int64(z&1)
		count, err := d.uvarint()
		if err != nil {
			return Op{}, err
		}
		if delta < -d.next || delta >= MaxBlocks-d.next {
			return Op{}, fmt.Errorf("copy block out of range")
		}
		block := d.next + delta
		if count < 1 || count > uint64(MaxBlocks-block) {
			return Op{}, fmt.Errorf("copy count %d out of range", count)
		}
		d.next = block + int64(count)
		return Op{Kind: OpCopy, Block: block, Count: int64(count)}, nil
	case tagLiteral:
		n, err := d.uvarint()
		if err != nil {
			return Op{}, err
		}
		if n < 1 || n > MaxLiteral {
			return Op{}, fmt.Errorf("literal length %d out of range", n)
		}
		buf := d.grow(&d.buf, int(n))
		if _, err := io.ReadFull(d.r, buf); err != nil {
			return Op{}, noEOF(err)
		}
		return Op{Kind: OpLiteral, Data: buf}, nil
	case tagS2:
		n, err := d.uvarint()
		if err != nil {
			return Op{}, err
		}
		if n < 1 || n > uint64(maxS2Len) {
			return Op{}, fmt.Errorf("compressed literal length %d out of range", n)
		}
		c := d.grow(&d.cbuf, int(n))
		if _, err := io.ReadFull(d.r, c); err != nil {
			return Op{}, noEOF(err)
		}
		dl, err := s2.DecodedLen(c)
		if err != nil {
			return Op{}, fmt.Errorf("compressed literal: %w", err)
		}
		if dl < 1 || dl > MaxLiteral {
			return Op{}, fmt.Errorf("compressed literal decodes to %d bytes", dl)
		}
		buf := d.grow(&d.buf, dl)
		out, err := s2.Decode(buf, c)
		if err != nil {
			return Op{}, fmt.Errorf("compressed literal: %w", err)
		}
		if len(out) != dl || &out[0] != &buf[0] {
			return Op{}, errors.New("compressed literal: bad length")
		}
		return Op{Kind: OpLiteral, Data: out[:dl:dl]}, nil
	}
	return Op{}, fmt.Errorf("unknown record tag %#x", tag)
}

// grow returns (*b)[:n], reallocating *b if it is too small. Callers bound
// n (at most maxS2Len) before calling.
func (d *Decoder) grow(b *[]byte, n int) []byte {
	if cap(*b) < n {
		*b = make([]byte, max(n, min(2*cap(*b), maxS2Len)))
	}
	return (*b)[:n:n]
}

// uvarint reads a canonical unsigned varint.
func (d *Decoder) uvarint() (uint64, error) {
	var x uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		c, err := d.r.ReadByte()
		if err != nil {
			return 0, noEOF(err)
		}
		if i == binary.MaxVarintLen64-1 && c > 1 {
			return 0, errVarint
		}
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if i > 0 && c == 0 {
				return 0, errNonCanon
			}
			return x, nil
		}
	}
	return 0, errVarint
}

// noEOF turns io.EOF inside a record into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
