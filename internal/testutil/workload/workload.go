// Package workload owns the repository's deterministic workload generator
// for judging a tree replicator: a populated tree, a churn of every kind of
// change a replicator must carry, and single-file probes for lag
// measurements. It mirrors shared/bench/workload.py in behaviour (same
// layout, names, counts and command line) so the test suite needs nothing
// beside the repository; it goes further where the issue asks (POSIX ACLs,
// type changes, a churn that can run again on its own output).
//
// Same seed, same tree: every random choice comes from one seeded
// generator, and the files are visited in sorted order.
//
//	populate DIR [--files N] [--dirs D] [--large K] [--large-mib M] [--seed S]
//	churn DIR [--scale X] [--seed S]
//	single DIR NAME
//
// It is used in-process by internal/testutil (Workload) and as a command by
// tools/workload.
package workload

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// PopulateOptions says what Populate makes.
type PopulateOptions struct {
	Files    int    // small files (1-16 KiB each)
	Dirs     int    // directories three levels deep (d00/e00/f00) holding them
	Large    int    // large files under large/
	LargeMiB int    // size of each large file
	Seed     uint64 // same seed, same tree
}

// DefaultPopulate is workload.py's populate default: 20,000 files in 200
// directories, no large files, seed 1.
var DefaultPopulate = PopulateOptions{Files: 20000, Dirs: 200, LargeMiB: 64, Seed: 1}

// rng is the one source of randomness of a run.
type rng struct {
	*rand.Rand
	src *rand.ChaCha8
}

func newRNG(seed uint64) rng {
	var s [32]byte
	for i := range 4 {
		v := seed + uint64(i)*0x9e3779b97f4a7c15
		for j := range 8 {
			s[i*8+j] = byte(v >> (8 * j))
		}
	}
	src := rand.NewChaCha8(s)
	return rng{rand.New(src), src}
}

// between returns a uniform integer in [lo, hi] (both included, as
// Python's randint).
func (r rng) between(lo, hi int) int {
	if hi <= lo {
		return lo
	}
	return lo + r.IntN(hi-lo+1)
}

func (r rng) bytes(n int) []byte {
	b := make([]byte, n)
	r.src.Read(b) // never fails
	return b
}

// Populated reports what Populate made.
type Populated struct {
	Files, Dirs, Large, LargeMiB int
}

func (p Populated) String() string {
	return fmt.Sprintf("%d small files in %d dirs, %d x %d MiB", p.Files, p.Dirs, p.Large, p.LargeMiB)
}

// Populate makes o.Files small files spread round-robin over o.Dirs
// directories three levels deep under dir (dII/eJJ/fKK, at most
// round(cbrt(Dirs))³ of them, at least 2 per level), named file%06d.dat,
// plus o.Large files large/big%02d.bin of o.LargeMiB MiB. Existing files of
// those names are rewritten.
func Populate(dir string, o PopulateOptions) (Populated, error) {
	if o.Files < 0 || o.Dirs < 1 || o.Large < 0 || o.LargeMiB < 0 {
		return Populated{}, fmt.Errorf("populate: want --files >= 0, --dirs >= 1, --large >= 0, --large-mib >= 0 (got %d, %d, %d, %d)",
			o.Files, o.Dirs, o.Large, o.LargeMiB)
	}
	r := newRNG(o.Seed)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Populated{}, err
	}
	perLevel := max(2, int(math.Round(math.Cbrt(float64(o.Dirs)))))
	var ds []string
fill:
	for i := range perLevel {
		for j := range perLevel {
			for k := range perLevel {
				if len(ds) >= o.Dirs {
					break fill
				}
				d := filepath.Join(dir, fmt.Sprintf("d%02d", i), fmt.Sprintf("e%02d", j), fmt.Sprintf("f%02d", k))
				if err := os.MkdirAll(d, 0o755); err != nil {
					return Populated{}, err
				}
				ds = append(ds, d)
			}
		}
	}
	for n := range o.Files {
		d := ds[n%len(ds)]
		if err := writeFile(filepath.Join(d, fmt.Sprintf("file%06d.dat", n)), r.bytes(r.between(1024, 16384))); err != nil {
			return Populated{}, err
		}
	}
	if o.Large > 0 {
		ld := filepath.Join(dir, "large")
		if err := os.MkdirAll(ld, 0o755); err != nil {
			return Populated{}, err
		}
		chunk := r.bytes(1 << 20)
		for n := range o.Large {
			if err := writeLarge(filepath.Join(ld, fmt.Sprintf("big%02d.bin", n)), n, o.LargeMiB, chunk); err != nil {
				return Populated{}, err
			}
		}
	}
	return Populated{Files: o.Files, Dirs: len(ds), Large: o.Large, LargeMiB: o.LargeMiB}, nil
}

// writeLarge writes MiB chunks that differ in their first two bytes (the
// file number and the chunk number), so no two chunks of the tree are the
// same.
func writeLarge(p string, n, mib int, chunk []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	buf := slices.Clone(chunk)
	for m := range mib {
		buf[0], buf[1] = byte(n), byte(m)
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

func writeFile(p string, data []byte) error {
	return os.WriteFile(p, data, 0o644)
}

// Single writes one new small file in dir the way editors and lag probes
// do: NAME.tmp written whole, then renamed to NAME.
func Single(dir, name string) error {
	if name == "" || strings.ContainsRune(name, '/') {
		return fmt.Errorf("single: %q is not a file name", name)
	}
	p := filepath.Join(dir, name)
	if err := writeFile(p+".tmp", []byte("lag probe "+name+"\n")); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}
