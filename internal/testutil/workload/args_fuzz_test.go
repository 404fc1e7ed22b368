package workload

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseArgs: no command line makes the option parser panic; what it
// accepts it accepts whole (every word is a positional or an option with
// its value), and what it refuses is a usage error.
func FuzzParseArgs(f *testing.F) {
	for _, s := range []string{"DIR\x00--files\x005", "--seed=3\x00DIR", "--scale\x00", "--\x00--files", "--bogus\x001", "a\x00b\x00--dirs=x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Split(line, "\x00")
		var files int
		var seed int64
		var scale float64
		pos, err := parseArgs(args, map[string]any{"files": &files, "seed": &seed, "scale": &scale})
		if err != nil {
			if !errors.Is(err, ErrUsage) {
				t.Fatalf("parseArgs(%q): %v, not a usage error", args, err)
			}
			return
		}
		if len(pos) > len(args) {
			t.Fatalf("parseArgs(%q): %d positionals from %d words", args, len(pos), len(args))
		}
		for _, p := range pos {
			if !strings.Contains(line, p) {
				t.Fatalf("positional %q is not on the command line %q", p, args)
			}
		}
	})
}
