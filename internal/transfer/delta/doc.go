// Package delta implements rsync-style delta transfer of a single file.
//
// It owns four things, and nothing else (no networking, no file selection,
// no retries):
//
//   - the signature of the old file (computed on the secondary):
//     [ComputeSignature], [Signature] and its compact wire form
//     ([Signature.MarshalBinary], [Signature.UnmarshalBinary]);
//   - the delta of the new file against a signature (computed on the
//     primary): [ComputeDelta], which streams [Op] values to a callback;
//   - the wire encoding of an op stream: [NewEncoder] / [NewDecoder];
//   - reconstruction (on the secondary): [Patch] and [PatchFrom].
//
// # Protocol
//
//  1. The secondary calls ComputeSignature on its old copy and sends
//     Signature.MarshalBinary to the primary.
//  2. The primary decodes it with UnmarshalBinary, runs ComputeDelta over the
//     new version, writing every op to an Encoder, and finishes the stream
//     with Encoder.Close(sum), where sum is the SHA-256 of the new file
//     returned by ComputeDelta.
//  3. The secondary decodes the stream with a Decoder and rebuilds the file
//     into a new file with Patch (or PatchFrom, which also compares the
//     checksum). Patch returns the SHA-256 of what it wrote; it must equal
//     Decoder.Sum(), otherwise the reconstruction failed (the old file changed
//     under us, or a checksum collision happened) and the caller must fall
//     back to a whole-file transfer. [ErrChecksumMismatch] reports this.
//
// # Algorithm
//
// The old file is cut into blocks of [BlockSizeFor] bytes (≈ sqrt(size),
// multiple of 8, 700 B .. 128 KiB like rsync; larger only for files over
// 8 TiB). The last block may be short. Each block gets a 32-bit weak rolling
// checksum and a StrongLen-byte strong checksum (truncated seeded XXH64;
// two of them for lengths > 8). Both are keyed by a random per-signature Seed,
// so file contents cannot be crafted in advance to collide. StrongLen grows
// with the file size so that even a fully rolled search has a false-match
// probability below about 2^-20 per file; the whole-file SHA-256 catches the
// rest.
//
// The weak checksum is a polynomial rolling hash modulo 2^64 over a random
// byte table (the weak value is its top 32 bits). ComputeDelta first checks
// whether the data at the current position continues the previous match
// (strong checksum only, so unchanged regions cost one XXH64 pass), and
// otherwise rolls the weak checksum byte by byte, testing a bitmap filter and
// then a hash table; the strong checksum is computed only on weak hits.
// Matching runs of consecutive blocks are merged into one OpCopy, so an
// unchanged file costs a handful of bytes of delta. The short last block is
// matched when it continues a previous match and at the very end of the new
// file. Literal data is emitted in chunks of at most [MaxLiteral] bytes.
// The SHA-256 of the new file is computed concurrently with the matching.
//
// # Wire formats
//
// Signature: "GRS1", uvarint BlockSize, uvarint StrongLen, uvarint FileSize,
// 8-byte little-endian Seed, then ceil(FileSize/BlockSize) 4-byte
// little-endian weak sums, then the strong sums concatenated. Decoding is
// strict: canonical varints, bounded sizes, exact length.
//
// Op stream: "GRD1", then records, each starting with a tag byte:
//
//	0x01 copy:     zigzag varint (Block - end of previous copy), uvarint Count
//	0x02 literal:  uvarint n (1..MaxLiteral), n raw bytes
//	0x03 literal:  uvarint m, m bytes of one S2 block decoding to 1..MaxLiteral bytes
//	0x00 end:      32-byte SHA-256 of the new file
//
// Literal chunks are S2-compressed when that saves at least 1/32 of their
// size; incompressible data is sent raw. The Decoder never allocates more
// than a few hundred KiB, whatever its input.
//
// # Concurrency
//
// A Signature is read-only after construction and may be shared by
// concurrent ComputeDelta calls. Encoder and Decoder are not safe for
// concurrent use.
package delta
