// Package protocol owns the versioned, framed protocol between the primary's
// worker and the secondary agent, spoken over any byte stream (an in-process
// pipe for a local secondary, ssh stdio for a remote one). A frame is
//
//	u32 big-endian length | u8 message type | uvarint request id | body
//
// with bodies in a compact binary encoding (uvarints, length-prefixed bytes).
// Decoding is strict and bounded: hostile or corrupt input yields an error,
// never a panic or an unbounded allocation. Requests are pipelined: the
// client sends many requests before reading replies, which carry the id of
// the request they answer.
package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Version is the protocol version; both sides must speak the same major.
const Version = 4

// MaxFrame bounds a frame's size (32 MiB).
const MaxFrame = 32 << 20

// ErrMalformed reports an undecodable frame.
var ErrMalformed = errors.New("malformed protocol message")

// Enc appends encoded values to a buffer.
type Enc struct{ B []byte }

// Uvarint appends an unsigned varint.
func (e *Enc) Uvarint(v uint64) { e.B = binary.AppendUvarint(e.B, v) }

// Varint appends a signed varint.
func (e *Enc) Varint(v int64) { e.B = binary.AppendVarint(e.B, v) }

// Bool appends a boolean.
func (e *Enc) Bool(v bool) {
	if v {
		e.B = append(e.B, 1)
	} else {
		e.B = append(e.B, 0)
	}
}

// Bytes appends a length-prefixed byte slice.
func (e *Enc) Bytes(b []byte) { e.Uvarint(uint64(len(b))); e.B = append(e.B, b...) }

// String appends a length-prefixed string.
func (e *Enc) String(s string) { e.Uvarint(uint64(len(s))); e.B = append(e.B, s...) }

// Dec reads encoded values; the first error sticks and later reads return
// zero values.
type Dec struct {
	B   []byte
	Err error
}

func (d *Dec) fail(what string) {
	if d.Err == nil {
		d.Err = fmt.Errorf("%w: bad %s", ErrMalformed, what)
	}
}

// Uvarint reads an unsigned varint.
func (d *Dec) Uvarint() uint64 {
	if d.Err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.B)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.B = d.B[n:]
	return v
}

// Varint reads a signed varint.
func (d *Dec) Varint() int64 {
	if d.Err != nil {
		return 0
	}
	v, n := binary.Varint(d.B)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.B = d.B[n:]
	return v
}

// Uint32 reads a uvarint that must fit 32 bits.
func (d *Dec) Uint32() uint32 {
	v := d.Uvarint()
	if v > math.MaxUint32 {
		d.fail("uint32")
		return 0
	}
	return uint32(v)
}

// Len reads a count that must not exceed max nor the bytes left (each item
// takes at least minSize bytes), so a hostile count cannot force a huge
// allocation.
func (d *Dec) Len(max, minSize int) int {
	v := d.Uvarint()
	if d.Err != nil {
		return 0
	}
	if minSize < 1 {
		minSize = 1
	}
	if v > uint64(max) || v*uint64(minSize) > uint64(len(d.B)) {
		d.fail("count")
		return 0
	}
	return int(v)
}

// Bool reads a boolean.
func (d *Dec) Bool() bool {
	if d.Err != nil {
		return false
	}
	if len(d.B) < 1 || d.B[0] > 1 {
		d.fail("bool")
		return false
	}
	v := d.B[0] == 1
	d.B = d.B[1:]
	return v
}

// Bytes reads a length-prefixed byte slice (a copy).
func (d *Dec) Bytes() []byte {
	n := d.Uvarint()
	if d.Err != nil {
		return nil
	}
	if n > uint64(len(d.B)) {
		d.fail("byte length")
		return nil
	}
	b := make([]byte, n)
	copy(b, d.B[:n])
	d.B = d.B[n:]
	return b
}

// String reads a length-prefixed string.
func (d *Dec) String() string {
	n := d.Uvarint()
	if d.Err != nil {
		return ""
	}
	if n > uint64(len(d.B)) {
		d.fail("string length")
		return ""
	}
	s := string(d.B[:n])
	d.B = d.B[n:]
	return s
}

// Done checks that the whole body was consumed.
func (d *Dec) Done() error {
	if d.Err == nil && len(d.B) != 0 {
		d.fail("trailing bytes")
	}
	return d.Err
}

// Frame is one raw message.
type Frame struct {
	Type  Type
	ReqID uint64
	Body  []byte
}

// WriteFrame writes one frame.
func WriteFrame(w io.Writer, t Type, reqID uint64, body []byte) error {
	var hdr [4 + 1 + binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[5:], reqID)
	total := 1 + n + len(body)
	if total > MaxFrame {
		return fmt.Errorf("protocol: frame of %d bytes exceeds the %d limit", total, MaxFrame)
	}
	binary.BigEndian.PutUint32(hdr[:4], uint32(total))
	hdr[4] = byte(t)
	if len(body) < 64<<10 {
		buf := make([]byte, 0, 5+n+len(body))
		buf = append(buf, hdr[:5+n]...)
		buf = append(buf, body...)
		_, err := w.Write(buf)
		return err
	}
	if _, err := w.Write(hdr[:5+n]); err != nil {
		return err
	}
	_, err := w.Write(body)
	return err
}

// ReadFrame reads one frame.
func ReadFrame(r io.Reader) (Frame, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Frame{}, err
	}
	total := binary.BigEndian.Uint32(hdr[:4])
	if total < 2 || total > MaxFrame {
		return Frame{}, fmt.Errorf("%w: frame length %d", ErrMalformed, total)
	}
	buf := make([]byte, total-1)
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	id, n := binary.Uvarint(buf)
	if n <= 0 {
		return Frame{}, fmt.Errorf("%w: request id", ErrMalformed)
	}
	return Frame{Type: Type(hdr[4]), ReqID: id, Body: buf[n:]}, nil
}
