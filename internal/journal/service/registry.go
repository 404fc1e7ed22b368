package service

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"slices"
	"time"
)

// registry is roots.json: every registered root and its consumers.
type registry struct {
	Roots map[string][]string `json:"roots"` // canonical path -> sessions (sorted)
	// Rollover: canonical path -> session -> its rollover interval (only
	// the consumers that asked for one).
	Rollover map[string]map[string]time.Duration `json:"rollover,omitempty"`
}

// setRollover records session's rollover interval on path (0: none).
func (r *registry) setRollover(path, session string, d time.Duration) {
	if d <= 0 {
		if m := r.Rollover[path]; m != nil {
			delete(m, session)
			if len(m) == 0 {
				delete(r.Rollover, path)
			}
		}
		return
	}
	if r.Rollover == nil {
		r.Rollover = map[string]map[string]time.Duration{}
	}
	if r.Rollover[path] == nil {
		r.Rollover[path] = map[string]time.Duration{}
	}
	r.Rollover[path][session] = d
}

// rolloverOf is path's rollover interval: the shortest its consumers asked
// for (0: none asked, the journal process's).
func (r *registry) rolloverOf(path string) time.Duration {
	var out time.Duration
	for s, d := range r.Rollover[path] {
		if slices.Contains(r.Roots[path], s) && d > 0 && (out == 0 || d < out) {
			out = d
		}
	}
	return out
}

// add registers session on path; it reports whether the root is new.
func (r *registry) add(path, session string) (newRoot bool) {
	if r.Roots == nil {
		r.Roots = map[string][]string{}
	}
	cs, ok := r.Roots[path]
	if !slices.Contains(cs, session) {
		cs = append(cs, session)
		slices.Sort(cs)
	}
	r.Roots[path] = cs
	return !ok
}

// remove drops session from path (every root when path is ""); it returns
// the roots left without consumers, which are removed.
func (r *registry) remove(path, session string) (gone []string) {
	for p, cs := range r.Roots {
		if path != "" && p != path {
			continue
		}
		cs = slices.DeleteFunc(cs, func(c string) bool { return c == session })
		r.setRollover(p, session, 0)
		if len(cs) == 0 {
			delete(r.Roots, p)
			gone = append(gone, p)
			continue
		}
		r.Roots[p] = cs
	}
	slices.Sort(gone)
	return gone
}

// paths returns the registered roots, sorted.
func (r *registry) paths() []string {
	out := make([]string, 0, len(r.Roots))
	for p := range r.Roots {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// rootKey names a root's changelog dir: a hash of its canonical path.
func rootKey(path string) string {
	h := sha256.Sum256([]byte(path))
	return hex.EncodeToString(h[:8])
}

// validSession: a consumer name is a file name in consumers/.
func validSession(s string) error {
	if s == "" || len(s) > 200 || s == "." || s == ".." || filepath.Base(s) != s || s[0] == '.' {
		return fmt.Errorf("bad consumer name %q", s)
	}
	return nil
}
