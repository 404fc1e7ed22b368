// Package verify compares a primary tree with its replica the way a replica
// must match its primary: presence, type, content, permission bits, owner and
// group, mtime, symlink target, xattrs (user.*, security.*, POSIX ACLs), device
// numbers, sizes and hardlink groups. It is the Go counterpart of (and checks a
// superset of) shared/bench/verify.py.
//
// Each side is a Source that reports one Item per relative path; Compare
// collects both sides concurrently and reports the Differences. Local walks a
// directory on this machine; other code (a remote secondary, say) can provide
// its own Source, hashing content with NewDigest and writing fake-super stats
// with EncodeFakeStat.
package verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/georep/georep/internal/filter"
	"github.com/georep/georep/internal/tree"
	"github.com/georep/georep/internal/xattr"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// Item is what a side reports for one relative path.
type Item struct {
	Path     string    // relative, "/"-separated, raw bytes (no escaping)
	Kind     tree.Kind // tree.KindNone only together with Err
	Mode     uint32    // permission bits 07777
	UID, GID uint32
	// OwnerUnknown: the side cannot know the owner (a symlink on a
	// fake-super replica: Linux allows no user xattrs on symlinks).
	OwnerUnknown bool
	Size         int64
	Mtime        int64  // ns since the epoch
	Rdev         uint64 // device number of KindChar/KindBlock, else 0
	Target       string // symlink target
	// Xattrs holds the user.*, security.* and system.posix_acl_access /
	// system.posix_acl_default values (raw), only when Options.NoXattrs is
	// false. user.georep.* never appears. nil and empty are equivalent.
	Xattrs map[string][]byte
	// Hash is the content digest of a regular file: the first 16 bytes of
	// NewDigest's sum over the content.
	Hash [16]byte
	// LinkGroup is non-empty for non-directories with link count > 1: an
	// opaque key, equal for paths that share an inode on that side.
	LinkGroup string
	// Err is non-empty when the path was listed but could not be fully read:
	// ErrVanished when it disappeared mid-walk, otherwise a description of
	// the error. Compare reports such a path as a "vanished" or "error"
	// difference instead of comparing its fields.
	Err string
}

// ErrVanished is Item.Err for a path that disappeared while it was read.
const ErrVanished = "vanished"

// Source produces the Items of one tree, in any order. Items is called once
// per comparison and may run concurrently with the other side's Items; it
// must not call fn concurrently with itself. fn returning an error aborts the
// walk and Items returns that error. The root directory itself is not an Item.
type Source interface {
	Items(ctx context.Context, opts Options, fn func(Item) error) error
}

// Options tune a comparison. The zero value compares everything except
// directory mtimes, with mtimes in whole seconds.
type Options struct {
	NoOwner  bool // don't compare uid/gid
	NoXattrs bool // don't read or compare xattrs and ACLs
	NoACLs   bool // don't compare POSIX ACLs (a replica synced with sync-acls false)
	MtimeNS  bool // compare mtimes to the nanosecond instead of whole seconds
	DirMtime bool // also compare the mtimes of directories
	// Excludes are rsync exclude rules (internal/filter), applied on both
	// sides: what they match is left out, with everything under it.
	// ".georep" (georep's private index on the replica) is always excluded.
	Excludes []string
	// FakeSuper makes the replica side honour user.georep.stat (see
	// FakeStatXattr): its value overrides the kind, permission bits, uid, gid
	// and device number of the file carrying it, so that a non-root replica
	// which stored a FIFO or device as an empty regular file, or could not
	// chown, still matches. Compare passes it only to the replica's Items;
	// the primary always gets FakeSuper false. (LocalFakeSuper makes a Source
	// that honours the xattr whatever the options say.)
	FakeSuper bool
	// Show is how many example differences to print; 0 means DefaultShow.
	Show int
}

// DefaultShow is the number of example differences printed by default.
const DefaultShow = 20

// ShowCount returns Show with the default applied.
func (o Options) ShowCount() int {
	if o.Show == 0 {
		return DefaultShow
	}
	return o.Show
}

// AlwaysExcluded is the top-level name excluded on both sides of every
// comparison: the replica's private index.
const AlwaysExcluded = ".georep"

// excludeSet returns what a walk leaves out.
func (o Options) excludeSet() *Exclusions { return ExcludeSet(o.Excludes) }

// Exclusions is what a comparison leaves out on both sides: the entries
// rsync exclude rules match (internal/filter, as the sync applies them),
// with everything below them, and the replica's AlwaysExcluded index.
type Exclusions struct {
	f *filter.Filter
}

// ExcludeSet builds the Exclusions of rsync exclude rules. The primary
// checks the rules before they are used (georep verify refuses a bad one);
// a rule that still does not parse here is left out.
func ExcludeSet(rules []string) *Exclusions {
	var ok []string
	for _, r := range rules {
		if filter.Validate(r) == nil {
			ok = append(ok, r)
		}
	}
	return &Exclusions{f: filter.MustNew(ok...)}
}

// Skip reports whether a walk leaves out the entry at rel (its parents
// were not skipped).
func (x *Exclusions) Skip(rel string, isDir bool) bool {
	if rel == AlwaysExcluded {
		return true
	}
	return x != nil && x.f.Excluded(rel, isDir)
}

// under reports whether rel is left out, or lies under a directory that is.
func (x *Exclusions) under(rel string, isDir bool) bool {
	top, _, _ := strings.Cut(rel, "/")
	if top == AlwaysExcluded {
		return true
	}
	return x != nil && x.f.ExcludedPath(rel, isDir)
}

// NewDigest returns the hash whose sum's first 16 bytes make Item.Hash
// (SHA-256, hardware-accelerated on current CPUs).
func NewDigest() hash.Hash { return sha256.New() }

// Digest returns the Item.Hash of the content read from r.
func Digest(r io.Reader) ([16]byte, error) {
	h := NewDigest()
	var d [16]byte
	if _, err := io.Copy(h, r); err != nil {
		return d, err
	}
	var sum [sha256.Size]byte
	copy(d[:], h.Sum(sum[:0]))
	return d, nil
}

// Difference is one way in which the replica does not match the primary.
type Difference struct {
	// Kind is one of "missing", "extra", "type", "content", "mode", "owner",
	// "mtime", "symlink-target", "xattr", "hardlink", "rdev", "size",
	// "vanished" (the path disappeared mid-walk) or "error" (it could not be
	// read).
	Kind   string
	Path   string
	Detail string
}

// Report is the outcome of a comparison.
type Report struct {
	SourceEntries, ReplicaEntries int
	Differences                   []Difference // all of them, in print order
	Counts                        map[string]int
}

// OK reports whether the replica matches the primary.
func (r *Report) OK() bool { return len(r.Differences) == 0 }

// Print writes the first show differences, one a line, like verify.py
// ("content: 'a/b' size 3 vs 4"), then the summary line
// "verify: N entries in source, M in replica; differences: content 1, missing 2"
// (or "none"). show 0 means DefaultShow; a negative show prints no examples.
// Paths holding non-printable bytes, invalid UTF-8 or a quote are printed
// with strconv.Quote, others between single quotes.
func (r *Report) Print(w io.Writer, show int) {
	if show == 0 {
		show = DefaultShow
	}
	var b bytes.Buffer
	for i, d := range r.Differences {
		if i >= show {
			break
		}
		b.WriteString(d.Kind)
		b.WriteString(": ")
		b.WriteString(QuotePath(d.Path))
		if d.Detail != "" {
			b.WriteByte(' ')
			b.WriteString(d.Detail)
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "verify: %d entries in source, %d in replica; differences: %s\n",
		r.SourceEntries, r.ReplicaEntries, r.Summary())
	w.Write(b.Bytes())
}

// Summary returns the per-kind counts, "content 1, missing 2", or "none".
func (r *Report) Summary() string {
	if len(r.Counts) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(r.Counts)) {
		parts = append(parts, k+" "+strconv.Itoa(r.Counts[k]))
	}
	return strings.Join(parts, ", ")
}

// QuotePath renders a relative path for humans: 'a/b' when it is printable
// UTF-8 without a single quote, strconv.Quote otherwise.
func QuotePath(p string) string {
	if !utf8.ValidString(p) || strings.ContainsRune(p, '\'') {
		return strconv.Quote(p)
	}
	for _, r := range p {
		if !strconv.IsPrint(r) {
			return strconv.Quote(p)
		}
	}
	return "'" + p + "'"
}

func (r *Report) add(kind, path, detail string) {
	r.Differences = append(r.Differences, Difference{Kind: kind, Path: path, Detail: detail})
	r.Counts[kind]++
}

// side is everything Compare keeps of one tree.
type side struct {
	items  map[string]*Item
	groups map[string]string // path -> canonical hardlink group (sorted paths joined by NUL)
}

func collect(ctx context.Context, src Source, opts Options, ex *Exclusions) (*side, error) {
	s := &side{items: make(map[string]*Item, 1024)}
	var mu sync.Mutex // Sources must not call fn concurrently; be safe anyway.
	err := src.Items(ctx, opts, func(it Item) error {
		it.Path = strings.Trim(it.Path, "/")
		if it.Path == "" || ex.under(it.Path, it.Kind == tree.KindDir) {
			return nil
		}
		if opts.NoACLs {
			for n := range it.Xattrs {
				if xattr.IsACL(n) {
					delete(it.Xattrs, n)
				}
			}
		}
		p := new(Item)
		*p = it
		mu.Lock()
		s.items[it.Path] = p
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	byGroup := make(map[string][]string)
	for path, it := range s.items {
		if it.LinkGroup != "" && it.Kind != tree.KindDir && it.Err == "" {
			byGroup[it.LinkGroup] = append(byGroup[it.LinkGroup], path)
		}
	}
	s.groups = make(map[string]string)
	for _, g := range byGroup {
		if len(g) < 2 {
			continue // its other links are outside the compared tree
		}
		slices.Sort(g)
		key := strings.Join(g, "\x00")
		for _, p := range g {
			s.groups[p] = key
		}
	}
	return s, nil
}

// Compare reads both trees concurrently and reports how the replica differs
// from the primary. Options.FakeSuper applies to the replica only. An error
// is returned only when a side could not be read at all (or ctx ended);
// per-path problems are Differences.
func Compare(ctx context.Context, primary, replica Source, opts Options) (*Report, error) {
	ex := opts.excludeSet()
	popts := opts
	popts.FakeSuper = false
	var src, dst *side
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		var err error
		src, err = collect(gctx, primary, popts, ex)
		if err != nil {
			return fmt.Errorf("verify: reading primary: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		var err error
		dst, err = collect(gctx, replica, opts, ex)
		if err != nil {
			return fmt.Errorf("verify: reading replica: %w", err)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return compareSides(src, dst, opts), nil
}

func compareSides(src, dst *side, opts Options) *Report {
	r := &Report{SourceEntries: len(src.items), ReplicaEntries: len(dst.items), Counts: map[string]int{}}
	srcPaths := slices.Sorted(maps.Keys(src.items))
	var common []string
	for _, p := range srcPaths {
		if _, ok := dst.items[p]; ok {
			common = append(common, p)
		} else {
			r.add("missing", p, "")
		}
	}
	for _, p := range slices.Sorted(maps.Keys(dst.items)) {
		if _, ok := src.items[p]; !ok {
			r.add("extra", p, "")
		}
	}
	for _, p := range common {
		compareItem(r, src.items[p], dst.items[p], opts)
		if sg, dg := src.groups[p], dst.groups[p]; sg != dg {
			r.add("hardlink", p, fmt.Sprintf("linked with %s vs %s", groupDesc(sg, p), groupDesc(dg, p)))
		}
	}
	return r
}

// groupDesc describes the other members of a hardlink group.
func groupDesc(key, self string) string {
	if key == "" {
		return "none"
	}
	var others []string
	for _, m := range strings.Split(key, "\x00") {
		if m != self {
			others = append(others, QuotePath(m))
		}
	}
	const max = 3
	if len(others) > max {
		return fmt.Sprintf("%s and %d more", strings.Join(others[:max], ", "), len(others)-max)
	}
	return strings.Join(others, ", ")
}

func compareItem(r *Report, s, d *Item, opts Options) {
	p := s.Path
	if s.Err != "" || d.Err != "" {
		kind := "error"
		if s.Err == ErrVanished || d.Err == ErrVanished {
			kind = "vanished"
		}
		r.add(kind, p, fmt.Sprintf("%s vs %s", errDesc(s.Err), errDesc(d.Err)))
		return
	}
	if s.Kind != d.Kind {
		r.add("type", p, fmt.Sprintf("%s vs %s", s.Kind, d.Kind))
		return
	}
	switch s.Kind {
	case tree.KindRegular:
		if s.Size != d.Size || s.Hash != d.Hash {
			r.add("content", p, fmt.Sprintf("size %d vs %d", s.Size, d.Size))
		}
	case tree.KindSymlink:
		if s.Target != d.Target {
			r.add("symlink-target", p, fmt.Sprintf("%s vs %s", strconv.Quote(s.Target), strconv.Quote(d.Target)))
		}
	case tree.KindChar, tree.KindBlock:
		if s.Rdev != d.Rdev {
			r.add("rdev", p, fmt.Sprintf("%d,%d vs %d,%d",
				unix.Major(s.Rdev), unix.Minor(s.Rdev), unix.Major(d.Rdev), unix.Minor(d.Rdev)))
		}
	}
	switch s.Kind {
	case tree.KindRegular, tree.KindDir, tree.KindSymlink:
		// content, directory listing and target cover the size
	default:
		if s.Size != d.Size {
			r.add("size", p, fmt.Sprintf("%d vs %d", s.Size, d.Size))
		}
	}
	if s.Kind != tree.KindSymlink && s.Mode&07777 != d.Mode&07777 {
		r.add("mode", p, fmt.Sprintf("0o%o vs 0o%o", s.Mode&07777, d.Mode&07777))
	}
	if !opts.NoOwner && !d.OwnerUnknown && (s.UID != d.UID || s.GID != d.GID) {
		r.add("owner", p, fmt.Sprintf("%d:%d vs %d:%d", s.UID, s.GID, d.UID, d.GID))
	}
	if s.Kind != tree.KindSymlink && (s.Kind != tree.KindDir || opts.DirMtime) {
		sm, dm := s.Mtime, d.Mtime
		if !opts.MtimeNS {
			sm, dm = sm/1e9, dm/1e9
		}
		if sm != dm {
			r.add("mtime", p, fmt.Sprintf("%d vs %d", sm, dm))
		}
	}
	if !opts.NoXattrs {
		if diff := xattrDiff(s.Xattrs, d.Xattrs); diff != "" {
			r.add("xattr", p, diff)
		}
	}
}

func errDesc(e string) string {
	if e == "" {
		return "ok"
	}
	return e
}

// xattrDiff names the xattrs that differ, or returns "".
func xattrDiff(s, d map[string][]byte) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(s)) {
		if strings.HasPrefix(k, PrivateXattrPrefix) {
			continue
		}
		dv, ok := d[k]
		switch {
		case !ok:
			parts = append(parts, k+" missing")
		case !bytes.Equal(s[k], dv):
			parts = append(parts, k+" differs")
		}
	}
	for _, k := range slices.Sorted(maps.Keys(d)) {
		if strings.HasPrefix(k, PrivateXattrPrefix) {
			continue
		}
		if _, ok := s[k]; !ok {
			parts = append(parts, k+" extra")
		}
	}
	return strings.Join(parts, ", ")
}
