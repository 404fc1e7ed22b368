// Package filter owns which paths of the primary are not replicated: rsync's
// exclude rules, applied alike by the crawl, the journal's batches and
// verify. It is pure: rules are parsed once into small byte-wise matchers
// (no regular expressions: any byte string is a valid path), and a match
// costs at most pattern length × path length steps.
//
// The rules are rsync's (FILTER RULES and INCLUDE/EXCLUDE PATTERN RULES in
// rsync(1)):
//   - a leading "/" anchors the pattern at the root of the tree; otherwise it
//     matches the end of a path at any depth, at a name boundary ("*.tmp"
//     and "logs/**/old" match in any directory);
//   - a trailing "/" matches directories only;
//   - "*" matches within one name, "?" one byte other than "/", "[...]" a
//     class ("[!...]" or "[^...]" negated, ranges a-z), "**" anything
//     including "/", and "dir/***" the directory and everything below it;
//   - a backslash makes the next byte literal;
//   - "- PATTERN" is an exclude, "+ PATTERN" an include; the first rule that
//     matches decides, and a path no rule matches is included.
//
// An excluded directory is not entered, so nothing below it is replicated.
package filter

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrPattern marks a rule that cannot be used.
var ErrPattern = errors.New("bad exclude pattern")

// Filter is an ordered list of rules. The zero value and nil exclude
// nothing.
type Filter struct {
	rules []rule
}

type rule struct {
	text     string // as given, for String
	include  bool
	anchored bool
	dirOnly  bool
	toks     []token
}

type tokKind uint8

const (
	tLit   tokKind = iota // one byte
	tOne                  // ?: one byte but '/'
	tClass                // [...]: one byte (never '/') in or out of a set
	tStar                 // *: any bytes but '/'
	tAny                  // **: any bytes
)

type token struct {
	kind tokKind
	b    byte
	set  *[256]bool
}

// New parses rules: exclude patterns, each optionally prefixed "- " (an
// exclude) or "+ " (an include).
func New(patterns []string) (*Filter, error) {
	f := &Filter{}
	for _, p := range patterns {
		r, err := parseRule(p)
		if err != nil {
			return nil, err
		}
		f.rules = append(f.rules, r)
	}
	return f, nil
}

// MustNew is New for patterns known to be valid (tests, constants).
func MustNew(patterns ...string) *Filter {
	f, err := New(patterns)
	if err != nil {
		panic(err)
	}
	return f
}

// Validate reports whether a pattern is usable, with the reason.
func Validate(pattern string) error {
	_, err := parseRule(pattern)
	return err
}

func parseRule(p string) (rule, error) {
	r := rule{text: p}
	switch {
	case strings.HasPrefix(p, "- "):
		p = p[2:]
	case strings.HasPrefix(p, "+ "):
		p, r.include = p[2:], true
	}
	if p == "" || p == "/" {
		return rule{}, fmt.Errorf("%w %q: empty", ErrPattern, r.text)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return rule{}, fmt.Errorf("%w %q: NUL byte", ErrPattern, r.text)
	}
	if strings.HasPrefix(p, "/") {
		r.anchored, p = true, p[1:]
	}
	if strings.HasSuffix(p, "/") && !strings.HasSuffix(p, `\/`) {
		r.dirOnly, p = true, strings.TrimRight(p, "/")
		if p == "" {
			return rule{}, fmt.Errorf("%w %q: empty", ErrPattern, r.text)
		}
	}
	// "dir/***" is the directory and everything below: since an excluded
	// directory is not entered, that is "dir" (or "dir/" when dirOnly).
	if strings.HasSuffix(p, "/***") && len(p) > 4 {
		p = p[:len(p)-4]
	}
	toks, err := compile(p)
	if err != nil {
		return rule{}, fmt.Errorf("%w %q: %v", ErrPattern, r.text, err)
	}
	r.toks = toks
	return r, nil
}

func compile(p string) ([]token, error) {
	var toks []token
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch c {
		case '\\':
			if i+1 < len(p) {
				i++
			}
			toks = append(toks, token{kind: tLit, b: p[i]})
		case '?':
			toks = append(toks, token{kind: tOne})
		case '*':
			n := 1
			for i+1 < len(p) && p[i+1] == '*' {
				i++
				n++
			}
			k := tStar
			if n >= 2 {
				k = tAny
			}
			// Adjacent stars are one star: a*** would be slow and means **.
			if len(toks) > 0 && (toks[len(toks)-1].kind == tStar || toks[len(toks)-1].kind == tAny) {
				if k == tAny {
					toks[len(toks)-1].kind = tAny
				}
				continue
			}
			toks = append(toks, token{kind: k})
		case '[':
			set, next, ok := parseClass(p, i)
			if !ok {
				toks = append(toks, token{kind: tLit, b: '['}) // no closing ]: a literal [
				continue
			}
			toks = append(toks, token{kind: tClass, set: set})
			i = next
		default:
			toks = append(toks, token{kind: tLit, b: c})
		}
	}
	if len(toks) > 4096 {
		return nil, errors.New("longer than 4096 elements")
	}
	return toks, nil
}

// parseClass reads the class starting at p[i] == '['; it returns the set
// of bytes it matches, the index of its closing ']', and false when the
// class is not closed.
func parseClass(p string, i int) (*[256]bool, int, bool) {
	j := i + 1
	neg := false
	if j < len(p) && (p[j] == '!' || p[j] == '^') {
		neg = true
		j++
	}
	var set [256]bool
	first := true
	for j < len(p) {
		c := p[j]
		if c == ']' && !first {
			if neg {
				for k := range set {
					set[k] = !set[k]
				}
			}
			set['/'] = false // a class never matches the separator
			return &set, j, true
		}
		first = false
		if c == '\\' && j+1 < len(p) {
			j++
			c = p[j]
		}
		if j+2 < len(p) && p[j+1] == '-' && p[j+2] != ']' {
			hi := p[j+2]
			if hi == '\\' && j+3 < len(p) {
				hi = p[j+3]
				j++
			}
			for k := int(c); k <= int(hi); k++ {
				set[k] = true
			}
			j += 3
			continue
		}
		set[c] = true
		j++
	}
	return nil, 0, false
}

// Empty reports whether the filter has no rules.
func (f *Filter) Empty() bool { return f == nil || len(f.rules) == 0 }

// String lists the rules as given.
func (f *Filter) String() string {
	if f == nil {
		return ""
	}
	s := make([]string, len(f.rules))
	for i, r := range f.rules {
		s[i] = r.text
	}
	return strings.Join(s, ", ")
}

// Excluded reports whether the entry at rel (relative to the root, "/"
// separated, no leading or trailing "/") is excluded, looking at rel
// alone: the walker that asks has already not entered excluded
// directories.
func (f *Filter) Excluded(rel string, isDir bool) bool {
	if f.Empty() || rel == "" {
		return false
	}
	for i := range f.rules {
		r := &f.rules[i]
		if r.dirOnly && !isDir {
			continue
		}
		if r.match(rel) {
			return !r.include
		}
	}
	return false
}

// ExcludedPath is Excluded for a path reached without a walk (a journal
// record): rel is excluded also when a directory above it is.
func (f *Filter) ExcludedPath(rel string, isDir bool) bool {
	if f.Empty() || rel == "" {
		return false
	}
	for i := 0; i < len(rel); i++ {
		if rel[i] == '/' && i > 0 && f.Excluded(rel[:i], true) {
			return true
		}
	}
	return f.Excluded(rel, isDir)
}

// match runs the rule's tokens over s as a set of states (an NFA): an
// anchored rule starts at 0 only, an unanchored one also after every '/'.
func (r *rule) match(s string) bool {
	n := len(r.toks)
	if n > 0 && r.toks[n-1].kind == tLit && (len(s) == 0 || s[len(s)-1] != r.toks[n-1].b) {
		return false // quick refusal: the last byte is fixed and differs
	}
	var bufA, bufB [64]bool // no allocation for the usual short pattern
	cur, next := bufA[:0], bufB[:0]
	if n+1 > len(bufA) {
		cur, next = make([]bool, n+1), make([]bool, n+1)
	} else {
		cur, next = bufA[:n+1], bufB[:n+1]
	}
	add := func(set []bool, i int) {
		// Epsilon closure: a star may match nothing.
		for ; i <= n; i++ {
			set[i] = true
			if i == n || (r.toks[i].kind != tStar && r.toks[i].kind != tAny) {
				return
			}
		}
	}
	add(cur, 0)
	for j := 0; j < len(s); j++ {
		c := s[j]
		clear(next)
		live := false
		for i := 0; i < n; i++ {
			if !cur[i] {
				continue
			}
			t := &r.toks[i]
			switch t.kind {
			case tLit:
				if c == t.b {
					add(next, i+1)
					live = true
				}
			case tOne:
				if c != '/' {
					add(next, i+1)
					live = true
				}
			case tClass:
				if t.set[c] {
					add(next, i+1)
					live = true
				}
			case tStar:
				if c != '/' {
					add(next, i)
					live = true
				}
			case tAny:
				add(next, i)
				live = true
			}
		}
		if c == '/' && !r.anchored {
			add(next, 0)
			live = true
		}
		if !live && r.anchored {
			return false // an unanchored rule may still start after a later '/'
		}
		cur, next = next, cur
	}
	return cur[n]
}

// ReadPatterns reads an --exclude-from file: one pattern a line; blank
// lines and lines starting with '#' or ';' are ignored (as rsync does).
func ReadPatterns(r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if err := Validate(line); err != nil {
			return nil, err
		}
		out = append(out, line)
	}
	return out, sc.Err()
}
