package delta

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
)

// Limits shared by the signature, the op stream and Patch.
const (
	// MinBlockSize and MaxBlockSize bound Signature.BlockSize. BlockSizeFor
	// returns at least 700 and at most 128 KiB for files up to 8 TiB.
	MinBlockSize = 16
	MaxBlockSize = 1 << 20
	// MaxBlocks bounds the number of blocks of a signature (and the block
	// indexes of an op stream).
	MaxBlocks = 1 << 26
	// MinStrongLen and MaxStrongLen bound Signature.StrongLen.
	MinStrongLen = 2
	MaxStrongLen = 16
	// MaxLiteral is the largest literal chunk in an op stream.
	MaxLiteral = 256 << 10
)

const (
	rsyncMinBlock = 700
	rsyncMaxBlock = 128 << 10
	sigMagic      = "GRS1"
)

// Signature is the block-checksum summary of the old file.
//
// Block i covers bytes [i*BlockSize, min((i+1)*BlockSize, FileSize)) of the
// old file; there are ceil(FileSize/BlockSize) blocks, the last possibly
// short. Weak[i] is the weak rolling checksum of block i and
// Strong[i*StrongLen:(i+1)*StrongLen] its strong checksum. Seed keys both
// checksums. A Signature is read-only once built.
type Signature struct {
	BlockSize int
	StrongLen int
	FileSize  int64
	Seed      uint64
	Weak      []uint32
	Strong    []byte // StrongLen bytes per block, concatenated
}

// NumBlocks returns ceil(FileSize/BlockSize).
func (s *Signature) NumBlocks() int64 { return numBlocks(s.FileSize, s.BlockSize) }

func numBlocks(size int64, bs int) int64 {
	if size <= 0 || bs <= 0 {
		return 0
	}
	return ceilDiv(size, int64(bs))
}

// ceilDiv returns ceil(a/b) for a >= 0, b > 0, without overflow.
func ceilDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 {
		q++
	}
	return q
}

// BlockSizeFor returns the block size used for a file of the given size:
// rsync's rule (floor(sqrt(size)) rounded down to a multiple of 8, at least
// 700 bytes and at most 128 KiB), raised for files over 8 TiB so that the
// block count stays within MaxBlocks.
func BlockSizeFor(size int64) int {
	var bs int64
	switch {
	case size <= rsyncMinBlock*rsyncMinBlock:
		bs = rsyncMinBlock
	case size >= int64(rsyncMaxBlock)*rsyncMaxBlock:
		bs = rsyncMaxBlock
	default:
		bs = isqrt(size) &^ 7
		if bs < rsyncMinBlock {
			bs = rsyncMinBlock
		}
	}
	if need := ceilDiv(max(size, 0), MaxBlocks); need > bs {
		bs = (need + 7) &^ 7
	}
	if bs > MaxBlockSize {
		bs = MaxBlockSize
	}
	return int(bs)
}

func isqrt(x int64) int64 {
	if x <= 0 {
		return 0
	}
	r := int64(1) << ((bits.Len64(uint64(x)) + 1) / 2)
	for {
		n := (r + x/r) / 2
		if n >= r {
			break
		}
		r = n
	}
	for r*r > x {
		r--
	}
	for (r+1)*(r+1) <= x {
		r++
	}
	return r
}

// StrongLenFor returns the strong checksum length for a file of the given
// size and block size: enough bits that rolling the weak checksum over every
// offset of an equally large new file gives a false match with probability
// below about 2^-20, never fewer than 4 bytes (so a single verification has a
// 2^-32 false-positive rate) and never more than 16.
func StrongLenFor(size int64, blockSize int) int {
	if size < 1 {
		size = 1
	}
	n := numBlocks(size, blockSize)
	b := bits.Len64(uint64(size)) + bits.Len64(uint64(n)) - 32 + 20
	s := (b + 7) / 8
	return min(max(s, 4), MaxStrongLen)
}

// SignatureOptions tunes ComputeSignatureWith. Zero fields take defaults.
type SignatureOptions struct {
	BlockSize int    // 0: BlockSizeFor(size)
	StrongLen int    // 0: StrongLenFor(size, BlockSize)
	Seed      uint64 // 0: random (crypto/rand)
}

// ComputeSignature reads exactly size bytes of the old file from r, once,
// and returns its signature with default parameters.
func ComputeSignature(r io.Reader, size int64) (*Signature, error) {
	return ComputeSignatureWith(r, size, SignatureOptions{})
}

// ComputeSignatureWith is ComputeSignature with explicit parameters.
func ComputeSignatureWith(r io.Reader, size int64, opt SignatureOptions) (*Signature, error) {
	if size < 0 {
		return nil, fmt.Errorf("delta: negative file size %d", size)
	}
	bs := opt.BlockSize
	if bs == 0 {
		bs = BlockSizeFor(size)
	}
	if bs < MinBlockSize || bs > MaxBlockSize {
		return nil, fmt.Errorf("delta: block size %d out of range [%d, %d]", bs, MinBlockSize, MaxBlockSize)
	}
	sl := opt.StrongLen
	if sl == 0 {
		sl = StrongLenFor(size, bs)
	}
	if sl < MinStrongLen || sl > MaxStrongLen {
		return nil, fmt.Errorf("delta: strong checksum length %d out of range [%d, %d]", sl, MinStrongLen, MaxStrongLen)
	}
	n := numBlocks(size, bs)
	if n > MaxBlocks {
		return nil, fmt.Errorf("delta: %d blocks exceed the limit of %d", n, MaxBlocks)
	}
	seed := opt.Seed
	for seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		seed = binary.LittleEndian.Uint64(b[:])
	}
	sig := &Signature{
		BlockSize: bs,
		StrongLen: sl,
		FileSize:  size,
		Seed:      seed,
		Weak:      make([]uint32, n),
		Strong:    make([]byte, n*int64(sl)),
	}
	if err := sig.fill(r); err != nil {
		return nil, err
	}
	return sig, nil
}

// sigJob asks a worker to checksum the blocks in buf, the first of which is
// block first.
type sigJob struct {
	buf   []byte
	first int64
}

// fill reads the old file and computes every block's checksums, spread over
// GOMAXPROCS workers. If r is also an io.ReaderAt and io.Seeker (an
// *os.File), the workers read their chunks themselves with ReadAt, from r's
// current offset, and r is left positioned after the data like a sequential
// read would; otherwise r is read sequentially and the chunks handed out.
func (s *Signature) fill(r io.Reader) error {
	n := int64(len(s.Weak))
	if n == 0 {
		return nil
	}
	wh := newWeakHasher(s.Seed, s.BlockSize)
	bs := int64(s.BlockSize)
	// Chunks of whole blocks, about 1 MiB.
	per := max(int64(1), (1<<20)/bs)
	chunk := per * bs
	nchunks := (n + per - 1) / per
	workers := min(int64(runtime.GOMAXPROCS(0)), nchunks)
	if workers <= 1 {
		buf := make([]byte, min(chunk, s.FileSize))
		sh := newStrongHasher(s.Seed, s.StrongLen)
		for first := int64(0); first < n; first += per {
			m, err := s.readChunk(r, buf, first, chunk)
			if err != nil {
				return err
			}
			s.sumBlocks(wh, sh, buf[:m], first)
		}
		return nil
	}

	if ra, ok := r.(io.ReaderAt); ok {
		if sk, ok := r.(io.Seeker); ok {
			if base, err := sk.Seek(0, io.SeekCurrent); err == nil {
				return s.fillAt(ra, sk, base, wh, per, nchunks, workers)
			}
		}
	}

	jobs := make(chan sigJob, workers)
	free := make(chan []byte, workers+2)
	for i := int64(0); i < workers+2; i++ {
		free <- make([]byte, chunk)
	}
	var wg sync.WaitGroup
	for i := int64(0); i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sh := newStrongHasher(s.Seed, s.StrongLen)
			for j := range jobs {
				s.sumBlocks(wh, sh, j.buf, j.first)
				free <- j.buf[:cap(j.buf)]
			}
		}()
	}
	var err error
	for first := int64(0); first < n; first += per {
		buf := <-free
		var m int
		m, err = s.readChunk(r, buf, first, chunk)
		if err != nil {
			break
		}
		jobs <- sigJob{buf: buf[:m], first: first}
	}
	close(jobs)
	wg.Wait()
	return err
}

// fillAt is fill with workers reading their own chunks with ReadAt.
func (s *Signature) fillAt(ra io.ReaderAt, sk io.Seeker, base int64, wh *weakHasher, per, nchunks, workers int64) error {
	bs := int64(s.BlockSize)
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		errAt    = nchunks
	)
	for i := int64(0); i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sh := newStrongHasher(s.Seed, s.StrongLen)
			buf := make([]byte, per*bs)
			for {
				c := next.Add(1) - 1
				if c >= nchunks {
					return
				}
				off := c * per * bs
				m := int(min(per*bs, s.FileSize-off))
				k, err := ra.ReadAt(buf[:m], base+off)
				if k == m {
					err = nil
				} else if err == nil || err == io.EOF {
					err = fmt.Errorf("delta: old file shorter than its size %d", s.FileSize)
				}
				if err != nil {
					mu.Lock()
					if c < errAt {
						errAt, firstErr = c, err
					}
					mu.Unlock()
					next.Store(nchunks)
					return
				}
				s.sumBlocks(wh, sh, buf[:m], c*per)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	_, err := sk.Seek(base+s.FileSize, io.SeekStart)
	return err
}

func (s *Signature) readChunk(r io.Reader, buf []byte, first, chunk int64) (int, error) {
	off := first * int64(s.BlockSize)
	m := int(min(chunk, s.FileSize-off))
	if _, err := io.ReadFull(r, buf[:m]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, fmt.Errorf("delta: old file shorter than its size %d", s.FileSize)
		}
		return 0, err
	}
	return m, nil
}

func (s *Signature) sumBlocks(wh *weakHasher, sh *strongHasher, buf []byte, first int64) {
	bs, sl := s.BlockSize, s.StrongLen
	for i := first; len(buf) > 0; i++ {
		b := buf[:min(bs, len(buf))]
		buf = buf[len(b):]
		s.Weak[i] = weakOf(wh.sum(b))
		copy(s.Strong[i*int64(sl):], sh.sum(b))
	}
}

// validate checks that the signature is internally consistent.
func (s *Signature) validate() error {
	if s == nil {
		return errors.New("delta: nil signature")
	}
	if s.BlockSize < MinBlockSize || s.BlockSize > MaxBlockSize {
		return fmt.Errorf("delta: signature block size %d out of range", s.BlockSize)
	}
	if s.StrongLen < MinStrongLen || s.StrongLen > MaxStrongLen {
		return fmt.Errorf("delta: signature strong length %d out of range", s.StrongLen)
	}
	if s.FileSize < 0 {
		return fmt.Errorf("delta: signature file size %d negative", s.FileSize)
	}
	n := numBlocks(s.FileSize, s.BlockSize)
	if n > MaxBlocks {
		return fmt.Errorf("delta: signature has %d blocks, limit %d", n, MaxBlocks)
	}
	if int64(len(s.Weak)) != n || int64(len(s.Strong)) != n*int64(s.StrongLen) {
		return fmt.Errorf("delta: signature checksum tables do not match %d blocks", n)
	}
	return nil
}

// MarshalBinary returns the compact wire form of the signature (see the
// package documentation).
func (s *Signature) MarshalBinary() ([]byte, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	n := len(s.Weak)
	b := make([]byte, 0, len(sigMagic)+3*binary.MaxVarintLen64+8+4*n+len(s.Strong))
	b = append(b, sigMagic...)
	b = binary.AppendUvarint(b, uint64(s.BlockSize))
	b = binary.AppendUvarint(b, uint64(s.StrongLen))
	b = binary.AppendUvarint(b, uint64(s.FileSize))
	b = binary.LittleEndian.AppendUint64(b, s.Seed)
	for _, w := range s.Weak {
		b = binary.LittleEndian.AppendUint32(b, w)
	}
	b = append(b, s.Strong...)
	return b, nil
}

// UnmarshalBinary decodes the wire form produced by MarshalBinary. It is
// strict: the magic, canonical varints, every parameter's range and the exact
// total length are checked, so it allocates no more than len(b) and never
// panics. On error s is left unchanged.
func (s *Signature) UnmarshalBinary(b []byte) error {
	if len(b) < len(sigMagic) || string(b[:len(sigMagic)]) != sigMagic {
		return errors.New("delta: signature: bad magic")
	}
	p := b[len(sigMagic):]
	bs, p, err := uvarint(p)
	if err != nil {
		return fmt.Errorf("delta: signature block size: %w", err)
	}
	sl, p, err := uvarint(p)
	if err != nil {
		return fmt.Errorf("delta: signature strong length: %w", err)
	}
	size, p, err := uvarint(p)
	if err != nil {
		return fmt.Errorf("delta: signature file size: %w", err)
	}
	if bs < MinBlockSize || bs > MaxBlockSize {
		return fmt.Errorf("delta: signature block size %d out of range", bs)
	}
	if sl < MinStrongLen || sl > MaxStrongLen {
		return fmt.Errorf("delta: signature strong length %d out of range", sl)
	}
	if size > uint64(MaxBlocks)*uint64(bs) {
		return fmt.Errorf("delta: signature file size %d too large for block size %d", size, bs)
	}
	if len(p) < 8 {
		return errors.New("delta: signature truncated")
	}
	seed := binary.LittleEndian.Uint64(p)
	p = p[8:]
	n := numBlocks(int64(size), int(bs))
	if uint64(len(p)) != uint64(n)*(4+sl) {
		return fmt.Errorf("delta: signature has %d bytes of checksums, want %d", len(p), uint64(n)*(4+sl))
	}
	weak := make([]uint32, n)
	for i := range weak {
		weak[i] = binary.LittleEndian.Uint32(p[4*i:])
	}
	strong := make([]byte, n*int64(sl))
	copy(strong, p[4*n:])
	*s = Signature{
		BlockSize: int(bs),
		StrongLen: int(sl),
		FileSize:  int64(size),
		Seed:      seed,
		Weak:      weak,
		Strong:    strong,
	}
	return nil
}

var (
	errVarint    = errors.New("malformed varint")
	errNonCanon  = errors.New("non-canonical varint")
	errTruncated = errors.New("truncated")
)

// uvarint decodes a canonical unsigned varint from the front of b.
func uvarint(b []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	if n == 0 {
		return 0, b, errTruncated
	}
	if n < 0 {
		return 0, b, errVarint
	}
	if n > 1 && b[n-1] == 0 {
		return 0, b, errNonCanon
	}
	return v, b[n:], nil
}
