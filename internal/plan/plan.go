// Package plan owns the decision at the heart of georep: given what the
// primary holds at a set of dirty slots (directory entries) and what the
// secondary holds there, which entry operations turn the secondary into the
// primary. It is a pure function over in-memory descriptions — no I/O — so it
// can be tested exhaustively; the crawl (all slots dirty) and the journal
// (the slots named by a batch of changelog records) both feed it. Before a
// crawl is planned, AdoptByPath (adopt.go) matches by path what the
// secondary holds under no ID the primary has.
//
// Invariants the plan keeps:
//   - Identity is preserved: an ID already on the secondary is moved or
//     linked, never deleted and re-created, so a rename never re-sends data.
//   - Nothing is destroyed while the primary may still want it: an occupant
//     that has to leave its slot is moved to the secondary's staging area
//     (".georep/tmp") when it is wanted elsewhere or still alive on the
//     primary, and only removed when the primary no longer has it.
//   - Operations are ordered: every departure (stage, unlink) comes before
//     any arrival, arrivals come parents first, then strays are purged and
//     dead trees removed.
//     So a slot is always free when something is put into it, and a directory
//     is never moved into its own subtree.
//   - The plan is idempotent in effect: applying it to a secondary that
//     already matches yields no operations.
package plan

import (
	"sort"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/tree"
)

// Kind is the kind of an entry operation on the secondary.
type Kind uint8

// Operation kinds. The values are part of the wire protocol.
const (
	// Stage moves the occupant of From (ID, or an unknown entry when ID is
	// empty) into the staging area. Staged unknown entries are removed by
	// PurgeStrays.
	Stage Kind = iota + 1
	// Move puts ID at To, taking it from the staging area or, for a
	// directory, from wherever the secondary has it.
	Move
	// Link adds a hardlink of the existing non-directory ID at To.
	Link
	// Mkdir, Symlink and Mknod create ID at To as described by Entry.
	Mkdir
	Symlink
	Mknod
	// Adopt claims the unknown entry at To (same kind) as ID: a pre-seeded
	// secondary keeps its data and only differences are sent.
	Adopt
	// Unlink removes the link From of the non-directory ID.
	Unlink
	// RemoveTree removes the directory ID (staged or in place) and whatever
	// is left inside it.
	RemoveTree
	// Drop forgets the non-directory ID once it has no link left in the
	// tree: the primary no longer has it.
	Drop
	// PurgeStrays removes every unknown entry staged by this plan.
	PurgeStrays
)

var kindNames = map[Kind]string{Stage: "STAGE", Move: "MOVE", Link: "LINK", Mkdir: "MKDIR", Symlink: "SYMLINK",
	Mknod: "MKNOD", Adopt: "ADOPT", Unlink: "UNLINK", RemoveTree: "RMTREE", Drop: "DROP", PurgeStrays: "PURGE"}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return "OP?"
}

// Op is one entry operation for the secondary.
type Op struct {
	Kind  Kind
	ID    fileid.ID
	From  tree.Slot   // Stage, Unlink: where the occupant is now
	To    tree.Slot   // Move, Link, Mkdir, Symlink, Mknod, Adopt: where it goes
	Entry *tree.Entry // creates and Adopt: the primary's description
}

// NewFile is a regular file the secondary lacks: it is created with its
// content in the data phase, then linked at every slot in Slots.
type NewFile struct {
	Entry *tree.Entry
	Slots []tree.Slot
}

// IDInfo is what the secondary knows about an ID.
type IDInfo struct {
	Exists bool
	Kind   tree.Kind
	Links  int       // links in the tree (not counting the secondary's index)
	Dir    tree.Slot // for a directory, where it is
	Staged bool      // it sits in the staging area (left there by an earlier batch)
}

// Input is everything the planner needs.
type Input struct {
	// Slots are the dirty slots, in a deterministic order.
	Slots []tree.Slot
	// Want is the primary's entry at each dirty slot (absent = no entry).
	Want map[tree.Slot]*tree.Entry
	// Have is the secondary's entry at each dirty slot (absent = no entry);
	// an Entry with an empty ID is an entry georep does not know.
	Have map[tree.Slot]*tree.Entry
	// IDs describes, for the secondary, every ID that occurs in Want or Have.
	IDs map[fileid.ID]IDInfo
	// Alive reports whether the primary still has an ID that is not wanted
	// at any dirty slot. The crawl, which sees the whole primary, answers
	// false; the journal path asks the kernel by file handle.
	Alive func(fileid.ID) bool
}

// Plan is the result: entry operations in order, then the new files.
type Plan struct {
	Ops      []Op
	NewFiles []NewFile
	// Limbo lists directories staged because the primary still has them
	// somewhere outside the dirty slots.
	Limbo []fileid.ID
}

// Make computes the plan for in.
func Make(in Input) Plan {
	alive := in.Alive
	if alive == nil {
		alive = func(fileid.ID) bool { return false }
	}
	wantAt := map[fileid.ID][]tree.Slot{}
	// arriving: wanted at a dirty slot it does not hold yet. Only then is a
	// departing link worth staging: a link staged for a slot the ID already
	// holds would stay in the staging area for ever.
	arriving := map[fileid.ID]bool{}
	for _, s := range in.Slots {
		if w := in.Want[s]; w != nil {
			wantAt[w.ID] = append(wantAt[w.ID], s)
			if h := in.Have[s]; h == nil || h.ID != w.ID {
				arriving[w.ID] = true
			}
		}
	}
	var p Plan
	var attach, cleanup []Op
	staged := map[fileid.ID]bool{}
	adopted := map[tree.Slot]bool{}
	adoptedID := map[fileid.ID]bool{}
	adoptAt := map[fileid.ID]tree.Slot{}
	strays := false
	dropped := map[fileid.ID]bool{}

	// Departures: every occupant that does not match what the primary wants
	// leaves its slot now.
	for _, s := range in.Slots {
		h, w := in.Have[s], in.Want[s]
		if h == nil {
			continue
		}
		if w != nil && h.ID != "" && h.ID == w.ID {
			continue
		}
		if h.ID == "" {
			// An entry georep did not make. Adopt it when it can only be
			// the wanted file (same kind, the secondary has no copy yet),
			// so a pre-seeded secondary is not copied again.
			if w != nil && h.Kind == w.Kind && (w.Kind == tree.KindRegular || w.Kind == tree.KindDir) &&
				!in.IDs[w.ID].Exists && !adoptedID[w.ID] {
				adopted[s] = true
				adoptedID[w.ID] = true
				adoptAt[w.ID] = s
				continue
			}
			p.Ops = append(p.Ops, Op{Kind: Stage, From: s})
			strays = true
			continue
		}
		x := h.ID
		switch {
		case h.Kind == tree.KindDir:
			p.Ops = append(p.Ops, Op{Kind: Stage, ID: x, From: s})
			staged[x] = true
			if len(wantAt[x]) == 0 {
				if alive(x) {
					p.Limbo = append(p.Limbo, x)
				} else {
					cleanup = append(cleanup, Op{Kind: RemoveTree, ID: x})
				}
			}
		case arriving[x] && !staged[x] && !in.IDs[x].Staged:
			// The staging area holds one link per ID: one left there by
			// a run cut short serves the arrival, this one is unlinked.
			p.Ops = append(p.Ops, Op{Kind: Stage, ID: x, From: s})
			staged[x] = true
		default:
			p.Ops = append(p.Ops, Op{Kind: Unlink, ID: x, From: s})
			if len(wantAt[x]) == 0 && !alive(x) && !dropped[x] {
				dropped[x] = true
				cleanup = append(cleanup, Op{Kind: Drop, ID: x})
			}
		}
	}

	// Arrivals, parents before children.
	placed := map[fileid.ID]bool{}
	newFile := map[fileid.ID]int{}
	attachSlot := map[fileid.ID]tree.Slot{} // directories arriving in this plan
	for _, s := range in.Slots {
		w := in.Want[s]
		if w == nil || w.Kind != tree.KindDir {
			continue
		}
		if h := in.Have[s]; h != nil && h.ID == w.ID {
			continue
		}
		if _, dup := attachSlot[w.ID]; !dup {
			attachSlot[w.ID] = s
		}
	}
	visited := map[tree.Slot]bool{}
	var visit func(s tree.Slot)
	visit = func(s tree.Slot) {
		if visited[s] {
			return
		}
		visited[s] = true
		w := in.Want[s]
		if ps, ok := attachSlot[w.Parent]; ok {
			visit(ps)
		}
		// The adopted slot of an ID comes first: the adoption creates the
		// ID, its other slots link it (not a second new file).
		if as, ok := adoptAt[w.ID]; ok && as != s {
			visit(as)
		}
		if h := in.Have[s]; h != nil && h.ID == w.ID && h.ID != "" {
			return
		}
		if adopted[s] {
			attach = append(attach, Op{Kind: Adopt, ID: w.ID, To: s, Entry: w})
			placed[w.ID] = true
			return
		}
		info := in.IDs[w.ID]
		exists := info.Exists || staged[w.ID] || placed[w.ID]
		if w.Kind == tree.KindDir {
			if attachSlot[w.ID] != s {
				return // a directory has one place; a second one is an inconsistent listing
			}
			if exists {
				attach = append(attach, Op{Kind: Move, ID: w.ID, To: s})
			} else {
				attach = append(attach, Op{Kind: Mkdir, ID: w.ID, To: s, Entry: w})
			}
			placed[w.ID] = true
			return
		}
		if i, ok := newFile[w.ID]; ok {
			p.NewFiles[i].Slots = append(p.NewFiles[i].Slots, s)
			return
		}
		switch {
		case placed[w.ID]:
			attach = append(attach, Op{Kind: Link, ID: w.ID, To: s})
		case staged[w.ID] || info.Staged:
			// Staged by this plan, or left in the staging area by a run
			// cut short: taken from there (a link would leave it behind).
			attach = append(attach, Op{Kind: Move, ID: w.ID, To: s})
		case info.Exists:
			attach = append(attach, Op{Kind: Link, ID: w.ID, To: s})
		case w.Kind == tree.KindRegular:
			newFile[w.ID] = len(p.NewFiles)
			p.NewFiles = append(p.NewFiles, NewFile{Entry: w, Slots: []tree.Slot{s}})
		case w.Kind == tree.KindSymlink:
			attach = append(attach, Op{Kind: Symlink, ID: w.ID, To: s, Entry: w})
		default:
			attach = append(attach, Op{Kind: Mknod, ID: w.ID, To: s, Entry: w})
		}
		placed[w.ID] = true
	}
	for _, s := range in.Slots {
		if in.Want[s] != nil {
			visit(s)
		}
	}
	p.Ops = append(p.Ops, attach...)
	// Strays go before the removals: a file the primary no longer has may
	// keep a link inside a stray directory until it is purged.
	if strays {
		p.Ops = append(p.Ops, Op{Kind: PurgeStrays})
	}
	// A directory that was staged as dead but turned out wanted was moved
	// back above; removals only take what nobody placed.
	for _, op := range cleanup {
		if op.Kind == RemoveTree && placed[op.ID] {
			continue
		}
		p.Ops = append(p.Ops, op)
	}
	return p
}

// SortSlots orders slots deterministically (by parent ID, then name).
func SortSlots(slots []tree.Slot) {
	sort.Slice(slots, func(i, j int) bool {
		if slots[i].Parent != slots[j].Parent {
			return slots[i].Parent < slots[j].Parent
		}
		return slots[i].Name < slots[j].Name
	})
}
