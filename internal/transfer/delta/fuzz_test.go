package delta

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func FuzzSignatureUnmarshal(f *testing.F) {
	f.Add(validSignature(f))
	f.Add(sigHeader(700, 4, 0))
	f.Add(append(sigHeader(16, 2, 20), make([]byte, 12)...))
	f.Add(sigHeader(16, 4, 1<<62))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Signature
		if err := s.UnmarshalBinary(b); err != nil {
			return
		}
		// Accepted input is canonical: it re-marshals to itself.
		out, err := s.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted signature does not marshal: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-marshaled signature differs")
		}
	})
}

func FuzzDecoder(f *testing.F) {
	sum := [32]byte{1}
	f.Add(encodeOps(f, sum))
	f.Add(encodeOps(f, sum, Op{Kind: OpCopy, Block: 2, Count: 3}, Op{Kind: OpLiteral, Data: []byte("hello")}, Op{Kind: OpCopy, Block: 0, Count: 1}))
	f.Add(encodeOps(f, sum, Op{Kind: OpLiteral, Data: textBytes(80, 300)}))
	f.Add([]byte("GRD1\x01\x80"))
	old := randBytes(81, 1000)
	sig := &Signature{BlockSize: 64, FileSize: int64(len(old))}
	f.Fuzz(func(t *testing.T, b []byte) {
		d := NewDecoder(bytes.NewReader(b))
		for i := 0; ; i++ {
			op, err := d.Next()
			if err != nil {
				break
			}
			switch op.Kind {
			case OpLiteral:
				if len(op.Data) < 1 || len(op.Data) > MaxLiteral {
					t.Fatalf("literal of %d bytes", len(op.Data))
				}
			case OpCopy:
				if op.Block < 0 || op.Count < 1 || op.Block+op.Count > MaxBlocks {
					t.Fatalf("copy %d+%d", op.Block, op.Count)
				}
			default:
				t.Fatalf("kind %v", op.Kind)
			}
		}
		// Patch over the same stream never panics either.
		var out bytes.Buffer
		_ = PatchFrom(bytes.NewReader(old), sig, NewDecoder(bytes.NewReader(b)), &out)
	})
}

// applyEdits derives a new file from old with an edit script: each 4-byte
// group is (kind, position hi, position lo, length).
func applyEdits(old, edits []byte) []byte {
	cur := append([]byte(nil), old...)
	for len(edits) >= 4 {
		kind, n := edits[0]%4, int(edits[3])
		pos := (int(edits[1])<<8 | int(edits[2])) % (len(cur) + 1)
		edits = edits[4:]
		switch kind {
		case 0: // insert n bytes
			ins := bytes.Repeat([]byte{byte(n), byte(pos)}, n/2+1)[:n]
			cur = append(cur[:pos:pos], append(ins, cur[pos:]...)...)
		case 1: // delete
			end := min(len(cur), pos+n)
			cur = append(cur[:pos:pos], cur[end:]...)
		case 2: // overwrite
			for i := pos; i < min(len(cur), pos+n); i++ {
				cur[i] ^= 0x5a
			}
		case 3: // duplicate a region at the end
			end := min(len(cur), pos+n*8)
			cur = append(cur, cur[pos:end]...)
		}
	}
	return cur
}

func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{}, []byte{}, uint8(0))
	f.Add(randBytes(90, 500), []byte{}, uint8(0))
	f.Add(randBytes(91, 1000), []byte{0, 1, 0, 5}, uint8(3))
	f.Add(randBytes(92, 2000), []byte{1, 3, 0, 40, 2, 0, 10, 3, 3, 0, 0, 30}, uint8(40))
	f.Add(bytes.Repeat([]byte("abcdefgh"), 100), []byte{0, 0, 100, 1}, uint8(1))
	f.Add(randBytes(93, 100), []byte{3, 0, 0, 200}, uint8(200))
	f.Fuzz(func(t *testing.T, old, edits []byte, bsel uint8) {
		if len(old) > 1<<16 || len(edits) > 256 {
			return
		}
		new := applyEdits(old, edits)
		bs := MinBlockSize + int(bsel)%128
		if bsel >= 200 {
			bs = 0 // default block size
		}
		roundTrip(t, old, new, SignatureOptions{BlockSize: bs, StrongLen: 2 + int(bsel)%15, Seed: uint64(bsel) + 1})
	})
}

// TestWriteFuzzCorpus regenerates the committed seed corpora under
// testdata/fuzz when GEOREP_DELTA_WRITE_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("GEOREP_DELTA_WRITE_CORPUS") != "1" {
		t.Skip("set GEOREP_DELTA_WRITE_CORPUS=1 to regenerate testdata/fuzz")
	}
	write := func(fuzzer, name string, args ...any) {
		var b bytes.Buffer
		b.WriteString("go test fuzz v1\n")
		for _, a := range args {
			switch v := a.(type) {
			case []byte:
				fmt.Fprintf(&b, "[]byte(%q)\n", v)
			case uint8:
				fmt.Fprintf(&b, "byte(%q)\n", v)
			}
		}
		dir := filepath.Join("testdata", "fuzz", fuzzer)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	valid := validSignature(t)
	write("FuzzSignatureUnmarshal", "valid", valid)
	write("FuzzSignatureUnmarshal", "empty-file", sigHeader(700, 4, 0))
	write("FuzzSignatureUnmarshal", "truncated", valid[:len(valid)-1])
	write("FuzzSignatureUnmarshal", "absurd-blocks", sigHeader(16, 4, 1<<62))
	write("FuzzSignatureUnmarshal", "strong16", append(sigHeader(16, 16, 17), make([]byte, 40)...))

	sum := [32]byte{1}
	write("FuzzDecoder", "empty-stream", encodeOps(t, sum))
	write("FuzzDecoder", "copies-literals", encodeOps(t, sum, Op{Kind: OpCopy, Block: 2, Count: 3}, Op{Kind: OpLiteral, Data: []byte("hello")}, Op{Kind: OpCopy, Block: 0, Count: 1}, Op{Kind: OpCopy, Block: 15, Count: 1}))
	write("FuzzDecoder", "compressed", encodeOps(t, sum, Op{Kind: OpLiteral, Data: textBytes(80, 300)}))
	write("FuzzDecoder", "huge-literal", []byte("GRD1\x02\xff\xff\xff\xff\x0f"))
	write("FuzzDecoder", "bad-s2", []byte("GRD1\x03\x05\x05\xff\xff\xff\xff"))

	write("FuzzRoundTrip", "empty", []byte{}, []byte{}, uint8(0))
	write("FuzzRoundTrip", "identical", randBytes(90, 500), []byte{}, uint8(0))
	write("FuzzRoundTrip", "insert", randBytes(91, 1000), []byte{0, 1, 0, 5}, uint8(3))
	write("FuzzRoundTrip", "mixed", randBytes(92, 2000), []byte{1, 3, 0, 40, 2, 0, 10, 3, 3, 0, 0, 30}, uint8(40))
	write("FuzzRoundTrip", "periodic", bytes.Repeat([]byte("abcdefgh"), 100), []byte{0, 0, 100, 1}, uint8(1))
	write("FuzzRoundTrip", "default-block", randBytes(93, 3000), []byte{3, 0, 0, 200, 0, 5, 0, 9}, uint8(200))
	write("FuzzRoundTrip", "zeros", make([]byte, 700), []byte{2, 1, 0, 3}, uint8(0))
}
