package delta

import (
	"errors"
	"fmt"
	"io"
)

// ErrChecksumMismatch reports that a reconstructed file's whole-file check (XXH3-128) differs
// from the primary's: the old file changed since its signature was taken, or
// a checksum collision happened. Fall back to a whole-file transfer.
var ErrChecksumMismatch = errors.New("delta: reconstructed file checksum mismatch")

const (
	patchBuffers = 4
	patchBuffer  = 256 << 10
)

// Patch rebuilds the new file into out from the old file and the ops
// returned by ops (until it returns io.EOF; Decoder.Next fits). Only
// sig.BlockSize and sig.FileSize are used, so a Signature carrying just
// those two fields is enough. Every op is checked against them: a copy of a
// block outside the old file is an error. Patch returns the whole-file check of what
// it wrote, to be compared with the primary's sum (see PatchFrom).
func Patch(old io.ReaderAt, sig *Signature, ops func() (Op, error), out io.Writer) (sum [32]byte, err error) {
	if sig == nil {
		return sum, errors.New("delta: nil signature")
	}
	bs := int64(sig.BlockSize)
	if bs < MinBlockSize || bs > MaxBlockSize || sig.FileSize < 0 {
		return sum, fmt.Errorf("delta: invalid signature parameters (block size %d, file size %d)", bs, sig.FileSize)
	}
	n := numBlocks(sig.FileSize, int(bs))
	if n > MaxBlocks {
		return sum, fmt.Errorf("delta: %d blocks exceed the limit of %d", n, MaxBlocks)
	}

	p := newPipe(out)
	defer p.close()
	for {
		op, err := ops()
		if err == io.EOF {
			break
		}
		if err != nil {
			return sum, err
		}
		switch op.Kind {
		case OpCopy:
			if op.Block < 0 || op.Count < 1 || op.Block >= n || op.Count > n-op.Block {
				return sum, fmt.Errorf("delta: copy of blocks [%d, +%d) outside the old file's %d blocks", op.Block, op.Count, n)
			}
			off := op.Block * bs
			end := min((op.Block+op.Count)*bs, sig.FileSize)
			if err := p.copyFrom(old, off, end-off); err != nil {
				return sum, err
			}
		case OpLiteral:
			if err := p.append(op.Data); err != nil {
				return sum, err
			}
		default:
			return sum, fmt.Errorf("delta: invalid op kind %d", op.Kind)
		}
	}
	if err := p.flush(); err != nil {
		return sum, err
	}
	return p.sum(), nil
}

// PatchFrom runs Patch with the ops of d and checks the result against the
// checksum of d's end record, returning ErrChecksumMismatch if they differ.
func PatchFrom(old io.ReaderAt, sig *Signature, d *Decoder, out io.Writer) error {
	sum, err := Patch(old, sig, d.Next, out)
	if err != nil {
		return err
	}
	if sum != d.Sum() {
		return ErrChecksumMismatch
	}
	return nil
}

// pipe batches output into buffers, writes them to out and hashes them in a
// second goroutine, so hashing overlaps the reads and writes.
type pipe struct {
	out   io.Writer
	cur   *[]byte
	todo  chan *[]byte
	free  chan *[]byte
	done  chan [32]byte
	nbufs int
	shut  bool
}

func newPipe(out io.Writer) *pipe {
	p := &pipe{
		out:  out,
		todo: make(chan *[]byte, patchBuffers),
		free: make(chan *[]byte, patchBuffers),
		done: make(chan [32]byte, 1),
	}
	go func() {
		h := newFileHash()
		for bp := range p.todo {
			hashWrite(h, *bp)
			p.free <- bp
		}
		p.done <- fileSum(h)
	}()
	return p
}

func (p *pipe) buffer() []byte {
	if p.cur == nil {
		select {
		case p.cur = <-p.free:
		default:
			if p.nbufs < patchBuffers {
				// Start small: most files are.
				if p.nbufs == 0 {
					p.cur = smallPool.Get().(*[]byte)
				} else {
					p.cur = patchPool.Get().(*[]byte)
				}
				p.nbufs++
			} else {
				p.cur = <-p.free
			}
		}
		*p.cur = (*p.cur)[:0]
	}
	return *p.cur
}

func (p *pipe) flush() error {
	if p.cur == nil || len(*p.cur) == 0 {
		return nil
	}
	if _, err := p.out.Write(*p.cur); err != nil {
		return err
	}
	p.todo <- p.cur
	p.cur = nil
	return nil
}

func (p *pipe) append(d []byte) error {
	for len(d) > 0 {
		b := p.buffer()
		k := copy(b[len(b):cap(b)], d)
		*p.cur = b[:len(b)+k]
		d = d[k:]
		if len(*p.cur) == cap(*p.cur) {
			if err := p.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *pipe) copyFrom(old io.ReaderAt, off, length int64) error {
	for length > 0 {
		b := p.buffer()
		k := int(min(int64(cap(b)-len(b)), length))
		m, err := old.ReadAt(b[len(b):len(b)+k], off)
		if m < k {
			if err == nil || err == io.EOF {
				err = errShortOld
			}
			return err
		}
		*p.cur = b[:len(b)+k]
		off += int64(k)
		length -= int64(k)
		if len(*p.cur) == cap(*p.cur) {
			if err := p.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// sum waits for the hasher and returns the whole-file check of everything flushed.
func (p *pipe) sum() [32]byte {
	p.shut = true
	close(p.todo)
	return <-p.done
}

// close stops the hasher (if sum was not called) and recycles buffers.
func (p *pipe) close() {
	if !p.shut {
		p.shut = true
		close(p.todo)
		<-p.done
	}
	if p.cur != nil {
		putBuf(p.cur)
		p.cur = nil
	}
	for {
		select {
		case bp := <-p.free:
			putBuf(bp)
		default:
			return
		}
	}
}
