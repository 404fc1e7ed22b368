package delta

import (
	"bytes"
	"errors"
	"io"
	"math/bits"
	"slices"
	"sync"

	"github.com/zeebo/xxh3"
)

// OpKind is the kind of a delta operation.
type OpKind uint8

const (
	// OpCopy copies Count consecutive blocks of the old file, starting at
	// block Block. The last block of the old file may be short.
	OpCopy OpKind = 1
	// OpLiteral inserts Data (1..MaxLiteral bytes from ComputeDelta and the
	// Decoder).
	OpLiteral OpKind = 2
)

func (k OpKind) String() string {
	switch k {
	case OpCopy:
		return "copy"
	case OpLiteral:
		return "literal"
	}
	return "invalid"
}

// Op is one delta operation. For OpLiteral, Data is only valid during the
// emit callback (or until the next Decoder.Next call) and must not be
// modified.
type Op struct {
	Kind  OpKind
	Block int64  // OpCopy: first block index
	Count int64  // OpCopy: number of blocks (consecutive runs are merged)
	Data  []byte // OpLiteral
}

const (
	// smallRead is read synchronously first: a new file no longer than
	// that is handled in one piece, without the reader goroutine.
	smallRead = 64 << 10
	// Larger files are read in chunks of chunkData bytes, each stored after
	// a chunkCarry-byte gap into which the matcher moves the unconsumed tail
	// of the previous chunk (at most a pending literal plus a block), so the
	// data is never copied as a whole.
	chunkData  = 512 << 10
	chunkCarry = MaxLiteral + MaxBlockSize
	chunkSize  = chunkCarry + chunkData
	readAhead  = 2
	// hashPiece bounds the hash calls, which cannot be preempted.
	hashPiece = 64 << 10
	// copyFlush bounds the bytes covered by one copy op from ComputeDelta,
	// so that a receiver streaming the ops can start patching early.
	copyFlush = 16 << 20
)

var (
	smallPool = sync.Pool{New: func() any { b := make([]byte, smallRead); return &b }}
	chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}
	patchPool = sync.Pool{New: func() any { b := make([]byte, patchBuffer); return &b }}
)

func putBuf(bp *[]byte) {
	switch cap(*bp) {
	case chunkSize:
		chunkPool.Put(bp)
	case smallRead:
		smallPool.Put(bp)
	case patchBuffer:
		patchPool.Put(bp)
	}
}

// hashWrite feeds b to h in pieces of at most hashPiece bytes.
func hashWrite(h io.Writer, b []byte) {
	for len(b) > 0 {
		k := min(len(b), hashPiece)
		h.Write(b[:k])
		b = b[k:]
	}
}

// ComputeDelta reads the new file from newFile, once, and emits the ops that
// rebuild it from the old file described by sig. Copies of consecutive blocks
// are merged (a copy op covers at most 16 MiB, so that a receiver can start
// patching while the delta streams) and literals come in chunks of at most
// MaxLiteral bytes. It returns the whole-file check (XXH3-128, see sum.go) of the new file. If emit returns
// an error, ComputeDelta stops and returns it (after any Read in progress on
// newFile has returned). The Data of a literal op points into ComputeDelta's
// buffers and is only valid during the emit call.
func ComputeDelta(sig *Signature, newFile io.Reader, emit func(Op) error) (sum [32]byte, err error) {
	if err := sig.validate(); err != nil {
		return sum, err
	}
	first := smallPool.Get().(*[]byte)
	n, err := io.ReadFull(newFile, (*first)[:smallRead])
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		defer smallPool.Put(first)
		data := (*first)[:n]
		m := newMatcher(sig, emit, nil)
		m.win, m.avail, m.eof = data, n, true
		if err := m.run(); err != nil {
			return sum, err
		}
		return fileSumOf(data), nil
	}
	if err != nil {
		smallPool.Put(first)
		return sum, err
	}
	rd := startReader(newFile, chunk{bp: first, off: 0, n: n})
	defer rd.stop()
	m := newMatcher(sig, emit, rd)
	defer m.release()
	if err := m.run(); err != nil {
		return sum, err
	}
	return fileSum(rd.h), nil
}

// chunk is data read from the new file: (*bp)[off:off+n].
type chunk struct {
	bp     *[]byte
	off, n int
}

// reader reads the new file in one goroutine and hashes it (the whole-file check) in
// another, handing the chunks over in order: reading, hashing and matching
// overlap.
type reader struct {
	r      io.Reader
	h      *xxh3.Hasher128
	hashCh chan chunk // reader -> hasher
	ch     chan chunk // hasher -> matcher
	free   chan *[]byte
	done   chan struct{}
	wg     sync.WaitGroup
	err    error // written by the reader before hashCh is closed
	nbufs  int   // owned by the reader goroutine
	first  chunk // owned by the reader goroutine
}

// startReader starts the goroutines; first holds data already read from r,
// which is hashed and handed over first.
func startReader(r io.Reader, first chunk) *reader {
	rd := &reader{
		first:  first,
		r:      r,
		h:      newFileHash(),
		hashCh: make(chan chunk, 1),
		ch:     make(chan chunk, readAhead),
		free:   make(chan *[]byte, readAhead+4),
		done:   make(chan struct{}),
	}
	rd.wg.Add(2)
	go rd.read()
	go rd.hash()
	return rd
}

func (rd *reader) read() {
	defer rd.wg.Done()
	defer close(rd.hashCh)
	if !rd.send(rd.hashCh, rd.first) {
		return
	}
	rd.first = chunk{}
	for {
		var bp *[]byte
		select {
		case bp = <-rd.free:
		default:
			if rd.nbufs < readAhead+2 {
				bp = chunkPool.Get().(*[]byte)
				rd.nbufs++
			} else {
				select {
				case bp = <-rd.free:
				case <-rd.done:
					return
				}
			}
		}
		if cap(*bp) != chunkSize {
			// The small first buffer comes back: trade it for a chunk.
			putBuf(bp)
			bp = chunkPool.Get().(*[]byte)
		}
		b := (*bp)[chunkCarry:chunkSize]
		n, err := io.ReadFull(rd.r, b)
		if n > 0 {
			if !rd.send(rd.hashCh, chunk{bp: bp, off: chunkCarry, n: n}) {
				return
			}
		} else {
			putBuf(bp)
		}
		if err != nil {
			if err != io.EOF && err != io.ErrUnexpectedEOF {
				rd.err = err
			}
			return
		}
	}
}

func (rd *reader) hash() {
	defer rd.wg.Done()
	defer close(rd.ch)
	for c := range rd.hashCh {
		select {
		case <-rd.done:
			putBuf(c.bp)
			continue
		default:
		}
		hashWrite(rd.h, (*c.bp)[c.off:c.off+c.n])
		rd.send(rd.ch, c)
	}
}

// send hands c on, or recycles it if the reader is stopped.
func (rd *reader) send(ch chan chunk, c chunk) bool {
	select {
	case ch <- c:
		return true
	case <-rd.done:
		putBuf(c.bp)
		return false
	}
}

// stop ends the goroutines (after a Read in progress) and recycles buffers.
func (rd *reader) stop() {
	close(rd.done)
	for c := range rd.ch {
		putBuf(c.bp)
	}
	rd.wg.Wait()
	for {
		select {
		case bp := <-rd.free:
			putBuf(bp)
		default:
			return
		}
	}
}

// slot is an open-addressing hash table entry: the blocks whose weak
// checksum is weak are order[start:start+count]. count == 0 marks an empty
// slot.
type slot struct {
	weak  uint32
	start uint32
	count uint32
}

type matcher struct {
	sig     *Signature
	emit    func(Op) error
	rd      *reader
	wh      *weakHasher
	sh      *strongHasher
	bs      int
	n       int64 // blocks
	nFull   int64 // blocks of full size (indexed for rolling)
	tailLen int   // length of block n-1

	filter []uint64
	fmask  uint32
	slots  []slot
	tshift uint32
	order  []int32

	cur   *[]byte // chunk holding win (nil for a small file)
	win   []byte
	lo    int // start of the pending literal
	p     int // start of the current window
	avail int // bytes of win holding data
	eof   bool

	maxRun   int64 // longest copy op emitted (copyFlush bytes)
	expect   int64 // block expected at p (continuation of the last match)
	runStart int64
	runCount int64
}

func newMatcher(sig *Signature, emit func(Op) error, rd *reader) *matcher {
	m := &matcher{
		sig:    sig,
		emit:   emit,
		rd:     rd,
		bs:     sig.BlockSize,
		n:      int64(len(sig.Weak)),
		expect: 0,
		maxRun: int64(max(1, copyFlush/sig.BlockSize)),
	}
	m.sh = newStrongHasher(sig.Seed, sig.StrongLen)
	if m.n > 0 {
		m.tailLen = int(sig.FileSize - (m.n-1)*int64(m.bs))
		m.nFull = m.n
		if m.tailLen < m.bs {
			m.nFull--
		}
		m.wh = newWeakHasher(sig.Seed, m.bs)
	}
	if m.nFull > 0 {
		m.buildIndex()
	}
	return m
}

func (m *matcher) release() {
	if m.cur != nil {
		putBuf(m.cur)
		m.cur, m.win = nil, nil
	}
}

func (m *matcher) strongOf(i int64) []byte {
	sl := int64(m.sig.StrongLen)
	return m.sig.Strong[i*sl : i*sl+sl]
}

func (m *matcher) blockLen(i int64) int {
	if i == m.n-1 {
		return m.tailLen
	}
	return m.bs
}

// buildIndex indexes the full-size blocks by weak checksum, dropping blocks
// identical (same weak and strong checksums) to an earlier one.
func (m *matcher) buildIndex() {
	weak := m.sig.Weak
	order := make([]int32, m.nFull)
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		if weak[a] != weak[b] {
			if weak[a] < weak[b] {
				return -1
			}
			return 1
		}
		if c := bytes.Compare(m.strongOf(int64(a)), m.strongOf(int64(b))); c != 0 {
			return c
		}
		return int(a - b)
	})
	order = slices.CompactFunc(order, func(a, b int32) bool {
		return weak[a] == weak[b] && bytes.Equal(m.strongOf(int64(a)), m.strongOf(int64(b)))
	})
	m.order = order

	groups := 0
	for i := range order {
		if i == 0 || weak[order[i]] != weak[order[i-1]] {
			groups++
		}
	}
	tbits := max(4, bits.Len(uint(2*groups-1)))
	m.slots = make([]slot, 1<<tbits)
	m.tshift = uint32(32 - tbits)
	mask := uint32(len(m.slots) - 1)
	for i := 0; i < len(order); {
		w := weak[order[i]]
		j := i + 1
		for j < len(order) && weak[order[j]] == w {
			j++
		}
		k := (w * 0x9E3779B1) >> m.tshift
		for m.slots[k].count != 0 {
			k = (k + 1) & mask
		}
		m.slots[k] = slot{weak: w, start: uint32(i), count: uint32(j - i)}
		i = j
	}

	// Bitmap filter: about 32 bits per indexed block, indexed by the low
	// bits of the weak checksum.
	fbits := min(max(bits.Len(uint(groups))+5, 12), 32)
	m.filter = make([]uint64, 1<<(fbits-6))
	m.fmask = uint32(1<<fbits - 1)
	for _, s := range m.slots {
		if s.count != 0 {
			x := s.weak & m.fmask
			m.filter[x>>6] |= 1 << (x & 63)
		}
	}
}

// lookup returns the full-size block whose checksums match the window win
// (whose weak checksum is w), or -1.
func (m *matcher) lookup(w uint32, win []byte) int64 {
	mask := uint32(len(m.slots) - 1)
	k := (w * 0x9E3779B1) >> m.tshift
	for {
		s := m.slots[k]
		if s.count == 0 {
			return -1
		}
		if s.weak == w {
			st := m.sh.sum(win)
			if e := m.expect; e >= 0 && e < m.nFull && m.sig.Weak[e] == w && bytes.Equal(m.strongOf(e), st) {
				return e
			}
			for _, b := range m.order[s.start : s.start+s.count] {
				if bytes.Equal(m.strongOf(int64(b)), st) {
					return int64(b)
				}
			}
			return -1
		}
		k = (k + 1) & mask
	}
}

// fill moves on to the next chunk, carrying the unconsumed tail of the
// window (pending literal and current window) over. It returns with more
// than one full block past p, or at the end of the input.
func (m *matcher) fill() error {
	for !m.eof && m.avail-m.p <= m.bs {
		c, ok := <-m.rd.ch
		if !ok {
			m.eof = true
			return m.rd.err
		}
		tail := m.win[m.lo:m.avail]
		start := c.off - len(tail)
		if start < 0 {
			// Cannot happen: only the first chunk has no carry gap, and
			// nothing precedes it.
			return errors.New("delta: internal error: window carry overflow")
		}
		copy((*c.bp)[start:c.off], tail)
		if m.cur != nil {
			m.rd.free <- m.cur
		}
		m.cur = c.bp
		m.win = (*c.bp)[start : c.off+c.n]
		m.p -= m.lo
		m.avail = len(tail) + c.n
		m.lo = 0
	}
	return nil
}

func (m *matcher) flushCopy() error {
	if m.runCount == 0 {
		return nil
	}
	op := Op{Kind: OpCopy, Block: m.runStart, Count: m.runCount}
	m.runCount = 0
	return m.emit(op)
}

// literal emits win[m.lo:end] in chunks of at most MaxLiteral bytes.
func (m *matcher) literal(end int) error {
	if m.lo >= end {
		return nil
	}
	if err := m.flushCopy(); err != nil {
		return err
	}
	for m.lo < end {
		k := min(end, m.lo+MaxLiteral)
		if err := m.emit(Op{Kind: OpLiteral, Data: m.win[m.lo:k:k]}); err != nil {
			return err
		}
		m.lo = k
	}
	return nil
}

// match records that block blk (of length l) matches the data at p.
func (m *matcher) match(blk int64, l int) error {
	if err := m.literal(m.p); err != nil {
		return err
	}
	if m.runCount > 0 && m.runStart+m.runCount == blk && m.runCount < m.maxRun {
		m.runCount++
	} else {
		if err := m.flushCopy(); err != nil {
			return err
		}
		m.runStart, m.runCount = blk, 1
	}
	m.p += l
	m.lo = m.p
	m.expect = blk + 1
	return nil
}

func (m *matcher) run() error {
	for {
		if m.avail-m.p < m.bs && !m.eof {
			if err := m.fill(); err != nil {
				return err
			}
		}
		rem := m.avail - m.p
		if rem == 0 {
			break
		}
		// Does the data continue the previous match?
		if e := m.expect; e >= 0 && e < m.n {
			if l := m.blockLen(e); rem >= l && bytes.Equal(m.sh.sum(m.win[m.p:m.p+l]), m.strongOf(e)) {
				if err := m.match(e, l); err != nil {
					return err
				}
				continue
			}
		}
		if rem < m.bs {
			break // end of input
		}
		found, err := m.roll()
		if err != nil {
			return err
		}
		if !found {
			break
		}
	}
	return m.finish()
}

// roll searches for a matching block by rolling the weak checksum from p.
// It returns true after a match, or false at the end of the input, with p
// at the last full window (which did not match).
func (m *matcher) roll() (bool, error) {
	bs := m.bs
	idx := m.nFull > 0
	var h uint64
	if idx {
		h = m.wh.sum(m.win[m.p : m.p+bs])
	}
	for {
		end := min(m.avail-bs, m.lo+MaxLiteral)
		if idx {
			var hit bool
			m.p, h, hit = m.scan(m.p, end, h)
			if hit {
				if blk := m.lookup(weakOf(h), m.win[m.p:m.p+bs]); blk >= 0 {
					return true, m.match(blk, bs)
				}
			}
		} else {
			m.p = end
		}
		// The window at p does not match.
		if m.p+bs == m.avail {
			if m.eof {
				return false, nil
			}
			if err := m.fill(); err != nil {
				return false, err
			}
			if m.p+bs == m.avail {
				return false, nil
			}
		}
		if m.p-m.lo >= MaxLiteral {
			if err := m.literal(m.p); err != nil {
				return false, err
			}
		}
		if idx {
			h = h*rollMul + m.wh.t[7][m.win[m.p+bs]] - m.wh.u[m.win[m.p]]
		}
		m.p++
	}
}

// scan checks the windows starting at p..end (end+bs <= avail) against the
// bitmap filter, rolling h along. It returns the first position whose weak
// checksum passes the filter (true), or end (false).
//
// This is the hot loop of a changed region. The rolling recurrence
// h' = h*M + T[in] - U[out] has a multiply on its loop-carried path, so the
// loop advances two bytes per iteration: h” = h*M^2 + ((T[in0]-U[out0])*M +
// T[in1]-U[out1]) keeps one multiply-add on the carried path per two bytes
// while h' is computed off it.
func (m *matcher) scan(p, end int, h uint64) (int, uint64, bool) {
	const m2 uint64 = 0xdf442d22ce4859b9 // rollMul^2 mod 2^64
	in := m.win[p+m.bs : end+m.bs]
	out := m.win[p:end]
	out = out[:len(in)]
	t := &m.wh.t[7]
	u := &m.wh.u
	filter := m.filter
	mask := m.fmask
	i := 0
	for ; i+1 < len(in); i += 2 {
		d0 := t[in[i]] - u[out[i]]
		d1 := t[in[i+1]] - u[out[i+1]]
		x := uint32(h>>32) & mask
		if filter[x>>6]&(1<<(x&63)) != 0 {
			break
		}
		h1 := h*rollMul + d0
		x = uint32(h1>>32) & mask
		if filter[x>>6]&(1<<(x&63)) != 0 {
			return p + i + 1, h1, true
		}
		h = h*m2 + (d0*rollMul + d1)
	}
	for ; i < len(in); i++ {
		x := uint32(h>>32) & mask
		if filter[x>>6]&(1<<(x&63)) != 0 {
			return p + i, h, true
		}
		h = h*rollMul + (t[in[i]] - u[out[i]])
	}
	x := uint32(h>>32) & mask
	return end, h, filter[x>>6]&(1<<(x&63)) != 0
}

// finish handles the end of the input: the short last block may match the
// very end of the new file; everything else left is literal.
func (m *matcher) finish() error {
	if m.n > 0 && m.tailLen < m.bs && m.avail-m.p >= m.tailLen {
		q := m.avail - m.tailLen
		tail := m.win[q:m.avail]
		if weakOf(m.wh.sum(tail)) == m.sig.Weak[m.n-1] && bytes.Equal(m.sh.sum(tail), m.strongOf(m.n-1)) {
			if err := m.literal(q); err != nil {
				return err
			}
			m.p = q
			if err := m.match(m.n-1, m.tailLen); err != nil {
				return err
			}
		}
	}
	if err := m.literal(m.avail); err != nil {
		return err
	}
	m.p = m.avail
	return m.flushCopy()
}

var errShortOld = errors.New("delta: old file shorter than the signature says")
