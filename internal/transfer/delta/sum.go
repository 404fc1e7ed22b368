package delta

import "github.com/zeebo/xxh3"

// The whole-file check of a delta is XXH3-128, the same choice rsync (3.2
// and later) makes for its whole-file checksum: it only has to catch a
// wrong reconstruction (a weak+strong block match that was a collision, a
// basis file changed under the patch), not an adversary, since the primary
// is trusted, and it runs at memory speed where SHA-256 cost 1.3 s per GiB
// hashed on both ends. The check travels in a 32-byte field: the 16 bytes
// of the hash, then zeros.

func newFileHash() *xxh3.Hasher128 { return xxh3.New128() }

func fileSum(h *xxh3.Hasher128) (s [32]byte) {
	b := h.Sum128().Bytes()
	copy(s[:], b[:])
	return s
}

func fileSumOf(data []byte) (s [32]byte) {
	b := xxh3.Hash128(data).Bytes()
	copy(s[:], b[:])
	return s
}
