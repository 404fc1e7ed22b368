package filter

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

func TestExcluded(t *testing.T) {
	type c struct {
		path  string
		dir   bool
		wantX bool
	}
	cases := []struct {
		rules []string
		paths []c
	}{
		{[]string{"/cache/"}, []c{
			{"cache", true, true}, {"cache", false, false}, {"a/cache", true, false}, {"cachex", true, false},
		}},
		{[]string{"cache/"}, []c{
			{"cache", true, true}, {"a/b/cache", true, true}, {"a/b/cache", false, false}, {"a/mycache", true, false},
		}},
		{[]string{"*.tmp"}, []c{
			{"x.tmp", false, true}, {"d/e/x.tmp", false, true}, {"d/x.tmp", true, true}, {"x.tmp/y", false, false}, {"x.tmpl", false, false},
			{".tmp", false, true},
		}},
		{[]string{"logs/**/old"}, []c{
			{"logs/a/old", true, true}, {"logs/a/b/old", false, true}, {"x/logs/a/old", true, true},
			{"logs/old", true, false}, {"logs/a/older", true, false}, {"mylogs/a/old", true, false},
		}},
		{[]string{"/top"}, []c{{"top", false, true}, {"top", true, true}, {"a/top", false, false}}},
		{[]string{"sub/h3"}, []c{{"sub/h3", false, true}, {"x/sub/h3", false, true}, {"xsub/h3", false, false}, {"sub/h3/z", false, false}}},
		{[]string{"f?le"}, []c{{"file", false, true}, {"f/le", false, false}, {"fle", false, false}}},
		{[]string{"[ab]*.[!o]"}, []c{{"a1.c", false, true}, {"b.o", false, false}, {"c.c", false, false}, {"d/bz.h", false, true}}},
		{[]string{"[^x]"}, []c{{"y", false, true}, {"x", false, false}, {"yy", false, false}}},
		{[]string{"[a-c]"}, []c{{"b", false, true}, {"d", false, false}}},
		{[]string{`\*`}, []c{{"*", false, true}, {"a", false, false}}},
		{[]string{"dir/***"}, []c{{"dir", true, true}, {"a/dir", true, true}}},
		{[]string{"a*"}, []c{{"abc", false, true}, {"x/abc", false, true}, {"abc/d", false, false}}},
		{[]string{"**"}, []c{{"anything/at/all", false, true}}},
		{[]string{"+ keep.tmp", "*.tmp"}, []c{{"keep.tmp", false, false}, {"drop.tmp", false, true}}},
		{[]string{"- *.o"}, []c{{"x.o", false, true}}},
		{[]string{"[unclosed"}, []c{{"[unclosed", false, true}, {"u", false, false}}},
		{[]string{"\xff*"}, []c{{"\xff\xfe", false, true}, {"a\xff", false, false}}},
	}
	for _, tc := range cases {
		f, err := New(tc.rules)
		if err != nil {
			t.Fatalf("%q: %v", tc.rules, err)
		}
		for _, p := range tc.paths {
			if got := f.Excluded(p.path, p.dir); got != p.wantX {
				t.Errorf("rules %q, path %q (dir %v): excluded %v, want %v", tc.rules, p.path, p.dir, got, p.wantX)
			}
		}
	}
}

func TestExcludedPathLooksAbove(t *testing.T) {
	f := MustNew("/cache/", "*.tmp")
	for path, want := range map[string]bool{"cache/a/b": true, "cache": false, "x/cache/a": false, "a.tmp/b": true, "a/b": false} {
		if got := f.ExcludedPath(path, false); got != want {
			t.Errorf("%q: %v, want %v", path, got, want)
		}
	}
}

func TestBadPatterns(t *testing.T) {
	for _, p := range []string{"", "/", "- ", "//", "a\x00b"} {
		if err := Validate(p); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
	if (*Filter)(nil).Excluded("x", true) || !(*Filter)(nil).Empty() {
		t.Error("a nil filter excludes")
	}
}

func TestReadPatterns(t *testing.T) {
	got, err := ReadPatterns(strings.NewReader("# comment\n*.tmp\n\n; other\n/cache/\r\n"))
	if err != nil || strings.Join(got, "|") != "*.tmp|/cache/" {
		t.Fatalf("%q %v", got, err)
	}
	if _, err := ReadPatterns(strings.NewReader("ok\n/\n")); err == nil {
		t.Error("a bad line was accepted")
	}
}

// reference is the translation `verify.py` uses (a regular expression),
// for patterns without classes or escapes.
func reference(p string) (*regexp.Regexp, bool) {
	anchored, dirOnly := strings.HasPrefix(p, "/"), strings.HasSuffix(p, "/") && len(p) > 1
	p = strings.Trim(p, "/")
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch {
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(".*")
			i++
		case p[i] == '*':
			b.WriteString("[^/]*")
		case p[i] == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		}
	}
	pre := "(^|.*/)"
	if anchored {
		pre = "^"
	}
	return regexp.MustCompile("(?s)" + pre + b.String() + "$"), dirOnly
}

// FuzzExcluded checks the matcher against the regular-expression reference
// on patterns of a, b, /, * and ?, and that no input panics.
func FuzzExcluded(f *testing.F) {
	for _, s := range []struct{ p, path string }{
		{"*.tmp", "a/b.tmp"}, {"logs/**/old", "x/logs/a/b/old"}, {"/cache/", "cache"}, {"a?b", "a/b"},
		{"**/a", "a"}, {"a/**", "a/"}, {"[!a]", "b"}, {"*a*b*", "xaxbx"}, {"a", "b/a"},
	} {
		f.Add(s.p, s.path, true)
	}
	f.Fuzz(func(t *testing.T, pattern, path string, isDir bool) {
		fl, err := New([]string{pattern})
		if err != nil {
			return
		}
		got := fl.Excluded(path, isDir)
		_ = fl.ExcludedPath(path, isDir)
		simple := strings.Trim(pattern, "ab/*?") == "" && !strings.HasPrefix(pattern, "- ") && !strings.HasPrefix(pattern, "+ ") &&
			!strings.Contains(pattern, "//") && !strings.Contains(pattern, "***") && strings.Trim(pattern, "/") != ""
		if !simple || strings.HasPrefix(path, "/") || strings.HasSuffix(path, "/") || path == "" || strings.Contains(path, "//") ||
			!bytes.Equal([]byte(strings.Trim(path, "ab/")), nil) {
			return
		}
		rx, dirOnly := reference(pattern)
		want := rx.MatchString(path) && (isDir || !dirOnly)
		if got != want {
			t.Fatalf("pattern %q path %q dir %v: matcher %v, reference %v", pattern, path, isDir, got, want)
		}
	})
}

func BenchmarkExcluded(b *testing.B) {
	f := MustNew("/cache/", "*.tmp", "logs/**/old", "node_modules/")
	for i := 0; i < b.N; i++ {
		f.Excluded("src/project/lib/module/file.go", false)
	}
}

// FuzzReadPatterns: any file reads without panicking, and every pattern it
// returns is valid and compiles.
func FuzzReadPatterns(f *testing.F) {
	f.Add("# c\n*.tmp\n/cache/\n")
	f.Add(";x\n\n+ keep\n- drop/**\n\r\n")
	f.Fuzz(func(t *testing.T, text string) {
		ps, err := ReadPatterns(strings.NewReader(text))
		if err != nil {
			return
		}
		if _, err := New(ps); err != nil {
			t.Fatalf("ReadPatterns returned %q, which New refuses: %v", ps, err)
		}
	})
}
