package plan

import (
	"encoding/binary"
	"sort"
	"strings"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/tree"
)

// Adoption by path.
//
// The file handle is the fast path, not the only truth: a secondary seeded
// by other means (cp -a, an rsync, a shipped disk), one whose index was lost
// or belongs to another primary, a primary moved to a new disk or restored
// from a backup, a failback — all leave the secondary holding the right
// content under identities the primary does not have. The crawl then matches
// by path, top-down, at any depth: a directory the primary has at the same
// path is adopted (its content is matched in turn), a regular file at the
// same path is adopted (its content, compared later by size and mtime or by
// hash, decides whether data goes, as a delta against this copy), and
// everything else is left to the planner, which stages and purges what the
// primary lacks.

// unknownDirPrefix is the hex of the zero fsid and handle type 0xffffffff:
// no primary file handle has it (the kernel never hands out that type).
const unknownDirPrefix = "0000000000000000ffffffff"

// UnknownDir is the stand-in ID the secondary's listing gives a directory
// georep does not know, so that what the listing finds inside it has a
// parent to name. It is never an ID on the primary; AdoptByPath replaces it
// by the primary's ID of the directory at that path, or drops what is
// inside (it goes with its directory).
func UnknownDir(ino uint64) fileid.ID {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], ino)
	return fileid.Make(fileid.FSID{}, -1, b[:])
}

// IsUnknownDir reports whether id is a stand-in made by UnknownDir.
func IsUnknownDir(id fileid.ID) bool { return strings.HasPrefix(string(id), unknownDirPrefix) }

// Adoption is the outcome of AdoptByPath.
type Adoption struct {
	// Have is the secondary's listing as the planner must see it: adopted
	// entries carry the primary's ID, what is inside an adopted directory
	// names it as parent, stand-ins are gone (an unknown directory that
	// was not adopted shows as one unknown entry, its content dropped).
	Have []*tree.Entry
	// Ops adopt the matched entries, parents before children. They leave
	// every entry where it is, so they run before any other operation of
	// the plan (whose slots inside adopted directories depend on them).
	Ops []Op
	// Old maps each adopted ID to the secondary's entry it took over, for
	// the content decision.
	Old map[fileid.ID]*tree.Entry
	// Hidden are entries of IDs georep knows found inside unknown
	// directories that leave: not slots of the plan, but they exist.
	Hidden []*tree.Entry
}

// AdoptByPath matches the secondary's unknown entries with the primary's
// entries at the same path. want is the primary's whole tree by slot
// (a crawl), have the secondary's whole listing, staged the IDs the
// secondary holds outside its tree (limbo), rootID the primary root. An
// entry is up for adoption when georep does not know it (empty ID or a
// stand-in) or knows it under an ID the primary no longer has (dead: the
// crawl sees the whole primary); it is adopted as the primary's entry at
// its slot when that has the same kind (directory or regular file) and its
// ID is nowhere on the secondary yet. A dead ID taken over is re-keyed
// (the op's From names the slot: the agent drops the old identity).
func AdoptByPath(want map[tree.Slot]*tree.Entry, have []*tree.Entry, staged []fileid.ID, rootID fileid.ID) Adoption {
	alive := map[fileid.ID]bool{rootID: true}
	for _, w := range want {
		alive[w.ID] = true
	}
	onSec := map[fileid.ID]bool{}
	children := map[fileid.ID][]*tree.Entry{}
	isEntry := map[fileid.ID]bool{}
	for _, h := range have {
		children[h.Parent] = append(children[h.Parent], h)
		if h.ID != "" && !IsUnknownDir(h.ID) && alive[h.ID] {
			onSec[h.ID] = true
		}
		if h.Kind == tree.KindDir && h.ID != "" {
			isEntry[h.ID] = true
		}
	}
	for _, id := range staged {
		onSec[id] = true
	}
	for _, cs := range children {
		sortEntries(cs)
	}
	wantByID := map[fileid.ID]*tree.Entry{}
	for _, w := range want {
		if prev, ok := wantByID[w.ID]; !ok || w.Parent < prev.Parent || w.Parent == prev.Parent && w.Name < prev.Name {
			wantByID[w.ID] = w
		}
	}
	type cand struct {
		e    *tree.Entry
		dead bool
		old  fileid.ID
	}
	cands := map[fileid.ID][]cand{}
	var order []fileid.ID
	ad := Adoption{Old: map[fileid.ID]*tree.Entry{}}
	rekeyed := map[fileid.ID]fileid.ID{}
	visited := map[fileid.ID]bool{}
	// hide notes the entries of known, live IDs inside an unknown directory
	// that is not adopted: they exist on the secondary (the planner links
	// or moves them out before the directory is purged).
	var hide func(standIn fileid.ID)
	hide = func(standIn fileid.ID) {
		for _, h := range children[standIn] {
			switch {
			case IsUnknownDir(h.ID):
				hide(h.ID)
			case h.ID != "" && alive[h.ID]:
				c := *h
				ad.Hidden = append(ad.Hidden, &c)
			}
		}
	}
	// adoptAt adopts the secondary's entry c (as listed: h) at its slot as
	// the primary's w: an Adopt op (a re-key when h's ID is dead), and c
	// takes w's ID in the secondary's state the planner sees.
	adoptAt := func(c, h, w *tree.Entry, dead bool) {
		op := Op{Kind: Adopt, ID: w.ID, To: c.Slot, Entry: adoptEntry(w)}
		if dead {
			op.From = c.Slot
			rekeyed[h.ID] = w.ID
		}
		ad.Ops = append(ad.Ops, op)
		onSec[w.ID] = true
		old := *c
		ad.Old[w.ID] = &old
		c.ID = w.ID
		ad.Have = append(ad.Have, c)
	}
	var visit func(secParent, parent fileid.ID)
	visit = func(secParent, parent fileid.ID) {
		if visited[secParent] {
			return
		}
		visited[secParent] = true
		for _, h := range children[secParent] {
			c := *h
			c.Parent = parent
			s := c.Slot
			unknown := h.ID == "" || IsUnknownDir(h.ID)
			dead := !unknown && !alive[h.ID]
			w := want[s]
			if (unknown || dead) && w != nil && w.Kind == h.Kind && w.Kind == tree.KindRegular && !onSec[w.ID] {
				// Chosen below, among the links of w.ID the secondary
				// holds: one whose content matches is adopted first.
				ad.Have = append(ad.Have, &c)
				if _, ok := cands[w.ID]; !ok {
					order = append(order, w.ID)
				}
				cands[w.ID] = append(cands[w.ID], cand{e: &c, dead: dead, old: h.ID})
				continue
			}
			if (unknown || dead) && w != nil && sameSpecial(w, h) && !onSec[w.ID] && (!dead || rekeyed[h.ID] == "") {
				// A symlink with the same target, a FIFO, socket or device
				// of the same kind and number: nothing to send either way,
				// but its inode (and a hardlink group) is kept.
				adoptAt(&c, h, w, dead)
				continue
			}
			if (unknown || dead) && w != nil && w.Kind == h.Kind && w.Kind == tree.KindDir &&
				!onSec[w.ID] && w.ID != rootID {
				adoptAt(&c, h, w, dead)
				if h.Kind == tree.KindDir {
					visit(h.ID, w.ID)
				}
				continue
			}
			if IsUnknownDir(h.ID) {
				c.ID = "" // not adopted: it leaves whole, with what it holds
				ad.Have = append(ad.Have, &c)
				hide(h.ID)
				continue
			}
			ad.Have = append(ad.Have, &c)
			if h.Kind == tree.KindDir && h.ID != "" {
				visit(h.ID, h.ID)
			}
		}
	}
	// Top-down from every parent that is not itself a listed directory:
	// the root, and directories in the staging area.
	var tops []fileid.ID
	for p := range children {
		if !isEntry[p] && !IsUnknownDir(p) {
			tops = append(tops, p)
		}
	}
	sortIDs(tops)
	for _, p := range tops {
		visit(p, p)
	}
	// Known directories not reached from a top (an inconsistent listing):
	// their content is kept as listed.
	var rest []fileid.ID
	for p := range children {
		if !visited[p] && !IsUnknownDir(p) {
			rest = append(rest, p)
		}
	}
	sortIDs(rest)
	for _, p := range rest {
		visit(p, p)
	}
	for _, id := range order {
		w := wantByID[id]
		cs := cands[id]
		best := cs[0]
		for _, c := range cs {
			if c.e.Size == w.Size && c.e.Meta.Mtime == w.Meta.Mtime {
				best = c
				break
			}
		}
		op := Op{Kind: Adopt, ID: id, To: best.e.Slot, Entry: adoptEntry(want[best.e.Slot])}
		if best.dead && rekeyed[best.old] == "" {
			op.From = best.e.Slot
			rekeyed[best.old] = id
		}
		// (A link of a dead ID re-keyed already is adopted without From:
		// the agent copies it into an inode of its own.)
		ad.Ops = append(ad.Ops, op)
		old := *best.e
		ad.Old[id] = &old
		best.e.ID = id
	}
	// Other links of a re-keyed file now bear the new ID on the secondary.
	for _, h := range ad.Have {
		if h.Kind == tree.KindDir || h.ID == "" {
			continue
		}
		if id, ok := rekeyed[h.ID]; ok {
			h.ID = id
		}
	}
	return ad
}

func sortEntries(es []*tree.Entry) {
	sort.Slice(es, func(i, j int) bool { return es[i].Name < es[j].Name })
}

func sortIDs(ids []fileid.ID) {
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
}

// sameSpecial reports whether h, on the secondary, can only be w: a
// symlink with w's target, or a special file of w's kind (and device
// number).
func sameSpecial(w, h *tree.Entry) bool {
	if w.Kind != h.Kind {
		return false
	}
	switch w.Kind {
	case tree.KindSymlink:
		return w.Target == h.Target
	case tree.KindFIFO, tree.KindSocket:
		return true
	case tree.KindChar, tree.KindBlock:
		return w.Rdev == h.Rdev
	}
	return false
}

// adoptEntry is what an Adopt op carries of the primary's entry: what the
// agent checks (kind, and a symlink's target), not the metadata, which the
// metadata phase applies (a smaller op on the wire).
func adoptEntry(w *tree.Entry) *tree.Entry {
	return &tree.Entry{ID: w.ID, Kind: w.Kind, Target: w.Target, Rdev: w.Rdev}
}
