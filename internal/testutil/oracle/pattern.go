package oracle

import (
	"errors"
	"fmt"
	"strings"
)

// Pattern is one rsync-style --exclude pattern:
//
//   - a leading / anchors it at the root; otherwise it matches the end of
//     a path at any depth (a whole name or several, never part of one);
//   - a trailing / makes it match directories only;
//   - * and ? match within a name (never a /), ** matches across names,
//     [...] is a class ([!...] or [^...] negated, a-z ranges, a ] first
//     is literal) that never matches /, and \ makes the next byte literal.
//
// An unterminated [ is a literal [, as in verify.py.
type Pattern struct {
	raw      string
	anchored bool
	dirOnly  bool
	toks     []token
}

type tokKind uint8

const (
	tLit      tokKind = iota // one literal byte
	tAny                     // ?
	tStar                    // *
	tStarStar                // **
	tClass                   // [...]
)

type token struct {
	kind tokKind
	b    byte       // tLit
	set  *[256]bool // tClass: the bytes it matches
}

// ErrEmptyPattern is the error for an empty pattern (or one that is only
// slashes): it would match nothing or everything, never what was meant.
var ErrEmptyPattern = errors.New("empty exclude pattern")

// ParsePattern parses an rsync-style exclude pattern (see Pattern).
func ParsePattern(s string) (Pattern, error) {
	p := Pattern{raw: s, anchored: strings.HasPrefix(s, "/"), dirOnly: len(s) > 1 && strings.HasSuffix(s, "/")}
	body := strings.Trim(s, "/")
	if body == "" {
		return Pattern{}, fmt.Errorf("%w: %q", ErrEmptyPattern, s)
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c == '\\' && i+1 < len(body):
			i++
			p.toks = append(p.toks, token{kind: tLit, b: body[i]})
		case c == '*' && i+1 < len(body) && body[i+1] == '*':
			for i+1 < len(body) && body[i+1] == '*' { // *** is **
				i++
			}
			p.toks = append(p.toks, token{kind: tStarStar})
		case c == '*':
			p.toks = append(p.toks, token{kind: tStar})
		case c == '?':
			p.toks = append(p.toks, token{kind: tAny})
		case c == '[':
			set, end, ok := parseClass(body, i)
			if !ok {
				p.toks = append(p.toks, token{kind: tLit, b: c})
				continue
			}
			p.toks = append(p.toks, token{kind: tClass, set: set})
			i = end
		default:
			p.toks = append(p.toks, token{kind: tLit, b: c})
		}
	}
	return p, nil
}

// parseClass parses the class starting at s[i] == '['; end is the index of
// its closing ']'.
func parseClass(s string, i int) (set *[256]bool, end int, ok bool) {
	j := i + 1
	negate := false
	if j < len(s) && (s[j] == '!' || s[j] == '^') {
		negate = true
		j++
	}
	var in [256]bool
	first := true
	for ; j < len(s); j++ {
		c := s[j]
		if c == ']' && !first {
			if negate {
				for k := range in {
					in[k] = !in[k]
				}
			}
			in['/'] = false
			return &in, j, true
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
	return nil, 0, false
}

// String returns the pattern as given.
func (p Pattern) String() string { return p.raw }

// Match tells whether the pattern excludes the entry at rel (a path
// relative to the tree's root, names separated by single slashes, no
// leading or trailing slash), isDir saying whether it is a directory.
func (p Pattern) Match(rel string, isDir bool) bool {
	if p.dirOnly && !isDir || rel == "" {
		return false
	}
	// row[j] tells whether the pattern matches all of rel[j:]: anchored,
	// the whole path must match; unanchored, the whole path or what
	// follows any of its slashes.
	row := p.suffixMatches(rel)
	if row[0] || p.anchored {
		return row[0]
	}
	for i := 0; i < len(rel); i++ {
		if rel[i] == '/' && row[i+1] {
			return true
		}
	}
	return false
}

// suffixMatches returns, for every j, whether the tokens match all of
// s[j:]. It fills the table of "tokens[i:] match s[j:]" from the ends, one
// row at a time, so no pattern can make it exponential: time is
// O(len(tokens) * len(s)), space O(len(s)).
func (p Pattern) suffixMatches(s string) []bool {
	n := len(s)
	next := make([]bool, n+1) // row i+1
	cur := make([]bool, n+1)  // row i
	next[n] = true            // no tokens match the empty rest only
	for i := len(p.toks) - 1; i >= 0; i-- {
		t := p.toks[i]
		for j := n; j >= 0; j-- {
			var m bool
			switch t.kind {
			case tStar:
				m = next[j] || j < n && s[j] != '/' && cur[j+1]
			case tStarStar:
				m = next[j] || j < n && cur[j+1]
			case tAny:
				m = j < n && s[j] != '/' && next[j+1]
			case tClass:
				m = j < n && t.set[s[j]] && next[j+1]
			case tLit:
				m = j < n && s[j] == t.b && next[j+1]
			}
			cur[j] = m
		}
		next, cur = cur, next
	}
	return next
}
