package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/georep/georep/internal/changelog"
	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/plan"
	"github.com/georep/georep/internal/protocol"
	"github.com/georep/georep/internal/scan"
	"github.com/georep/georep/internal/tree"
	"golang.org/x/sys/unix"
)

// ErrNeedCrawl reports a batch the journal's records cannot cover (a gap,
// or a slot whose parent the secondary lacks): crawl instead.
var ErrNeedCrawl = errors.New("the changelogs cannot cover this batch: crawl")

// BatchJob turns the records of a batch of changelogs into a job. Entry
// records name slots; each named slot is reconciled against the primary's
// live tree and the secondary's, so the order and merging of kernel events
// does not matter and a replayed batch converges. A directory new to the
// secondary has its whole subtree added (it may have been moved in from
// outside, which makes no events below it).
func (s *Session) BatchJob(ctx context.Context, recs []changelog.Record) (*Job, error) {
	slots := map[tree.Slot]bool{}
	dataIDs := map[fileid.ID]tree.Slot{}
	metaIDs := map[fileid.ID]tree.Slot{}
	for _, r := range recs {
		switch r.Type {
		case changelog.Gap:
			return nil, fmt.Errorf("%w (gap %s)", ErrNeedCrawl, r.Reason)
		case changelog.Entry:
			slots[tree.Slot{Parent: r.Parent, Name: r.Name}] = true
			if r.Op == changelog.OpRename {
				slots[tree.Slot{Parent: r.NewParent, Name: r.NewName}] = true
			}
			if createsInode(r.Op) {
				// A new inode's metadata (its inherited default ACL too:
				// the kernel records no change of its own for that) goes
				// with it, also when the entry is already on the
				// secondary: a batch replayed after a crash between its
				// entry ops and its metadata finds nothing to create.
				if _, ok := metaIDs[r.ID]; !ok {
					metaIDs[r.ID] = tree.Slot{Parent: r.Parent, Name: r.Name}
				}
			}
		case changelog.Data:
			dataIDs[r.ID] = tree.Slot{Parent: r.Parent, Name: r.Name}
			if r.Parent != "" {
				slots[tree.Slot{Parent: r.Parent, Name: r.Name}] = true
			}
		case changelog.Meta:
			metaIDs[r.ID] = tree.Slot{Parent: r.Parent, Name: r.Name}
			if r.Parent != "" {
				slots[tree.Slot{Parent: r.Parent, Name: r.Name}] = true
			}
		}
	}
	t0 := time.Now()
	pl := newPrimaryLookup(s)
	defer pl.close()
	pl.dropExcludedSlots(slots, dataIDs, metaIDs)
	defer func() {
		s.log.Debug("batch planned", "records", len(recs), "slots", len(slots), "took", time.Since(t0))
	}()
	want := map[tree.Slot]*tree.Entry{}
	for sl := range slots {
		e, err := pl.at(sl)
		if err != nil {
			return nil, err
		}
		if e != nil {
			want[sl] = e
		}
	}
	t1 := time.Now()
	have, infos, err := s.lookupSecondary(ctx, slots, want)
	if err != nil {
		return nil, err
	}
	s.log.Debug("batch looked up", "primary", t1.Sub(t0), "secondary", time.Since(t1))
	// Directories the secondary does not have: add their subtrees.
	var grown bool
	for sl, e := range want {
		if e.Kind != tree.KindDir || infos[e.ID].Exists {
			continue
		}
		sub, err := pl.subtree(ctx, e.ID)
		if err != nil {
			return nil, err
		}
		for i := range sub {
			c := &sub[i]
			if !slots[c.Slot] {
				slots[c.Slot] = true
				want[c.Slot] = c
				grown = true
			}
		}
		_ = sl
	}
	if grown {
		if have, infos, err = s.lookupSecondary(ctx, slots, want); err != nil {
			return nil, err
		}
	}
	// Every wanted slot needs its parent on the secondary, or arriving now.
	arriving := map[fileid.ID]bool{}
	for _, e := range want {
		if e.Kind == tree.KindDir {
			arriving[e.ID] = true
		}
	}
	for sl := range want {
		if sl.Parent != s.rootID && !infos[sl.Parent].Exists && !arriving[sl.Parent] {
			return nil, fmt.Errorf("%w (parent %s of %q is not on the secondary)", ErrNeedCrawl, sl.Parent.Short(), sl.Name)
		}
	}
	in := plan.Input{Want: want, Have: have, IDs: infos, Alive: s.opener.Alive}
	for sl := range slots {
		in.Slots = append(in.Slots, sl)
	}
	plan.SortSlots(in.Slots)
	p := plan.Make(in)
	job := &Job{Plan: p, paths: pl.paths}

	newIDs := map[fileid.ID]bool{}
	for _, nf := range p.NewFiles {
		newIDs[nf.Entry.ID] = true
	}
	metaDone := map[fileid.ID]bool{}
	addMeta := func(e *tree.Entry, hint tree.Slot, full bool) {
		if metaDone[e.ID] {
			return
		}
		metaDone[e.ID] = true
		job.Meta = append(job.Meta, MetaItem{Entry: e, Hint: hint, Full: full})
	}
	touched := map[fileid.ID]bool{}
	for _, op := range p.Ops {
		switch op.Kind {
		case plan.Mkdir, plan.Symlink, plan.Mknod, plan.Adopt:
			addMeta(op.Entry, op.To, true)
		}
		if op.From.Parent != "" {
			touched[op.From.Parent] = true
		}
		if op.To.Parent != "" {
			touched[op.To.Parent] = true
		}
	}
	for _, nf := range p.NewFiles {
		for _, sl := range nf.Slots {
			touched[sl.Parent] = true
		}
	}
	// Changed content of files the secondary has.
	for id, hint := range dataIDs {
		if newIDs[id] {
			continue
		}
		e, err := pl.byID(id)
		if err != nil || e == nil || e.Kind != tree.KindRegular {
			continue // gone meanwhile, or not a file
		}
		if w := want[hint]; w == nil || w.ID != id {
			hint = tree.Slot{}
		}
		if !infos[id].Exists && !inWant(want, id) {
			continue
		}
		if hint.Parent != "" {
			e.Slot = hint
		}
		old := &tree.Entry{Size: e.Size}
		if h := have[hint]; h != nil && h.ID == id {
			old = h
		}
		if arrivedBefore(old, e, time.Now()) {
			addMeta(e, hint, true)
			continue
		}
		job.Data = append(job.Data, DataItem{Entry: e, Hint: hint, Old: old})
		if hint.Parent != "" {
			touched[hint.Parent] = true // replaced by rename: the directory's mtime changes
		}
		addMeta(e, hint, true)
	}
	dataSet := map[fileid.ID]bool{}
	for _, d := range job.Data {
		dataSet[d.Entry.ID] = true
	}
	for id, hint := range metaIDs {
		if newIDs[id] {
			continue
		}
		e, err := pl.byID(id)
		if err != nil || e == nil {
			continue
		}
		if w := want[hint]; w == nil || w.ID != id {
			hint = tree.Slot{}
		}
		// Metadata is read from the live file, which may have changed
		// after this batch's window; a file whose content the secondary
		// may lack gets its data checked too, so an mtime is never set on
		// stale content.
		if e.Kind == tree.KindRegular && !dataSet[id] && (infos[id].Exists || inWant(want, id)) {
			old := have[hint]
			if old == nil || old.ID != id || old.Size != e.Size || old.Meta.Mtime != e.Meta.Mtime {
				if old == nil || old.ID != id {
					old = &tree.Entry{Size: e.Size}
				}
				job.Data = append(job.Data, DataItem{Entry: e, Hint: hint, Old: old})
				dataSet[id] = true
				if hint.Parent != "" {
					touched[hint.Parent] = true
				}
			}
		}
		addMeta(e, hint, true)
	}
	for id := range touched {
		if metaDone[id] {
			continue
		}
		e, err := pl.byID(id)
		if err != nil || e == nil || e.Kind != tree.KindDir {
			continue
		}
		addMeta(e, tree.Slot{}, false)
	}
	return job, nil
}

func inWant(want map[tree.Slot]*tree.Entry, id fileid.ID) bool {
	for _, e := range want {
		if e.ID == id {
			return true
		}
	}
	return false
}

// lookupSecondary asks what the secondary holds at the slots and about
// every ID that occurs there or in want.
func (s *Session) lookupSecondary(ctx context.Context, slots map[tree.Slot]bool, want map[tree.Slot]*tree.Entry) (map[tree.Slot]*tree.Entry, map[fileid.ID]plan.IDInfo, error) {
	req := &protocol.Lookup{}
	for sl := range slots {
		req.Slots = append(req.Slots, sl)
	}
	idSet := map[fileid.ID]bool{}
	for _, e := range want {
		idSet[e.ID] = true
		idSet[e.Parent] = true
	}
	for id := range idSet {
		req.IDs = append(req.IDs, id)
	}
	m, err := s.conn.Call(ctx, req)
	if err != nil {
		return nil, nil, fmt.Errorf("look up slots on the secondary: %w", err)
	}
	ok := m.(*protocol.LookupOK)
	if len(ok.Entries) != len(req.Slots) || len(ok.Infos) != len(req.IDs) {
		return nil, nil, fmt.Errorf("%w: lookup answer does not match the question", protocol.ErrClosed)
	}
	have := map[tree.Slot]*tree.Entry{}
	infos := map[fileid.ID]plan.IDInfo{}
	for i, id := range req.IDs {
		infos[id] = ok.Infos[i]
	}
	var occupants []fileid.ID
	for i, sl := range req.Slots {
		if e := ok.Entries[i]; e != nil {
			have[sl] = e
			if e.ID != "" && !idSet[e.ID] {
				idSet[e.ID] = true
				occupants = append(occupants, e.ID)
			}
		}
	}
	if len(occupants) > 0 {
		m, err := s.conn.Call(ctx, &protocol.Lookup{IDs: occupants})
		if err != nil {
			return nil, nil, fmt.Errorf("look up IDs on the secondary: %w", err)
		}
		ok := m.(*protocol.LookupOK)
		if len(ok.Infos) != len(occupants) {
			return nil, nil, fmt.Errorf("%w: lookup answer does not match the question", protocol.ErrClosed)
		}
		for i, id := range occupants {
			infos[id] = ok.Infos[i]
		}
	}
	return have, infos, nil
}

// primaryLookup reads the primary's live state by file handle, keeping the
// directories it opened for one batch.
type primaryLookup struct {
	s     *Session
	dirs  map[fileid.ID]int    // open directory descriptors (-1: not usable)
	rel   map[fileid.ID]string // source-relative path of a directory ("" = root)
	paths map[fileid.ID]string
}

func newPrimaryLookup(s *Session) *primaryLookup {
	return &primaryLookup{s: s, dirs: map[fileid.ID]int{}, rel: map[fileid.ID]string{s.rootID: ""}, paths: map[fileid.ID]string{}}
}

func (pl *primaryLookup) close() {
	for _, fd := range pl.dirs {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// dir opens a directory of the source by ID; -1 when it is gone or lies
// outside the source root now.
func (pl *primaryLookup) dir(id fileid.ID) (int, error) {
	if id == pl.s.rootID {
		return pl.s.srcFD, nil
	}
	if fd, ok := pl.dirs[id]; ok {
		return fd, nil
	}
	f, err := pl.s.opener.Open(id, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		if errors.Is(err, fileid.ErrStale) || errors.Is(err, unix.ENOTDIR) {
			pl.dirs[id] = -1
			return -1, nil
		}
		return -1, err
	}
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		return -1, err
	}
	p, err := os.Readlink(procPath(fd))
	rel, rerr := filepath.Rel(pl.s.cfg.Source, p)
	if err != nil || rerr != nil || rel == ".." || strings.HasPrefix(rel, "../") || strings.HasSuffix(p, " (deleted)") {
		unix.Close(fd)
		pl.dirs[id] = -1 // moved out of the source, or deleted
		return -1, nil
	}
	if rel == "." {
		rel = ""
	}
	pl.dirs[id] = fd
	pl.rel[id] = rel
	return fd, nil
}

// at returns the primary's entry at a slot, or nil.
func (pl *primaryLookup) at(sl tree.Slot) (*tree.Entry, error) {
	if !tree.ValidName(sl.Name) || (sl.Parent == pl.s.rootID && sl.Name == ".georep") {
		return nil, nil
	}
	fd, err := pl.dir(sl.Parent)
	if err != nil || fd < 0 {
		return nil, err
	}
	rel := pl.rel[sl.Parent]
	p := sl.Name
	if rel != "" {
		p = rel + "/" + sl.Name
	}
	if pl.excluded(p) {
		return nil, nil
	}
	e, err := pl.statAt(fd, sl.Name)
	if err != nil || e == nil {
		if err != nil {
			err = fmt.Errorf("primary %q: %w", p, err)
		}
		return nil, err
	}
	if pl.s.filter.ExcludedPath(p, e.Kind == tree.KindDir) {
		return nil, nil
	}
	e.Slot = sl
	if _, ok := pl.paths[e.ID]; !ok {
		pl.paths[e.ID] = p
	}
	return e, nil
}

// statAt describes the primary's entry name in directory fd; nil when
// there is none.
func (pl *primaryLookup) statAt(fd int, name string) (*tree.Entry, error) {
	e, err := scan.Stat(pl.s.fsid, fd, name)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil, nil
		}
		return nil, err
	}
	return &e, nil
}

// excluded reports whether rel lies in one of ExcludePaths (the state
// directory); the exclude rules are applied by the callers, which know the
// entry's kind.
func (pl *primaryLookup) excluded(rel string) bool {
	abs := filepath.Join(pl.s.cfg.Source, rel)
	for _, x := range pl.s.cfg.ExcludePaths {
		if abs == x || strings.HasPrefix(abs, x+"/") {
			return true
		}
	}
	return false
}

// byID describes a file by its ID (nil when it is gone).
func (pl *primaryLookup) byID(id fileid.ID) (*tree.Entry, error) {
	var fd int
	if id == pl.s.rootID {
		fd = pl.s.srcFD
	} else {
		f, err := pl.s.opener.Open(id, unix.O_PATH)
		if err != nil {
			if errors.Is(err, fileid.ErrStale) {
				return nil, nil
			}
			return nil, err
		}
		defer f.Close()
		fd = int(f.Fd())
	}
	e, err := scan.Stat(pl.s.fsid, fd, "")
	if err != nil {
		return nil, nil
	}
	e.ID = id
	return &e, nil
}

// subtree lists everything below directory id on the primary.
func (pl *primaryLookup) subtree(ctx context.Context, id fileid.ID) ([]tree.Entry, error) {
	fd, err := pl.dir(id)
	if err != nil || fd < 0 {
		return nil, err
	}
	res, err := scan.Walk(ctx, filepath.Join(pl.s.cfg.Source, pl.rel[id]), scan.Options{ExcludePaths: pl.s.cfg.ExcludePaths,
		Filter: pl.s.filter, FilterBase: pl.rel[id],
		OnError: func(string, error) {}})
	if err != nil {
		return nil, err
	}
	return res.Entries, nil
}

// createsInode reports whether an entry op makes a new inode, whose
// metadata must then be applied in full.
func createsInode(op changelog.Op) bool {
	switch op {
	case changelog.OpCreate, changelog.OpMkdir, changelog.OpMknod, changelog.OpSymlink:
		return true
	}
	return false
}
