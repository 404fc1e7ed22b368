package worker

import (
	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/filter"
	"github.com/georep/georep/internal/protocol"
	"github.com/georep/georep/internal/tree"
)

// Excluded entries: the crawl does not see them on the primary, and what
// the secondary already holds at an excluded path is kept there (rsync
// without --delete-excluded). The two functions below are the only places
// the planner's inputs are narrowed for that: one for a crawl, one for a
// batch of changelogs.

// keepExcluded drops from the secondary's listing the entries at excluded
// paths (and everything below them), so the plan neither deletes nor
// touches them. An entry whose ID the primary still has elsewhere stays in
// the listing: it was moved out of the excluded place, and moving it on
// the secondary beats sending it again.
func keepExcluded(sec []*tree.Entry, prim []*tree.Entry, rootID fileid.ID, f *filter.Filter) []*tree.Entry {
	if f.Empty() || len(sec) == 0 {
		return sec
	}
	dirs := make(map[fileid.ID]*tree.Entry)
	for _, e := range sec {
		if e.Kind == tree.KindDir && e.ID != "" {
			dirs[e.ID] = e
		}
	}
	type dirState struct {
		path     string
		known    bool // the path could be built up to the root
		excluded bool // the directory or one above it is excluded
	}
	memo := map[fileid.ID]dirState{rootID: {known: true}}
	var dirOf func(id fileid.ID, depth int) dirState
	dirOf = func(id fileid.ID, depth int) dirState {
		if st, ok := memo[id]; ok {
			return st
		}
		e := dirs[id]
		if e == nil || depth > 4096 {
			return dirState{}
		}
		memo[id] = dirState{} // a cycle reads as unknown
		parent := dirOf(e.Parent, depth+1)
		st := dirState{known: parent.known}
		if parent.known {
			st.path = join(parent.path, e.Name)
			st.excluded = parent.excluded || f.Excluded(st.path, true)
		}
		memo[id] = st
		return st
	}
	wanted := make(map[fileid.ID]bool, len(prim))
	for _, e := range prim {
		wanted[e.ID] = true
	}
	out := sec[:0:0]
	for _, e := range sec {
		parent := dirOf(e.Parent, 0)
		drop := parent.known && (parent.excluded || f.Excluded(join(parent.path, e.Name), e.Kind == tree.KindDir))
		if drop && !(e.ID != "" && wanted[e.ID]) {
			continue
		}
		out = append(out, e)
	}
	return out
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// dropExcludedSlots takes out of a batch the slots at excluded paths and
// the data and metadata records of files there, so that what the secondary
// holds at them is kept as it is.
func (pl *primaryLookup) dropExcludedSlots(slots map[tree.Slot]bool, dataIDs, metaIDs map[fileid.ID]tree.Slot) {
	f := pl.s.filter
	if f.Empty() || pl.s.cfg.DeleteExcluded {
		return
	}
	excluded := func(sl tree.Slot) bool {
		fd, err := pl.dir(sl.Parent)
		if err != nil || fd < 0 {
			return false // the directory is gone: nothing to tell by
		}
		p := join(pl.rel[sl.Parent], sl.Name)
		if e, err := pl.statAt(fd, sl.Name); err == nil && e != nil {
			return f.ExcludedPath(p, e.Kind == tree.KindDir)
		}
		// Gone from the primary: excluded whatever it was.
		return f.ExcludedPath(p, true) || f.ExcludedPath(p, false)
	}
	for sl := range slots {
		if excluded(sl) {
			delete(slots, sl)
		}
	}
	for _, m := range []map[fileid.ID]tree.Slot{dataIDs, metaIDs} {
		for id, sl := range m {
			if sl.Parent != "" && excluded(sl) {
				delete(m, id)
			}
		}
	}
}

// remetaChangedOnSecondary re-sends the full metadata (xattrs and ACLs
// made exact) of the files changed on the secondary since it last
// recorded an stime (their ctime there is later): an xattr added or
// changed there is otherwise invisible to the crawl, whose listing carries
// no xattrs. A secondary that never committed (Committed 0) is compared as
// before.
func remetaChangedOnSecondary(job *Job, prim []*tree.Entry, sec []*tree.Entry, end *protocol.ListEnd) {
	if end == nil || end.Committed <= 0 {
		return
	}
	changed := map[fileid.ID]bool{}
	for _, e := range sec {
		if e.ID != "" && e.Kind != tree.KindSymlink && e.Ctime > end.Committed {
			changed[e.ID] = true
		}
	}
	if len(changed) == 0 {
		return
	}
	for i := range job.Meta {
		if m := &job.Meta[i]; changed[m.Entry.ID] {
			m.Full = true
			delete(changed, m.Entry.ID)
		}
	}
	for _, e := range prim {
		if changed[e.ID] {
			delete(changed, e.ID)
			job.Meta = append(job.Meta, MetaItem{Entry: e, Hint: e.Slot, Full: true})
		}
	}
}
