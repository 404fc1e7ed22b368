package changelog

import (
	"strings"
	"testing"
)

func TestEscapeName(t *testing.T) {
	tests := []struct{ in, out string }{
		{"", "-"},
		{"-", "%2D"},
		{"--", "--"},
		{"-x", "-x"},
		{"plain", "plain"},
		{"with space", "with%20space"},
		{"new\nline", "new%0Aline"},
		{"tab\there", "tab%09here"},
		{"\xff\xfe-not-utf8", "%FF%FE-not-utf8"},
		{"percent%20sign", "percent%2520sign"},
		{"back\\slash", "back\\slash"},
		{"é", "%C3%A9"},
		{"\x00\x1f\x20\x21\x7e\x7f", "%00%1F%20!~%7F"},
		{"%2D", "%252D"},
	}
	for _, tt := range tests {
		if got := EscapeName(tt.in); got != tt.out {
			t.Errorf("EscapeName(%q) = %q, want %q", tt.in, got, tt.out)
		}
		if got := string(appendEscaped([]byte("x"), tt.in)); got != "x"+tt.out {
			t.Errorf("appendEscaped(%q) = %q, want %q", tt.in, got, "x"+tt.out)
		}
		back, err := UnescapeName(tt.out)
		if err != nil || back != tt.in {
			t.Errorf("UnescapeName(%q) = %q, %v; want %q", tt.out, back, err, tt.in)
		}
	}
	for _, name := range append(awkwardNames, strings.Repeat("\xff", 300)) {
		esc := EscapeName(name)
		for i := 0; i < len(esc); i++ {
			if c := esc[i]; c <= 0x20 || c >= 0x7f {
				t.Fatalf("EscapeName(%q) = %q has byte %#x", name, esc, c)
			}
		}
		if back, err := UnescapeName(esc); err != nil || back != name {
			t.Errorf("round trip of %q: %q, %v", name, back, err)
		}
	}
}

func TestUnescapeNameErrors(t *testing.T) {
	for _, in := range []string{
		"",          // empty field
		"a b",       // raw space
		"a\nb",      // raw newline
		"\xff",      // raw non-ASCII
		"\x7f",      // raw DEL
		"%",         // truncated
		"a%4",       // truncated
		"%zz",       // not hex
		"%0a",       // lower case
		"%41",       // 'A' need not be escaped
		"x%2D",      // '-' is escaped only as the whole field
		"%2F",       // '/' need not be escaped
		"%2Dx",      // ditto
		"%%",        // bad
		"%G0",       // not hex
		"abc%",      // truncated
		"abc%0",     // truncated
		"ok%20\x01", // raw control after an escape
	} {
		if got, err := UnescapeName(in); err == nil {
			t.Errorf("UnescapeName(%q) = %q, want error", in, got)
		}
	}
}
