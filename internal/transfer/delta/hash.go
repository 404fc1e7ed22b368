package delta

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
)

// rollMul is the multiplier of the polynomial rolling hash (mod 2^64).
const rollMul uint64 = 0x9E3779B97F4A7C15

// seed2Mix derives the seed of the second strong hash (StrongLen > 8).
const seed2Mix uint64 = 0xD6E8FEB86659FD93

// m8 is rollMul^8 mod 2^64.
const m8 uint64 = 0x06d4b2611beb6861

func splitmix64(x *uint64) uint64 {
	*x += 0x9E3779B97F4A7C15
	z := *x
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// weakHasher computes the weak checksum for one seed and block size.
//
// The rolling hash of a window x[0..W) is
//
//	h = sum_i T[x_i] * M^(W-1-i)  (mod 2^64)
//
// and the weak checksum is uint32(h >> 32).
type weakHasher struct {
	// t[j][c] = T[c] * M^(7-j): contribution of byte j of an 8-byte group.
	t [8][256]uint64
	// u[c] = T[c] * M^W: the term leaving the window when it rolls.
	u [256]uint64
}

func newWeakHasher(seed uint64, blockSize int) *weakHasher {
	wh := new(weakHasher)
	s := seed ^ 0x5851F42D4C957F2D
	var pw [8]uint64
	pw[0] = 1
	for j := 1; j < 8; j++ {
		pw[j] = pw[j-1] * rollMul
	}
	mw := uint64(1)
	for i := 0; i < blockSize; i++ {
		mw *= rollMul
	}
	for c := 0; c < 256; c++ {
		v := splitmix64(&s)
		for j := 0; j < 8; j++ {
			wh.t[j][c] = v * pw[7-j]
		}
		wh.u[c] = v * mw
	}
	return wh
}

// sum returns the full 64-bit rolling state of b (not rolled), eight bytes
// per iteration through the per-position tables.
func (wh *weakHasher) sum(b []byte) uint64 {
	t0, t1, t2, t3 := &wh.t[0], &wh.t[1], &wh.t[2], &wh.t[3]
	t4, t5, t6, t7 := &wh.t[4], &wh.t[5], &wh.t[6], &wh.t[7]
	var h uint64
	for len(b) >= 8 {
		v := binary.LittleEndian.Uint64(b)
		a := t0[byte(v)] + t1[byte(v>>8)] + t2[byte(v>>16)] + t3[byte(v>>24)]
		c := t4[byte(v>>32)] + t5[byte(v>>40)] + t6[byte(v>>48)] + t7[byte(v>>56)]
		h = h*m8 + (a + c)
		b = b[8:]
	}
	for _, c := range b {
		h = h*rollMul + t7[c]
	}
	return h
}

func weakOf(h uint64) uint32 { return uint32(h >> 32) }

// strongHasher computes truncated seeded XXH64 strong checksums.
type strongHasher struct {
	d     *xxhash.Digest
	seed  uint64
	n     int
	space [16]byte
}

func newStrongHasher(seed uint64, n int) *strongHasher {
	return &strongHasher{d: xxhash.NewWithSeed(seed), seed: seed, n: n}
}

// sum returns the n-byte strong checksum of b. The result is valid until the
// next call.
func (sh *strongHasher) sum(b []byte) []byte {
	sh.d.ResetWithSeed(sh.seed)
	_, _ = sh.d.Write(b)
	binary.LittleEndian.PutUint64(sh.space[:8], sh.d.Sum64())
	if sh.n > 8 {
		sh.d.ResetWithSeed(sh.seed ^ seed2Mix)
		_, _ = sh.d.Write(b)
		binary.LittleEndian.PutUint64(sh.space[8:], sh.d.Sum64())
	}
	return sh.space[:sh.n]
}
