package oracle_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/georep/georep/internal/testutil/oracle"
)

func TestPatternMatch(t *testing.T) {
	cases := []struct {
		pat   string
		rel   string
		isDir bool
		want  bool
	}{
		// Unanchored: the end of the path at any depth, whole names only.
		{"foo", "foo", false, true},
		{"foo", "a/b/foo", false, true},
		{"foo", "a/foo/b", false, false},
		{"foo", "afoo", false, false},
		{"foo", "a/xfoo", false, false},
		{"b/foo", "a/b/foo", false, true},
		{"b/foo", "ab/foo", false, false},
		// Anchored at the root.
		{"/foo", "foo", false, true},
		{"/foo", "a/foo", false, false},
		{"/a/b", "a/b", true, true},
		{"/a/b", "x/a/b", true, false},
		// Directories only.
		{"tmp/", "tmp", true, true},
		{"tmp/", "tmp", false, false},
		{"tmp/", "x/tmp", true, true},
		{"/tmp/", "x/tmp", true, false},
		// * and ? stay within a name.
		{"*.o", "x.o", false, true},
		{"*.o", "d/x.o", false, true},
		{"*.o", "d/x.o/y", false, false},
		{"a*c", "abbbc", false, true},
		{"a*c", "ab/c", false, false},
		{"/a*", "ab/c", false, false},
		{"?.txt", "a.txt", false, true},
		{"?.txt", "ab.txt", false, false},
		{"a?b", "a/b", false, false},
		{"*", "anything/at/all", false, true}, // the last name matches
		// ** crosses slashes.
		{"/a/**/z", "a/b/c/z", false, true},
		{"/a/**/z", "a/z", false, false}, // the slashes around ** are literal
		{"/a/**", "a/b/c", false, true},
		{"**/z", "a/b/z", false, true},
		{"a**z", "a/b/z", false, true},
		{"***", "x/y", false, true},
		// Classes.
		{"[abc].txt", "b.txt", false, true},
		{"[abc].txt", "d.txt", false, false},
		{"[a-c]x", "cx", false, true},
		{"[a-c]x", "dx", false, false},
		{"[!a-c]x", "dx", false, true},
		{"[!a-c]x", "ax", false, false},
		{"[^a]x", "bx", false, true},
		{"[]]x", "]x", false, true},
		{"a[/]b", "a/b", false, false}, // a class never matches /
		{"[ab", "[ab", false, true},    // unterminated: literal
		{"[ab", "a", false, false},
		// Escapes.
		{`\*`, "*", false, true},
		{`\*`, "x", false, false},
		{`a\?`, "a?", false, true},
		// Odd bytes.
		{"with space", "d/with space", false, true},
		{"new\nline", "new\nline", false, true},
		{"\xff*", "d/\xff\xfe", false, true},
		{".georep", "a/.georep", true, true},
		{"/.georep", "a/.georep", true, false},
	}
	for _, c := range cases {
		p, err := oracle.ParsePattern(c.pat)
		if err != nil {
			t.Errorf("ParsePattern(%q): %v", c.pat, err)
			continue
		}
		if got := p.Match(c.rel, c.isDir); got != c.want {
			t.Errorf("%q matching %q (dir %v) = %v, want %v", c.pat, c.rel, c.isDir, got, c.want)
		}
	}
	for _, bad := range []string{"", "/", "//"} {
		if _, err := oracle.ParsePattern(bad); !errors.Is(err, oracle.ErrEmptyPattern) {
			t.Errorf("ParsePattern(%q): %v, want ErrEmptyPattern", bad, err)
		}
	}
}

// TestPatternNotExponential: a pattern that makes naive backtracking
// matchers take exponential time is matched at once.
func TestPatternNotExponential(t *testing.T) {
	p, err := oracle.ParsePattern(strings.Repeat("*a", 30) + "b")
	if err != nil {
		t.Fatal(err)
	}
	if p.Match(strings.Repeat("a", 200), false) {
		t.Fatal("matched a path without b")
	}
}

// reference translates a pattern whose bytes are printable ASCII into a Go
// regexp the way verify.py does (but with rsync's negated classes and
// escapes), as an independent second implementation for FuzzPattern.
func reference(pat string) (*regexp.Regexp, bool, bool) {
	anchored := strings.HasPrefix(pat, "/")
	dirOnly := len(pat) > 1 && strings.HasSuffix(pat, "/")
	body := strings.Trim(pat, "/")
	var b strings.Builder
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c == '\\' && i+1 < len(body):
			i++
			b.WriteString(regexp.QuoteMeta(body[i : i+1]))
		case c == '*' && i+1 < len(body) && body[i+1] == '*':
			for i+1 < len(body) && body[i+1] == '*' {
				i++
			}
			b.WriteString(".*")
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		case c == '[':
			cls, end, ok := refClass(body, i)
			if !ok {
				b.WriteString(`\[`)
				continue
			}
			b.WriteString(cls)
			i = end
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	prefix := "^(?:.*/)?"
	if anchored {
		prefix = "^"
	}
	return regexp.MustCompile("(?s)" + prefix + "(?:" + b.String() + ")$"), dirOnly, body != ""
}

// refClass lists the bytes of a class explicitly (as \xNN) so that the
// regexp engine's own class syntax plays no part.
func refClass(s string, i int) (string, int, bool) {
	j := i + 1
	neg := false
	if j < len(s) && (s[j] == '!' || s[j] == '^') {
		neg, j = true, j+1
	}
	var in [256]bool
	first := true
	for ; j < len(s); j++ {
		c := s[j]
		if c == ']' && !first {
			var b strings.Builder
			b.WriteString("[")
			any := false
			for k := 0; k < 128; k++ {
				if k != '/' && in[k] != neg {
					b.WriteString(`\x`)
					b.WriteString(strings.ToUpper(string("0123456789abcdef"[k>>4]) + string("0123456789abcdef"[k&15])))
					any = true
				}
			}
			b.WriteString("]")
			if !any {
				return "[^\\x00-\\x{10FFFF}]", j, true // matches nothing
			}
			return b.String(), j, true
		}
		first = false
		if c == '\\' && j+1 < len(s) {
			j++
			c = s[j]
		}
		if j+2 < len(s) && s[j+1] == '-' && s[j+2] != ']' {
			hi := s[j+2]
			if hi == '\\' && j+3 < len(s) {
				hi = s[j+3]
				j++
			}
			for k := int(c); k <= int(hi); k++ {
				in[k] = true
			}
			j += 2
			continue
		}
		in[c] = true
	}
	return "", 0, false
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// FuzzPattern: no pattern or path makes the parser or the matcher panic;
// on printable ASCII the matcher agrees with a regexp translation; an
// anchored match is also an unanchored one; a pattern without
// metacharacters matches itself.
func FuzzPattern(f *testing.F) {
	for _, s := range [][2]string{
		{"*.o", "a/b.o"}, {"/a/**/z", "a/b/z"}, {"[!a-c]x", "dx"}, {"tmp/", "x/tmp"},
		{"[]]", "]"}, {`\*x`, "*x"}, {"a[b", "a[b"}, {"**", "x/y/z"}, {"[a-]", "-"}, {"[\\]]", "]"},
	} {
		f.Add(s[0], s[1], true)
	}
	f.Fuzz(func(t *testing.T, pat, rel string, isDir bool) {
		p, err := oracle.ParsePattern(pat)
		if err != nil {
			if strings.Trim(pat, "/") != "" {
				t.Fatalf("ParsePattern(%q): %v", pat, err)
			}
			return
		}
		got := p.Match(rel, isDir)
		if p.String() != pat {
			t.Fatalf("String() = %q, want %q", p.String(), pat)
		}
		if strings.HasPrefix(pat, "/") && got {
			if q, err := oracle.ParsePattern(strings.TrimLeft(pat, "/")); err == nil && !q.Match(rel, isDir) {
				t.Fatalf("%q matches %q but %q does not", pat, rel, strings.TrimLeft(pat, "/"))
			}
		}
		if plain := strings.Trim(pat, "/"); !strings.ContainsAny(plain, `*?[\`) && !strings.HasSuffix(pat, "/") {
			if !p.Match(plain, false) {
				t.Fatalf("%q does not match itself", pat)
			}
		}
		if !ascii(pat) || !ascii(rel) || rel == "" {
			return
		}
		rx, dirOnly, _ := reference(pat)
		want := rx.MatchString(rel) && (isDir || !dirOnly)
		if got != want {
			t.Fatalf("%q matching %q (dir %v): %v, the regexp %s says %v", pat, rel, isDir, got, rx, want)
		}
	})
}
