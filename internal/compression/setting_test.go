package compression

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]Setting{
		"":       {Mode: Auto},
		"auto":   {Mode: Auto},
		"none":   {Mode: Never},
		"off":    {Mode: Never},
		"zstd":   {Mode: Always},
		"zstd:1": {Mode: Fixed, Level: Fastest},
		"zstd:4": {Mode: Fixed, Level: Best},
	} {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"gzip", "zstd:0", "zstd:5", "zstd:x", "zstd:", "ZSTD", "lz4"} {
		if _, err := Parse(in); !errors.Is(err, ErrBadSetting) {
			t.Errorf("Parse(%q): %v, want ErrBadSetting", in, err)
		}
	}
}

func TestFromZstdLevel(t *testing.T) {
	for n, want := range map[int]Level{-5: Off, 0: Off, 1: Fastest, 2: Fastest, 3: Default, 5: Default, 6: Better, 9: Better, 10: Best, 19: Best, 22: Best} {
		if got := FromZstdLevel(n); got != want {
			t.Errorf("FromZstdLevel(%d) = %v, want %v", n, got, want)
		}
	}
}

// FuzzParse: any string parses or is ErrBadSetting, and a parsed setting
// reads back the same from its String.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "auto", "none", "zstd", "zstd:3", "zstd:9", "zstd:-1", " zstd "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrBadSetting) {
				t.Fatalf("Parse(%q): unclassified error %v", s, err)
			}
			return
		}
		again, err := Parse(got.String())
		if err != nil || again != got {
			t.Fatalf("Parse(%q) = %+v; its String %q reads %+v, %v", s, got, got.String(), again, err)
		}
		if got.Mode == Fixed && (got.Level < Fastest || got.Level > MaxLevel) {
			t.Fatalf("Parse(%q): level %d out of range", s, got.Level)
		}
	})
}
