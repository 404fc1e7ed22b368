package daemon

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/georep/georep/internal/changelog"
	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/scan"
	"github.com/georep/georep/internal/tree"
	"golang.org/x/sys/unix"
)

// ResyncPath turns the PATH of `georep resync NAME PATH` into a path
// relative to the primary root ("" for the whole tree). PATH may be
// absolute (then it must lie under the root) or relative to the root.
func ResyncPath(root, p string) (string, error) {
	if p == "" {
		return "", nil
	}
	if filepath.IsAbs(p) {
		rel, err := filepath.Rel(root, filepath.Clean(p))
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return "", fmt.Errorf("%s is not under the primary %s", p, root)
		}
		p = rel
	}
	p = filepath.Clean(p)
	if p == "." {
		return "", nil
	}
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("%s is not under the primary %s", p, root)
	}
	return p, nil
}

// subtreeRecords names everything under rel (relative to root, not empty)
// as a journal batch would: the entry's own slot, and for it and every
// entry below an entry record with data (regular files) and metadata
// records. The batch path reconciles those slots against the live tree and
// re-checks every file's content. A PATH that no longer exists names just
// its slot, so the secondary's copy is removed. Symlinks on the way are
// not followed.
func subtreeRecords(ctx context.Context, root, rel string, excludePaths []string) ([]changelog.Record, error) {
	rootFD, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open the primary %s: %w", root, err)
	}
	defer unix.Close(rootFD)
	fsid, err := fileid.FSIDOf(rootFD)
	if err != nil {
		return nil, err
	}
	dir, base := filepath.Split(rel)
	pfd := rootFD
	if dir = strings.TrimSuffix(dir, "/"); dir != "" {
		pfd, err = unix.Openat2(rootFD, dir, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_XDEV | unix.RESOLVE_NO_MAGICLINKS})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
		defer unix.Close(pfd)
	}
	parent, err := scan.Stat(fsid, pfd, "")
	if err != nil {
		return nil, err
	}
	slotRec := changelog.Record{Type: changelog.Entry, Op: changelog.OpCreate, Parent: parent.ID, Name: base}
	e, err := scan.Stat(fsid, pfd, base)
	if errors.Is(err, unix.ENOENT) {
		return []changelog.Record{slotRec}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rel, err)
	}
	var recs []changelog.Record
	add := func(e *tree.Entry) {
		recs = append(recs, changelog.Record{Type: changelog.Entry, Op: changelog.OpCreate, ID: e.ID, Parent: e.Parent, Name: e.Name})
		if e.Kind == tree.KindRegular {
			recs = append(recs, changelog.Record{Type: changelog.Data, ID: e.ID, Parent: e.Parent, Name: e.Name})
		}
		recs = append(recs, changelog.Record{Type: changelog.Meta, ID: e.ID, Parent: e.Parent, Name: e.Name})
	}
	e.Slot = tree.Slot{Parent: parent.ID, Name: base}
	add(&e)
	if e.Kind != tree.KindDir {
		return recs, nil
	}
	res, err := scan.Walk(ctx, filepath.Join(root, rel), scan.Options{ExcludePaths: excludePaths,
		OnError: func(string, error) {}})
	if err != nil {
		return nil, err
	}
	if res.Root.ID != e.ID {
		return nil, fmt.Errorf("%s changed during the resync", rel)
	}
	for i := range res.Entries {
		add(&res.Entries[i])
	}
	return recs, nil
}
