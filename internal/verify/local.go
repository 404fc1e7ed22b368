package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/georep/georep/internal/tree"
	"github.com/georep/georep/internal/xattr"
	"golang.org/x/sys/unix"
)

// Local returns a Source that walks the directory root on this machine. The
// walk reads directories and hashes files in parallel with a bounded number
// of goroutines, works relative to directory file descriptors (lstat
// semantics, symlinks are never followed, names may hold any byte but '/' and
// NUL, depth is not limited by PATH_MAX), and reports a path that vanishes or
// cannot be read mid-walk as an Item with Err set. Only a root that cannot be
// opened, a cancelled ctx or an error from fn make Items fail.
// Options.FakeSuper, when set, makes it honour user.georep.stat.
func Local(root string) Source { return &local{root: root} }

// LocalFakeSuper is Local for a replica written by a non-root secondary: it
// honours user.georep.stat (see Options.FakeSuper and FakeStatXattr) even when
// the Options it is given do not ask for it.
func LocalFakeSuper(root string) Source { return &local{root: root, fakeSuper: true} }

type local struct {
	root      string
	fakeSuper bool
}

// localWalk is one Items call: what to read, and the caller's fn, called
// one item at a time.
type localWalk struct {
	xattrs    bool // read the compared xattrs
	fakeSuper bool
	mu        sync.Mutex
	fn        func(Item) error
	failed    error // what fn returned, once it failed; guarded by mu
}

func (l *local) Items(ctx context.Context, opts Options, fn func(Item) error) error {
	fd, err := openat(unix.AT_FDCWD, l.root, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("open %s: %w", l.root, err)
	}
	lw := &localWalk{xattrs: !opts.NoXattrs, fakeSuper: l.fakeSuper || opts.FakeSuper, fn: fn}
	walk := Walk{RootPath: l.root, RootLabel: l.root, Excludes: opts.excludeSet()}
	return walk.Run(ctx, fd, func(e *WalkEntry) error {
		it := e.Item
		if it.Kind == tree.KindSymlink && it.Err == "" {
			it.OwnerUnknown = lw.fakeSuper
		}
		if e.HasAttrs {
			lw.attrs(&it, e.Attrs)
		}
		return lw.emit(ctx, it)
	})
}

func (l *localWalk) emit(ctx context.Context, it Item) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed != nil {
		return l.failed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := l.fn(it); err != nil {
		l.failed = err
		return err
	}
	return nil
}

func errString(err error) string {
	if errors.Is(err, unix.ENOENT) {
		return ErrVanished
	}
	return err.Error()
}

// compared reports whether xattr name is one verify compares.
func compared(name string) bool {
	switch {
	case strings.HasPrefix(name, "user."):
		return !strings.HasPrefix(name, PrivateXattrPrefix)
	case strings.HasPrefix(name, "security."), strings.HasPrefix(name, "trusted."):
		return true // trusted.* are listed only to root: compared as root
	case name == "system.posix_acl_access", name == "system.posix_acl_default":
		return true
	}
	return false
}

// ReadAttrs reads through x the attributes verify compares (when
// wantXattrs), sorted by name, and the raw user.georep.stat (when
// wantStat). errMsg describes what could not be read (the entry's Err);
// absent attributes are no error.
func ReadAttrs(x xattr.Source, wantXattrs, wantStat bool) (xs []xattr.Attr, stat []byte, hasStat bool, errMsg string) {
	if !wantXattrs {
		if !wantStat {
			return nil, nil, false, ""
		}
		v, err := x.Value(FakeStatXattr)
		switch {
		case err == nil:
			return nil, v, true, ""
		case !xattr.Absent(err):
			return nil, nil, false, "reading xattr " + FakeStatXattr + ": " + errString(err)
		}
		return nil, nil, false, ""
	}
	names, err := x.Names()
	if err != nil {
		if !xattr.Absent(err) {
			return nil, nil, false, "listing xattrs: " + errString(err)
		}
		return nil, nil, false, ""
	}
	slices.Sort(names)
	for _, n := range names {
		isStat := wantStat && n == FakeStatXattr
		// A fake-super replica keeps the primary's security.* and trusted.*
		// under user.georep. (xattr.StoredName): those are read back under
		// their own names, and its real ones are not the primary's.
		orig, stored := "", false
		if wantStat {
			orig, stored = xattr.OriginalName(n)
			if !stored && (strings.HasPrefix(n, "security.") || strings.HasPrefix(n, "trusted.")) {
				continue
			}
		}
		if !compared(n) && !isStat && !stored {
			continue
		}
		v, err := x.Value(n)
		if err != nil {
			if err == unix.ENODATA {
				continue // removed meanwhile
			}
			return nil, nil, false, "reading xattr " + n + ": " + errString(err)
		}
		if isStat {
			stat, hasStat = v, true
			continue
		}
		if stored {
			n = orig
		}
		xs = append(xs, xattr.Attr{Name: n, Value: v})
	}
	slices.SortFunc(xs, func(a, b xattr.Attr) int { return strings.Compare(a.Name, b.Name) })
	return xs, stat, hasStat, ""
}

// attrs fills it.Xattrs (when wanted) and applies user.georep.stat (when
// honoured); problems are recorded in it.Err.
func (l *localWalk) attrs(it *Item, x xattr.Source) {
	xs, stat, hasStat, errMsg := ReadAttrs(x, l.xattrs, l.fakeSuper)
	if errMsg != "" {
		it.Err = errMsg
		return
	}
	for _, a := range xs {
		if it.Xattrs == nil {
			it.Xattrs = make(map[string][]byte)
		}
		it.Xattrs[a.Name] = a.Value
	}
	if hasStat {
		if err := applyFakeStat(it, string(stat)); err != nil {
			it.Err = err.Error()
		}
	}
}

// applyFakeStat overrides it with the values stored in user.georep.stat. The
// kind is overridden only for a regular file standing in for a special file
// (or when it already agrees); the stand-in's size is kept, so a non-empty
// stand-in shows as a "size" difference.
func applyFakeStat(it *Item, s string) error {
	kind, mode, rdev, uid, gid, err := DecodeFakeStat(s)
	if err != nil {
		return err
	}
	if kind != it.Kind {
		if it.Kind != tree.KindRegular || kind == tree.KindDir || kind == tree.KindSymlink {
			return fmt.Errorf("%s says %s but the file is a %s", FakeStatXattr, kind, it.Kind)
		}
		it.Kind = kind
		it.Hash = [16]byte{}
	}
	it.Mode, it.UID, it.GID = mode, uid, gid
	it.Rdev = 0
	if kind == tree.KindChar || kind == tree.KindBlock {
		it.Rdev = rdev
	}
	return nil
}
