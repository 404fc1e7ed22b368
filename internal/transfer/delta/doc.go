// Package delta implements rsync-style delta transfer of a single file.
//
// It owns four things, and nothing else (no networking, no file selection,
// no retries, no fallback policy):
//
//   - the signature of the old file, computed on the secondary:
//     [ComputeSignature] / [ComputeSignatureWith], [Signature] and its
//     compact wire form ([Signature.MarshalBinary], [Signature.UnmarshalBinary]);
//   - the delta of the new file against a signature, computed on the
//     primary: [ComputeDelta], which streams [Op] values to a callback;
//   - the wire encoding of an op stream: [NewEncoder] / [NewDecoder];
//   - reconstruction on the secondary: [Patch] and [PatchFrom].
//
// # Protocol
//
//  1. The secondary calls ComputeSignature on its old copy and sends
//     Signature.MarshalBinary to the primary.
//  2. The primary decodes it with UnmarshalBinary (strict: hostile input is
//     an error, never a panic or a large allocation), runs ComputeDelta over
//     the new version with Encoder.WriteOp as the callback, and finishes the
//     stream with Encoder.Close(sum), sum being the whole-file check (XXH3-128) of the new file
//     that ComputeDelta returns.
//  3. The secondary reads the stream with a Decoder and rebuilds the file
//     into a new file with Patch(old, sig, dec.Next, out) and compares the
//     returned check with Decoder.Sum() — or lets PatchFrom do both. A
//     mismatch ([ErrChecksumMismatch]) means the old file changed since its
//     signature was taken or a checksum collision happened: the caller must
//     fall back to a whole-file transfer.
//
// Delta and patch can run concurrently: copy ops are emitted at least every
// 16 MiB of matched data and the Encoder flushes after large copies, so the
// secondary can patch while the primary is still reading.
//
// # Algorithm
//
// The old file is cut into blocks of [BlockSizeFor] bytes (rsync's rule:
// floor(sqrt(size)) rounded down to a multiple of 8, 700 B .. 128 KiB; larger
// only beyond 8 TiB to stay within [MaxBlocks]). The last block may be short.
// Each block gets a 32-bit weak rolling checksum and a StrongLen-byte strong
// checksum (truncated XXH64; two of them for StrongLen > 8). Both are keyed
// by a random per-signature Seed, so file contents cannot be crafted in
// advance to collide. [StrongLenFor] picks StrongLen (4 bytes for 256 MiB,
// never fewer than 4, up to 16) so that even rolling over every offset of an
// equally large new file gives a false match with probability below about
// 2^-20; the whole-file XXH3-128 catches what remains.
//
// The weak checksum is a polynomial rolling hash modulo 2^64 over a random
// byte table; the weak value is its top 32 bits. ComputeDelta first checks
// whether the data at the current position continues the previous match
// (the strong checksum of the next block only: unchanged regions cost one
// XXH64 pass and no rolling). Otherwise it rolls the weak checksum byte by
// byte through a bitmap filter (about 32 bits per block, so few false hits),
// then an open-addressing table of the distinct blocks keyed by weak
// checksum; the strong checksum is computed only on a weak hit. Consecutive
// matching blocks are merged into one OpCopy (an unchanged 256 MiB file costs
// about 100 bytes of delta), the short last block matches when it continues
// a previous match or ends the new file, and literals come in chunks of at
// most [MaxLiteral] bytes. Reading, hashing and matching run in separate
// goroutines; the new file's data is not copied beyond the read itself.
// Signature checksums are computed by GOMAXPROCS workers, which read in
// parallel with ReadAt when the reader is also an io.ReaderAt and io.Seeker
// (an *os.File).
//
// # Wire formats
//
// Signature: "GRS1", uvarint BlockSize, uvarint StrongLen, uvarint FileSize,
// 8-byte little-endian Seed, then ceil(FileSize/BlockSize) 4-byte
// little-endian weak checksums, then the strong checksums concatenated.
// About 8 bytes per block (rsync: 7).
//
// Op stream: "GRD1", then records, each starting with a tag byte:
//
//	0x01 copy:     zigzag varint (Block - end of the previous copy), uvarint Count
//	0x02 literal:  uvarint n (1..MaxLiteral), n raw bytes
//	0x03 literal:  uvarint m, m bytes of one S2 block decoding to 1..MaxLiteral bytes
//	0x00 end:      32 bytes: the XXH3-128 of the new file, then 16 zero bytes
//
// A literal chunk is S2-compressed when that saves at least 1/32 of it;
// incompressible data is sent raw (the S2 attempt costs little on it).
// Varints must be canonical. The Decoder checks every bound (block indexes
// below MaxBlocks, literal sizes) and never allocates more than about 300 KiB
// per buffer whatever its input; Patch checks copies against the old file's
// block count.
//
// # Concurrency
//
// A Signature is read-only once built and may be shared by concurrent
// ComputeDelta calls. An Encoder or a Decoder is not safe for concurrent use.
//
// # Comparing with rsync
//
// rsynccompare_test.go runs rsync --no-whole-file on the same change and
// prints both byte counts and times; see TestRsyncCompare (it needs
// GEOREP_RSYNC_COMPARE=1 and /usr/bin/rsync, and is skipped otherwise).
package delta
