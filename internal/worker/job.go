package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/plan"
	"github.com/georep/georep/internal/protocol"
	"github.com/georep/georep/internal/scan"
	"github.com/georep/georep/internal/tree"
)

// Job is a plan with its data and metadata work: what one crawl or one
// batch of changelogs turns into.
type Job struct {
	Plan plan.Plan
	// Data lists known files whose content differs on the secondary.
	Data []DataItem
	// Meta lists files whose metadata must be (re)applied.
	Meta []MetaItem
	// Check lists files whose size and mtime match the secondary's but
	// whose content is compared by hash (--checksum, or read too soon
	// after a change by an earlier sync); those that differ go as data.
	Check []DataItem
	// Unreadable lists primary directories the crawl could not read; each
	// is reported as a failure and its secondary content left alone.
	Unreadable []scan.Unreadable
	// WalkStarted is when the crawl's walk of the primary began (Unix ns):
	// nothing changed after it is claimed by this job, so a stime recorded
	// for the job must not be later.
	WalkStarted int64
	// paths gives a source-relative path per ID, for messages and for
	// reading by path when handles are not available.
	paths map[fileid.ID]string
}

// DataItem is a known file whose content must be updated.
type DataItem struct {
	Entry *tree.Entry
	Hint  tree.Slot // where the secondary has it (after the plan's ops)
	Old   *tree.Entry
}

// MetaItem is metadata to apply; Full includes xattrs and ACLs.
type MetaItem struct {
	Entry *tree.Entry
	Hint  tree.Slot
	Full  bool
}

// Empty reports whether the job has nothing to do.
func (j *Job) Empty() bool {
	return len(j.Plan.Ops) == 0 && len(j.Plan.NewFiles) == 0 && len(j.Data) == 0 && len(j.Meta) == 0 && len(j.Check) == 0
}

// Adoptions counts the entries the job adopts (matched by path).
func (j *Job) Adoptions() int {
	n := 0
	for _, op := range j.Plan.Ops {
		if op.Kind == plan.Adopt {
			n++
		}
	}
	return n
}

// Counts for logs and summaries.
func (j *Job) String() string {
	return fmt.Sprintf("%d entry ops, %d new files, %d changed files, %d metadata", len(j.Plan.Ops), len(j.Plan.NewFiles), len(j.Data), len(j.Meta))
}

// listSecondary fetches the secondary's whole tree.
func (s *Session) listSecondary(ctx context.Context) ([]*tree.Entry, *protocol.ListEnd, error) {
	wait, err := s.startList()
	if err != nil {
		return nil, nil, err
	}
	if err := s.conn.Flush(); err != nil {
		return nil, nil, err
	}
	return wait(ctx)
}

// listWait waits for a listing asked for by startList.
type listWait func(ctx context.Context) ([]*tree.Entry, *protocol.ListEnd, error)

// startList queues a List request (the caller flushes) and returns the
// wait for its answer.
func (s *Session) startList() (listWait, error) {
	var entries []*tree.Entry
	done := make(chan error, 1)
	var end *protocol.ListEnd
	err := s.conn.Send(&protocol.List{}, func(m protocol.Message, err error) bool {
		if err != nil {
			done <- err
			return true
		}
		switch m := m.(type) {
		case *protocol.ListChunk:
			entries = append(entries, m.Entries...)
			return false
		case *protocol.ListEnd:
			end = m
			done <- nil
			return true
		}
		done <- fmt.Errorf("unexpected reply %T to List", m)
		return true
	})
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) ([]*tree.Entry, *protocol.ListEnd, error) {
		select {
		case err := <-done:
			if err != nil {
				return nil, nil, fmt.Errorf("list the secondary: %w", err)
			}
			return entries, end, nil
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}, nil
}

// Crawl compares the whole primary tree with the whole secondary tree and
// returns the job that makes them equal. stime is the last time the
// secondary was known in sync (0 = never): a file whose ctime is newer gets
// its metadata (xattrs and ACLs included) re-applied.
func (s *Session) Crawl(ctx context.Context, stime int64) (*Job, error) {
	wch, walkStarted := s.prefetched, s.prefetchStarted
	s.prefetched = nil
	if wch == nil {
		walkStarted = time.Now().UnixNano()
		wch = s.startWalk(ctx)
	}
	t0 := time.Now()
	var secEntries []*tree.Entry
	var end *protocol.ListEnd
	var lerr error
	if early := s.earlyList; early != nil {
		s.earlyList = nil // asked for with the handshake
		secEntries, end, lerr = early(ctx)
	} else {
		secEntries, end, lerr = s.listSecondary(ctx)
	}
	listed := time.Since(t0)
	w := <-wch
	walked := time.Since(t0)
	if w.err != nil {
		return nil, fmt.Errorf("crawl the primary: %w", w.err)
	}
	if lerr != nil {
		return nil, lerr
	}
	prim := make([]*tree.Entry, len(w.entries))
	for i := range w.entries {
		prim[i] = &w.entries[i]
	}
	secEntries = keepUnreadable(secEntries, w.unreadable)
	if !s.cfg.DeleteExcluded {
		secEntries = keepExcluded(secEntries, prim, s.rootID, s.filter)
	}
	var suspect map[fileid.ID]bool
	if len(s.cfg.Suspects) > 0 {
		suspect = map[fileid.ID]bool{}
		for _, id := range s.cfg.Suspects {
			suspect[id] = true
		}
	}
	job := diff(prim, &w.root, secEntries, end, s.rootID, stime, suspect, s.cfg.Checksum)
	remetaChangedOnSecondary(job, prim, secEntries, end)
	s.log.Debug("crawl timings", "list", listed.Round(time.Millisecond), "walk_wait", walked.Round(time.Millisecond),
		"diff", (time.Since(t0) - walked).Round(time.Millisecond), "primary", len(prim), "secondary", len(secEntries))
	job.Unreadable = w.unreadable
	job.WalkStarted = walkStarted
	return job, nil
}

// walkRes is a finished walk of the primary.
type walkRes struct {
	entries    []tree.Entry
	root       tree.Entry
	unreadable []scan.Unreadable
	err        error
}

// startWalk walks the primary in the background.
func (s *Session) startWalk(ctx context.Context) <-chan walkRes {
	wch := make(chan walkRes, 1)
	go func() {
		res, err := s.Walk(ctx)
		if err != nil {
			wch <- walkRes{err: err}
			return
		}
		wch <- walkRes{entries: res.Entries, root: res.Root, unreadable: res.Unreadable}
	}()
	return wch
}

// keepUnreadable drops from the secondary's listing everything below
// directories the primary could not read, so that content unknown on the
// primary is left alone on the secondary instead of being taken for deleted.
func keepUnreadable(sec []*tree.Entry, unreadable []scan.Unreadable) []*tree.Entry {
	if len(unreadable) == 0 {
		return sec
	}
	skip := map[fileid.ID]bool{}
	for _, u := range unreadable {
		skip[u.ID] = true
	}
	children := map[fileid.ID][]fileid.ID{}
	for _, e := range sec {
		if e.Kind == tree.KindDir && e.ID != "" {
			children[e.Parent] = append(children[e.Parent], e.ID)
		}
	}
	queue := make([]fileid.ID, 0, len(skip))
	for id := range skip {
		queue = append(queue, id)
	}
	for len(queue) > 0 {
		id := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		for _, c := range children[id] {
			if !skip[c] {
				skip[c] = true
				queue = append(queue, c)
			}
		}
	}
	out := sec[:0:0]
	for _, e := range sec {
		if !skip[e.Parent] {
			out = append(out, e)
		}
	}
	return out
}

// diff is the pure part of a crawl.
// suspect lists files whose content goes again whatever their size and
// mtime say (read too soon after a change by an earlier sync).
// With checksum, every file whose size and mtime match is compared by
// content and xattrs (Job.Check), and every other entry gets all of its
// metadata again.
func diff(prim []*tree.Entry, primRoot *tree.Entry, sec []*tree.Entry, end *protocol.ListEnd, rootID fileid.ID, stime int64, suspect map[fileid.ID]bool, checksum bool) *Job {
	in := plan.Input{Want: map[tree.Slot]*tree.Entry{}, Have: map[tree.Slot]*tree.Entry{}, IDs: map[fileid.ID]plan.IDInfo{}}
	primByID := map[fileid.ID]*tree.Entry{}
	for _, e := range prim {
		in.Want[e.Slot] = e
		if _, ok := primByID[e.ID]; !ok {
			primByID[e.ID] = e
		}
	}
	// Entries the secondary holds under no ID the primary has are matched
	// by path first (seeded, foreign or partially indexed secondaries).
	var limbo []fileid.ID
	if end != nil {
		limbo = end.Limbo
	}
	ad := plan.AdoptByPath(in.Want, sec, limbo, rootID)
	sec = ad.Have
	secByID := map[fileid.ID]*tree.Entry{}
	for _, e := range sec {
		in.Have[e.Slot] = e
		if e.ID == "" {
			continue
		}
		info := in.IDs[e.ID]
		info.Exists = true
		info.Kind = e.Kind
		info.Links++
		if e.Kind == tree.KindDir {
			info.Dir = e.Slot
		}
		in.IDs[e.ID] = info
		if _, ok := secByID[e.ID]; !ok {
			secByID[e.ID] = e
		}
	}
	for _, h := range ad.Hidden {
		info := in.IDs[h.ID]
		info.Exists, info.Kind = true, h.Kind
		if h.Kind == tree.KindDir {
			info.Dir = h.Slot
		}
		in.IDs[h.ID] = info
	}
	var limboDead []fileid.ID
	if end != nil {
		for _, id := range end.Limbo {
			info := in.IDs[id]
			info.Exists = true
			info.Staged = true
			in.IDs[id] = info
			if _, ok := primByID[id]; !ok {
				limboDead = append(limboDead, id)
			}
		}
	}
	seen := map[tree.Slot]bool{}
	for s := range in.Want {
		seen[s] = true
		in.Slots = append(in.Slots, s)
	}
	for s := range in.Have {
		if !seen[s] {
			in.Slots = append(in.Slots, s)
		}
	}
	plan.SortSlots(in.Slots)
	p := plan.Make(in)
	p.Ops = append(ad.Ops, p.Ops...)
	// Staged or linkless files and directories the primary no longer has.
	for _, id := range limboDead {
		if in.IDs[id].Kind == tree.KindDir || secByID[id] == nil {
			p.Ops = append(p.Ops, plan.Op{Kind: plan.RemoveTree, ID: id}, plan.Op{Kind: plan.Drop, ID: id})
		}
	}
	job := &Job{Plan: p, paths: map[fileid.ID]string{}}
	job.paths = primaryPaths(prim, rootID)

	created := map[fileid.ID]bool{}
	touchedDirs := map[fileid.ID]bool{}
	for _, op := range p.Ops {
		switch op.Kind {
		case plan.Mkdir, plan.Symlink, plan.Mknod:
			created[op.ID] = true
		}
		if op.From.Parent != "" {
			touchedDirs[op.From.Parent] = true
		}
		if op.To.Parent != "" {
			touchedDirs[op.To.Parent] = true
		}
	}
	for _, nf := range p.NewFiles {
		created[nf.Entry.ID] = true
		for _, s := range nf.Slots {
			touchedDirs[s.Parent] = true
		}
	}
	adoptedOld := map[fileid.ID]*tree.Entry{}
	for _, op := range p.Ops {
		if op.Kind == plan.Adopt {
			if old, ok := ad.Old[op.ID]; ok {
				adoptedOld[op.ID] = old
			} else {
				adoptedOld[op.ID] = in.Have[op.To]
			}
		}
	}
	// New content replaces a file by rename on the secondary, which changes
	// its directory's mtime: those directories get their times again.
	for _, e := range prim {
		if e.Kind != tree.KindRegular || created[e.ID] {
			continue
		}
		old := secByID[e.ID]
		if old == nil {
			old = adoptedOld[e.ID]
		}
		if old == nil || old.Size != e.Size || old.Meta.Mtime != e.Meta.Mtime {
			touchedDirs[e.Parent] = true
		}
	}
	done := map[fileid.ID]bool{}
	for _, e := range prim {
		if done[e.ID] {
			continue
		}
		done[e.ID] = true
		if created[e.ID] && e.Kind != tree.KindDir && e.Kind != tree.KindSymlink && e.Kind != tree.KindFIFO &&
			e.Kind != tree.KindChar && e.Kind != tree.KindBlock && e.Kind != tree.KindSocket {
			continue // new regular files carry everything
		}
		old := secByID[e.ID]
		if old == nil {
			old = adoptedOld[e.ID]
		}
		if created[e.ID] {
			job.Meta = append(job.Meta, MetaItem{Entry: e, Hint: e.Slot, Full: true})
			continue
		}
		if old == nil {
			// Held by the secondary but linked nowhere in its tree (a crash
			// left it aside): it is linked back; its content may be stale.
			// Its metadata (a staged directory's too) is unknown: apply it.
			if in.IDs[e.ID].Exists {
				if e.Kind == tree.KindRegular {
					job.Data = append(job.Data, DataItem{Entry: e, Hint: e.Slot, Old: &tree.Entry{Size: e.Size}})
				}
				job.Meta = append(job.Meta, MetaItem{Entry: e, Hint: e.Slot, Full: true})
			}
			continue
		}
		dataDiff := e.Kind == tree.KindRegular && (old.Size != e.Size || old.Meta.Mtime != e.Meta.Mtime)
		if dataDiff {
			job.Data = append(job.Data, DataItem{Entry: e, Hint: e.Slot, Old: old})
		} else if e.Kind == tree.KindRegular && (checksum || suspect[e.ID]) {
			job.Check = append(job.Check, DataItem{Entry: e, Hint: e.Slot, Old: old})
		}
		// New content is a new inode on the secondary: its xattrs go again;
		// so do an adopted entry's, which georep never saw.
		_, adopted := adoptedOld[e.ID]
		metaDiff := dataDiff || adopted || (checksum && e.Kind != tree.KindRegular) || old.Meta.Mode != e.Meta.Mode || old.Meta.UID != e.Meta.UID || old.Meta.GID != e.Meta.GID ||
			(e.Kind != tree.KindDir && old.Meta.Mtime != e.Meta.Mtime) || e.Ctime > stime || stime == 0 || old.Kind != e.Kind
		if metaDiff || (e.Kind == tree.KindDir && (touchedDirs[e.ID] || old.Meta.Mtime != e.Meta.Mtime)) {
			job.Meta = append(job.Meta, MetaItem{Entry: e, Hint: e.Slot, Full: metaDiff})
		}
	}
	// The root directory itself.
	if primRoot != nil {
		r := *primRoot
		r.ID = rootID
		var old *tree.Entry
		if end != nil {
			old = end.Root
		}
		if old == nil || touchedDirs[rootID] || old.Meta != r.Meta || r.Ctime > stime || stime == 0 {
			job.Meta = append(job.Meta, MetaItem{Entry: &r, Full: old == nil || old.Meta.Mode != r.Meta.Mode || old.Meta.UID != r.Meta.UID || old.Meta.GID != r.Meta.GID || r.Ctime > stime || stime == 0})
		}
	}
	return job
}

// primaryPaths computes a source-relative path for every ID.
func primaryPaths(prim []*tree.Entry, rootID fileid.ID) map[fileid.ID]string {
	dirs := map[fileid.ID]*tree.Entry{}
	for _, e := range prim {
		if e.Kind == tree.KindDir {
			dirs[e.ID] = e
		}
	}
	memo := map[fileid.ID]string{rootID: ""}
	var dirPath func(id fileid.ID, depth int) (string, bool)
	dirPath = func(id fileid.ID, depth int) (string, bool) {
		if p, ok := memo[id]; ok {
			return p, true
		}
		d := dirs[id]
		if d == nil || depth > 10000 {
			return "", false
		}
		pp, ok := dirPath(d.Parent, depth+1)
		if !ok {
			return "", false
		}
		p := d.Name
		if pp != "" {
			p = pp + "/" + d.Name
		}
		memo[id] = p
		return p, true
	}
	out := map[fileid.ID]string{}
	for _, e := range prim {
		if _, ok := out[e.ID]; ok {
			continue
		}
		pp, ok := dirPath(e.Parent, 0)
		if !ok {
			continue
		}
		if pp == "" {
			out[e.ID] = e.Name
		} else {
			out[e.ID] = pp + "/" + e.Name
		}
	}
	return out
}

var errFailures = errors.New("some entries could not be synced")
