package delta

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/zeebo/xxh3"
)

// randBytes returns n deterministic pseudo-random bytes.
func randBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)})
	_, _ = r.Read(b)
	return b
}

// textBytes returns n bytes of compressible, text-like data.
func textBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	words := []string{"alpha ", "beta ", "gamma ", "delta ", "replica ", "geo ", "block ", "sum\n", "file ", "chunk "}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
	}
	return b.Bytes()[:n]
}

type result struct {
	sig   *Signature
	sigN  int // marshaled signature bytes
	wireN int // encoded delta bytes
	ops   []Op
}

// roundTrip runs the whole protocol and checks the reconstruction.
func roundTrip(t testing.TB, old, new []byte, opt SignatureOptions) result {
	t.Helper()
	sig, err := ComputeSignatureWith(bytes.NewReader(old), int64(len(old)), opt)
	if err != nil {
		t.Fatalf("ComputeSignature: %v", err)
	}
	sb, err := sig.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	var sig2 Signature
	if err := sig2.UnmarshalBinary(sb); err != nil {
		t.Fatalf("UnmarshalBinary: %v", err)
	}
	if sig2.BlockSize != sig.BlockSize || sig2.StrongLen != sig.StrongLen || sig2.FileSize != sig.FileSize ||
		sig2.Seed != sig.Seed || !equalU32(sig2.Weak, sig.Weak) || !bytes.Equal(sig2.Strong, sig.Strong) {
		t.Fatalf("signature changed across marshal/unmarshal")
	}

	var wire bytes.Buffer
	enc := NewEncoder(&wire)
	var ops []Op
	var lastCopyEnd, lastCount int64 = -1, 0
	maxRun := int64(max(1, copyFlush/sig.BlockSize))
	lastKind := OpKind(0)
	sum, err := ComputeDelta(&sig2, bytes.NewReader(new), func(op Op) error {
		switch op.Kind {
		case OpLiteral:
			if len(op.Data) == 0 || len(op.Data) > MaxLiteral {
				t.Errorf("literal of %d bytes", len(op.Data))
			}
			ops = append(ops, Op{Kind: OpLiteral, Data: append([]byte(nil), op.Data...)})
		case OpCopy:
			if lastKind == OpCopy && op.Block == lastCopyEnd && lastCount < maxRun {
				t.Errorf("unmerged consecutive copies ending at %d", op.Block)
			}
			if op.Count > maxRun {
				t.Errorf("copy of %d blocks, more than %d", op.Count, maxRun)
			}
			lastCopyEnd, lastCount = op.Block+op.Count, op.Count
			ops = append(ops, op)
		default:
			t.Errorf("bad op kind %v", op.Kind)
		}
		lastKind = op.Kind
		return enc.WriteOp(op)
	})
	if err != nil {
		t.Fatalf("ComputeDelta: %v", err)
	}
	if want := xxh3.Hash128(new).Bytes(); !bytes.Equal(sum[:16], want[:]) || [16]byte(sum[16:]) != [16]byte{} {
		t.Fatalf("ComputeDelta sum is not the XXH3-128 of the new file (then zeros): %x", sum)
	}
	if err := enc.Close(sum); err != nil {
		t.Fatalf("Encoder.Close: %v", err)
	}
	if int64(wire.Len()) != enc.Written() {
		t.Fatalf("Written() = %d, wire has %d bytes", enc.Written(), wire.Len())
	}
	wireN := wire.Len()

	// Patch from the decoded stream, with a signature carrying only the
	// block size and file size.
	var out bytes.Buffer
	dec := NewDecoder(&wire)
	thin := &Signature{BlockSize: sig.BlockSize, FileSize: sig.FileSize}
	if err := PatchFrom(bytes.NewReader(old), thin, dec, &out); err != nil {
		t.Fatalf("PatchFrom: %v", err)
	}
	if !bytes.Equal(out.Bytes(), new) {
		t.Fatalf("reconstruction differs: got %d bytes, want %d", out.Len(), len(new))
	}
	// Patch straight from the op list too.
	i := 0
	out.Reset()
	psum, err := Patch(bytes.NewReader(old), sig, func() (Op, error) {
		if i == len(ops) {
			return Op{}, io.EOF
		}
		i++
		return ops[i-1], nil
	}, &out)
	if err != nil || psum != sum || !bytes.Equal(out.Bytes(), new) {
		t.Fatalf("Patch from op list: err %v, sum ok %v, equal %v", err, psum == sum, bytes.Equal(out.Bytes(), new))
	}
	return result{sig: sig, sigN: len(sb), wireN: wireN, ops: ops}
}

func equalU32(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func literalBytes(ops []Op) int {
	n := 0
	for _, op := range ops {
		if op.Kind == OpLiteral {
			n += len(op.Data)
		}
	}
	return n
}

func insert(b []byte, at int, ins []byte) []byte {
	out := append([]byte(nil), b[:at]...)
	out = append(out, ins...)
	return append(out, b[at:]...)
}

func TestRoundTrips(t *testing.T) {
	base := randBytes(1, 300_000)
	small := randBytes(2, 500)
	overwrite := func(b []byte, seed uint64, n, size int) []byte {
		out := append([]byte(nil), b...)
		r := rand.New(rand.NewPCG(seed, 2))
		for i := 0; i < n; i++ {
			off := r.IntN(len(out) - size)
			copy(out[off:], randBytes(seed+uint64(i), size))
		}
		return out
	}
	cases := []struct {
		name     string
		old, new []byte
		// maxLiteral bounds the literal bytes with the default block size
		// (-1: no bound).
		maxLiteral int
	}{
		{"empty-empty", nil, nil, 0},
		{"empty-old", nil, base[:5000], 5000},
		{"empty-new", base, nil, 0},
		{"identical", base, base, 0},
		{"appended", base, append(append([]byte(nil), base...), randBytes(3, 12345)...), 12345},
		{"appended-small", small, append(append([]byte(nil), small...), randBytes(4, 100)...), 100},
		{"truncated", base, base[:200_001], -1},
		{"truncated-aligned", base, base[:BlockSizeFor(300_000)*100], 0},
		{"inserted-start", base, insert(base, 0, []byte("hello")), -1},
		{"inserted-middle", base, insert(base, 150_001, randBytes(5, 77)), -1},
		{"deleted-middle", base, append(append([]byte(nil), base[:100_003]...), base[100_100:]...), -1},
		{"overwrites", base, overwrite(base, 6, 5, 100), -1},
		{"smaller-than-block", small, small, 0},
		{"smaller-than-block-prefixed", small, insert(small, 0, []byte{1, 2, 3}), 3},
		{"smaller-than-block-changed", small, overwrite(small, 7, 1, 10), -1},
		{"not-multiple", base[:299_999], base[:299_999], 0},
		{"different", base, randBytes(8, 250_000), -1},
		{"text-different", textBytes(9, 200_000), textBytes(10, 210_000), -1},
		{"text-edit", textBytes(11, 200_000), insert(textBytes(11, 200_000), 1000, []byte("an edit ")), -1},
		{"zeros", make([]byte, 100_000), make([]byte, 120_000), -1},
		{"zeros-vs-random", make([]byte, 100_000), base[:100_000], -1},
		{"reordered", base, append(append([]byte(nil), base[150_000:]...), base[:150_000]...), -1},
	}
	for _, tc := range cases {
		for _, bs := range []int{0, 16, 64, 700, 4096} {
			t.Run(fmt.Sprintf("%s/bs=%d", tc.name, bs), func(t *testing.T) {
				r := roundTrip(t, tc.old, tc.new, SignatureOptions{BlockSize: bs, Seed: 42})
				if bs == 0 && tc.maxLiteral >= 0 {
					if lit := literalBytes(r.ops); lit > tc.maxLiteral {
						t.Errorf("%d literal bytes, want <= %d", lit, tc.maxLiteral)
					}
				}
			})
		}
	}
}

func TestShiftedDataIsMatched(t *testing.T) {
	base := randBytes(20, 1<<20)
	for _, at := range []int{0, 1, 4095, 500_000, 1<<20 - 3} {
		n := insert(base, at, []byte{0xAA, 0xBB, 0xCC})
		r := roundTrip(t, base, n, SignatureOptions{Seed: 7})
		bs := r.sig.BlockSize
		if lit := literalBytes(r.ops); lit > 2*bs+3 {
			t.Errorf("insert at %d: %d literal bytes, want <= %d", at, lit, 2*bs+3)
		}
	}
}

func TestIdentical8MiBDeltaIsTiny(t *testing.T) {
	data := randBytes(30, 8<<20)
	r := roundTrip(t, data, data, SignatureOptions{})
	if r.wireN >= 1024 {
		t.Fatalf("delta of an identical 8 MiB file is %d bytes, want < 1 KiB", r.wireN)
	}
	if len(r.ops) != 1 || r.ops[0].Kind != OpCopy || r.ops[0].Count != r.sig.NumBlocks() {
		t.Fatalf("ops = %+v, want one copy of all %d blocks", r.ops, r.sig.NumBlocks())
	}
	t.Logf("identical 8 MiB: signature %d bytes, delta %d bytes", r.sigN, r.wireN)
}

func TestSmallChange8MiB(t *testing.T) {
	old := randBytes(31, 8<<20)
	n := append([]byte(nil), old...)
	copy(n[3_000_001:], randBytes(32, 1024))
	r := roundTrip(t, old, n, SignatureOptions{})
	if r.wireN >= 64<<10 {
		t.Fatalf("delta for 1 KiB changed in 8 MiB is %d bytes, want < 64 KiB", r.wireN)
	}
	t.Logf("1 KiB changed in 8 MiB: block %d, signature %d bytes, delta %d bytes, %d ops", r.sig.BlockSize, r.sigN, r.wireN, len(r.ops))
}

func TestLiteralChunks(t *testing.T) {
	// Everything literal: old has only a short block.
	old := randBytes(40, 100)
	n := randBytes(41, 3*MaxLiteral+12345)
	r := roundTrip(t, old, n, SignatureOptions{})
	for _, op := range r.ops {
		if op.Kind == OpLiteral && len(op.Data) > MaxLiteral {
			t.Fatalf("literal of %d bytes", len(op.Data))
		}
	}
	// Compressible literals are compressed on the wire.
	txt := textBytes(42, 1<<20)
	r = roundTrip(t, nil, txt, SignatureOptions{})
	if r.wireN > len(txt)/2 {
		t.Fatalf("text literal: %d wire bytes for %d bytes", r.wireN, len(txt))
	}
}

func TestBlockSizeFor(t *testing.T) {
	for _, tc := range []struct {
		size int64
		want int
	}{
		{0, 700}, {1, 700}, {700 * 700, 700}, {1 << 20, 1024}, {8 << 20, 2896},
		{256 << 20, 16384}, {1 << 30, 32768}, {16 << 30, 128 << 10}, {1 << 40, 128 << 10},
		{1 << 44, 256 << 10}, {1 << 62, MaxBlockSize},
	} {
		if got := BlockSizeFor(tc.size); got != tc.want {
			t.Errorf("BlockSizeFor(%d) = %d, want %d", tc.size, got, tc.want)
		}
	}
	for size := int64(1); size < 1<<45; size = size*3 + 7 {
		bs := BlockSizeFor(size)
		if bs%8 != 0 && bs != 700 || bs < 700 || bs > MaxBlockSize {
			t.Fatalf("BlockSizeFor(%d) = %d", size, bs)
		}
		if size < 1<<40 && numBlocks(size, bs) > MaxBlocks {
			t.Fatalf("BlockSizeFor(%d) = %d gives too many blocks", size, bs)
		}
	}
	if got := StrongLenFor(256<<20, 16384); got != 4 {
		t.Errorf("StrongLenFor(256 MiB) = %d, want 4", got)
	}
}

func TestRollingHashConsistent(t *testing.T) {
	data := randBytes(50, 5000)
	for _, w := range []int{16, 17, 64, 700, 1001} {
		wh := newWeakHasher(99, w)
		h := wh.sum(data[:w])
		for p := 0; p+w < len(data); p++ {
			if want := wh.sum(data[p : p+w]); h != want {
				t.Fatalf("w=%d p=%d: rolled %x, direct %x", w, p, h, want)
			}
			h = h*rollMul + wh.t[7][data[p+w]] - wh.u[data[p]]
		}
	}
	m := uint64(1)
	for i := 0; i < 8; i++ {
		m *= rollMul
	}
	if m != m8 {
		t.Fatalf("m8 = %#x, want %#x", m8, m)
	}
	r := rollMul
	if r*r != 0xdf442d22ce4859b9 { // m2 in scan
		t.Fatalf("m2 mismatch")
	}
}

func TestSeedChangesChecksums(t *testing.T) {
	data := randBytes(51, 10000)
	a, _ := ComputeSignatureWith(bytes.NewReader(data), int64(len(data)), SignatureOptions{Seed: 1})
	b, _ := ComputeSignatureWith(bytes.NewReader(data), int64(len(data)), SignatureOptions{Seed: 2})
	if equalU32(a.Weak, b.Weak) || bytes.Equal(a.Strong, b.Strong) {
		t.Fatal("seed does not change checksums")
	}
	c, _ := ComputeSignature(bytes.NewReader(data), int64(len(data)))
	d, _ := ComputeSignature(bytes.NewReader(data), int64(len(data)))
	if c.Seed == 0 || c.Seed == d.Seed {
		t.Fatal("default seed is not random")
	}
}

func TestStrongLenAbove8(t *testing.T) {
	old := randBytes(52, 100_000)
	n := insert(old, 5000, []byte("xyz"))
	r := roundTrip(t, old, n, SignatureOptions{StrongLen: 16, BlockSize: 512, Seed: 3})
	if lit := literalBytes(r.ops); lit > 2*512+3 {
		t.Fatalf("%d literal bytes", lit)
	}
}

func TestComputeSignatureErrors(t *testing.T) {
	data := randBytes(53, 5000)
	if _, err := ComputeSignature(bytes.NewReader(data), 6000); err == nil {
		t.Error("short reader: no error")
	}
	if _, err := ComputeSignature(bytes.NewReader(data), -1); err == nil {
		t.Error("negative size: no error")
	}
	for _, size := range []int64{1<<63 - 1, 1 << 62, MaxBlocks*MaxBlockSize + 1} {
		if _, err := ComputeSignature(bytes.NewReader(data), size); err == nil {
			t.Errorf("size %d: no error", size)
		}
		if bs := BlockSizeFor(size); bs != MaxBlockSize {
			t.Errorf("BlockSizeFor(%d) = %d", size, bs)
		}
	}
	huge := &Signature{BlockSize: 16, StrongLen: 4, FileSize: 1<<63 - 1}
	if _, err := huge.MarshalBinary(); err == nil {
		t.Error("huge signature marshaled")
	}
	if _, err := ComputeDelta(huge, bytes.NewReader(nil), func(Op) error { return nil }); err == nil {
		t.Error("huge signature accepted by ComputeDelta")
	}
	if _, err := Patch(bytes.NewReader(nil), huge, func() (Op, error) { return Op{}, io.EOF }, io.Discard); err == nil {
		t.Error("huge signature accepted by Patch")
	}
	if _, err := ComputeSignatureWith(bytes.NewReader(data), 5000, SignatureOptions{BlockSize: 8}); err == nil {
		t.Error("tiny block size: no error")
	}
	if _, err := ComputeSignatureWith(bytes.NewReader(data), 5000, SignatureOptions{StrongLen: 17}); err == nil {
		t.Error("strong length 17: no error")
	}
	boom := errors.New("boom")
	if _, err := ComputeSignature(io.MultiReader(bytes.NewReader(data), errReader{boom}), 1<<22); !errors.Is(err, boom) {
		t.Errorf("reader error: got %v", err)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestComputeDeltaErrors(t *testing.T) {
	old := randBytes(54, 50_000)
	sig, err := ComputeSignature(bytes.NewReader(old), int64(len(old)))
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	// Reader error.
	_, err = ComputeDelta(sig, io.MultiReader(bytes.NewReader(randBytes(55, 3<<20)), errReader{boom}), func(Op) error { return nil })
	if !errors.Is(err, boom) {
		t.Errorf("reader error: got %v", err)
	}
	// Emit error stops the delta.
	calls := 0
	_, err = ComputeDelta(sig, bytes.NewReader(randBytes(56, 8<<20)), func(Op) error { calls++; return boom })
	if !errors.Is(err, boom) || calls != 1 {
		t.Errorf("emit error: got %v after %d calls", err, calls)
	}
	// Inconsistent signature.
	bad := *sig
	bad.Weak = bad.Weak[1:]
	if _, err := ComputeDelta(&bad, bytes.NewReader(old), func(Op) error { return nil }); err == nil {
		t.Error("inconsistent signature: no error")
	}
}

func TestPatchErrors(t *testing.T) {
	old := randBytes(57, 10_000)
	sig := &Signature{BlockSize: 1000, FileSize: int64(len(old))}
	run := func(ops ...Op) error {
		i := 0
		_, err := Patch(bytes.NewReader(old), sig, func() (Op, error) {
			if i == len(ops) {
				return Op{}, io.EOF
			}
			i++
			return ops[i-1], nil
		}, io.Discard)
		return err
	}
	for _, op := range []Op{
		{Kind: OpCopy, Block: 10, Count: 1},
		{Kind: OpCopy, Block: -1, Count: 1},
		{Kind: OpCopy, Block: 0, Count: 0},
		{Kind: OpCopy, Block: 5, Count: 6},
		{Kind: OpCopy, Block: 1, Count: 1<<63 - 1},
		{Kind: 9},
	} {
		if err := run(op); err == nil {
			t.Errorf("op %+v: no error", op)
		}
	}
	if err := run(Op{Kind: OpCopy, Block: 0, Count: 10}); err != nil {
		t.Errorf("valid copy: %v", err)
	}
	// Old file shorter than the signature says.
	_, err := Patch(bytes.NewReader(old[:5500]), sig, func() (Op, error) { return Op{}, io.EOF }, io.Discard)
	if err != nil {
		t.Errorf("no ops: %v", err)
	}
	i := 0
	_, err = Patch(bytes.NewReader(old[:5500]), sig, func() (Op, error) {
		if i > 0 {
			return Op{}, io.EOF
		}
		i++
		return Op{Kind: OpCopy, Block: 5, Count: 1}, nil
	}, io.Discard)
	if err == nil {
		t.Error("short old file: no error")
	}
	// Write errors and op errors propagate.
	boom := errors.New("boom")
	_, err = Patch(bytes.NewReader(old), sig, func() (Op, error) { return Op{Kind: OpCopy, Block: 0, Count: 10}, nil }, errWriter{boom})
	if !errors.Is(err, boom) {
		t.Errorf("write error: got %v", err)
	}
	_, err = Patch(bytes.NewReader(old), sig, func() (Op, error) { return Op{}, boom }, io.Discard)
	if !errors.Is(err, boom) {
		t.Errorf("ops error: got %v", err)
	}
	if _, err := Patch(bytes.NewReader(old), &Signature{BlockSize: 3}, func() (Op, error) { return Op{}, io.EOF }, io.Discard); err == nil {
		t.Error("bad block size: no error")
	}
}

type errWriter struct{ err error }

func (w errWriter) Write([]byte) (int, error) { return 0, w.err }

func TestPatchFromDetectsMismatch(t *testing.T) {
	old := randBytes(58, 100_000)
	n := insert(old, 50_000, []byte("change"))
	sig, _ := ComputeSignature(bytes.NewReader(old), int64(len(old)))
	var wire bytes.Buffer
	enc := NewEncoder(&wire)
	sum, err := ComputeDelta(sig, bytes.NewReader(n), enc.WriteOp)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(sum); err != nil {
		t.Fatal(err)
	}
	// The old file changed since the signature was taken.
	changed := append([]byte(nil), old...)
	changed[10] ^= 1
	err = PatchFrom(bytes.NewReader(changed), sig, NewDecoder(bytes.NewReader(wire.Bytes())), io.Discard)
	if !errors.Is(err, ErrChecksumMismatch) {
		t.Fatalf("got %v, want ErrChecksumMismatch", err)
	}
}

func TestIdenticalLargeFileFewOps(t *testing.T) {
	data := randBytes(60, 40<<20)
	r := roundTrip(t, data, data, SignatureOptions{})
	// Copies are split every 16 MiB so a receiver can stream them.
	if len(r.ops) != 3 || r.wireN > 100 {
		t.Fatalf("identical 40 MiB file: %d ops, %d delta bytes", len(r.ops), r.wireN)
	}
	var blocks int64
	for _, op := range r.ops {
		if op.Kind != OpCopy || op.Block != blocks {
			t.Fatalf("ops = %+v", r.ops)
		}
		blocks += op.Count
	}
	if blocks != r.sig.NumBlocks() {
		t.Fatalf("copies cover %d of %d blocks", blocks, r.sig.NumBlocks())
	}
}

func TestConcurrentDeltasShareSignature(t *testing.T) {
	old := randBytes(61, 3<<20)
	sig, err := ComputeSignature(bytes.NewReader(old), int64(len(old)))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func(i int) {
			n := insert(old, 1000*i+7, []byte("concurrent"))
			var wire bytes.Buffer
			enc := NewEncoder(&wire)
			sum, err := ComputeDelta(sig, bytes.NewReader(n), enc.WriteOp)
			if err == nil {
				err = enc.Close(sum)
			}
			var out bytes.Buffer
			if err == nil {
				err = PatchFrom(bytes.NewReader(old), sig, NewDecoder(&wire), &out)
			}
			if err == nil && !bytes.Equal(out.Bytes(), n) {
				err = fmt.Errorf("delta %d: reconstruction differs", i)
			}
			errc <- err
		}(i)
	}
	for i := 0; i < 4; i++ {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}

// chunkyReader returns at most n bytes per Read, to exercise short reads.
type chunkyReader struct {
	r io.Reader
	n int
}

func (c *chunkyReader) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

func TestShortReads(t *testing.T) {
	old := randBytes(62, 5<<20+123)
	n := append(insert(old, 3<<20, []byte("xyz")), randBytes(63, 1000)...)
	// Signature from a plain (non-ReaderAt) reader with short reads.
	sig, err := ComputeSignature(&chunkyReader{bytes.NewReader(old), 777}, int64(len(old)))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := ComputeSignature(bytes.NewReader(old), int64(len(old)))
	if err != nil {
		t.Fatal(err)
	}
	ref2, _ := ComputeSignatureWith(bytes.NewReader(old), int64(len(old)), SignatureOptions{Seed: sig.Seed})
	if !equalU32(sig.Weak, ref2.Weak) || !bytes.Equal(sig.Strong, ref2.Strong) || ref.BlockSize != sig.BlockSize {
		t.Fatal("signature depends on how the file is read")
	}
	var wire bytes.Buffer
	enc := NewEncoder(&wire)
	sum, err := ComputeDelta(sig, &chunkyReader{bytes.NewReader(n), 100_003}, enc.WriteOp)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(sum); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := PatchFrom(bytes.NewReader(old), sig, NewDecoder(&wire), &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), n) {
		t.Fatal("reconstruction differs")
	}
}

func TestSignatureFromFile(t *testing.T) {
	old := randBytes(64, 3<<20+5)
	p := filepath.Join(t.TempDir(), "old")
	if err := os.WriteFile(p, append([]byte("HEADER"), old...), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Start after a header: the signature covers the data from the current
	// offset and leaves the file positioned after it.
	if _, err := f.Seek(6, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	sig, err := ComputeSignatureWith(f, int64(len(old)), SignatureOptions{Seed: 77})
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := ComputeSignatureWith(&chunkyReader{bytes.NewReader(old), 1 << 20}, int64(len(old)), SignatureOptions{Seed: 77})
	if !equalU32(sig.Weak, ref.Weak) || !bytes.Equal(sig.Strong, ref.Strong) {
		t.Fatal("ReadAt signature differs from the sequential one")
	}
	if off, _ := f.Seek(0, io.SeekCurrent); off != int64(6+len(old)) {
		t.Fatalf("file left at offset %d", off)
	}
	// A file shorter than the size given.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err := ComputeSignature(f, int64(len(old))+100); err == nil {
		t.Fatal("short file: no error")
	}
}
