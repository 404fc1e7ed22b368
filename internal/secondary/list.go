package secondary

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/plan"
	"github.com/georep/georep/internal/protocol"
	"github.com/georep/georep/internal/tree"
	"golang.org/x/sys/unix"
)

// entryOf describes the entry `name` in directory dirfd.
func (a *Agent) entryOf(dirfd int, parent fileid.ID, name string, st *unix.Stat_t) *tree.Entry {
	e := &tree.Entry{Slot: tree.Slot{Parent: parent, Name: name}}
	e.Kind = tree.KindOf(st.Mode)
	e.Meta = tree.Meta{Mode: st.Mode & 07777, UID: st.Uid, GID: st.Gid,
		Atime: st.Atim.Sec*1e9 + st.Atim.Nsec, Mtime: st.Mtim.Sec*1e9 + st.Mtim.Nsec}
	e.Size = st.Size
	e.Ctime = st.Ctim.Sec*1e9 + st.Ctim.Nsec // against ListEnd.Committed
	e.Nlink = uint32(st.Nlink)
	e.Ino = st.Ino
	if e.Kind == tree.KindChar || e.Kind == tree.KindBlock {
		e.Rdev = st.Rdev
	}
	e.ID = a.idx.lookup(st)
	if e.ID != "" && e.Kind != tree.KindDir && e.Nlink > 0 {
		e.Nlink-- // the index link
	}
	if e.Kind == tree.KindSymlink {
		if t, err := readlinkAt(dirfd, name); err == nil {
			e.Target = t
		}
	}
	if a.fakeSuper {
		a.applyFakeStat(dirfd, name, e)
	}
	return e
}

// lookup answers what is at some slots and what is known about some IDs.
func (a *Agent) lookup(m *protocol.Lookup) protocol.Message {
	out := &protocol.LookupOK{Entries: make([]*tree.Entry, len(m.Slots)), Infos: make([]plan.IDInfo, len(m.IDs))}
	// The answer must fit a frame: once it cannot, stop building it (its
	// memory grows with it) and refuse the request.
	size := 16 * len(m.IDs)
	for i, s := range m.Slots {
		if size > protocol.MaxFrame {
			return &protocol.Error{Msg: fmt.Sprintf("protocol: the answer to a Lookup of %d slots and %d IDs would exceed a frame (%d bytes): ask for fewer at a time", len(m.Slots), len(m.IDs), protocol.MaxFrame)}
		}
		size += 2
		if !tree.ValidName(s.Name) || (s.Parent == a.rootID && s.Name == metaDir) {
			continue
		}
		fd, err := a.dirFD(s.Parent)
		if err != nil {
			continue
		}
		st, err := statAt(fd, s.Name)
		if err != nil {
			continue
		}
		e := a.entryOf(fd, s.Parent, s.Name, &st)
		out.Entries[i] = e
		size += 48 + len(e.Parent) + len(e.Name) + len(e.ID) + len(e.Target)
	}
	for i, id := range m.IDs {
		out.Infos[i] = a.idInfo(id)
	}
	return out
}

func (a *Agent) idInfo(id fileid.ID) plan.IDInfo {
	if id == a.rootID {
		return plan.IDInfo{Exists: true, Kind: tree.KindDir}
	}
	if rec, ok := a.idx.dir(id); ok {
		in := plan.IDInfo{Exists: true, Kind: tree.KindDir}
		if rec.parent == stagedParent {
			in.Staged = true
		} else {
			in.Dir = tree.Slot{Parent: rec.parent, Name: rec.name}
		}
		return in
	}
	if _, ok := a.idx.file(id); !ok {
		return plan.IDInfo{}
	}
	st, err := a.indexStat(id)
	if err != nil {
		return plan.IDInfo{}
	}
	in := plan.IDInfo{Exists: true, Kind: tree.KindOf(st.Mode), Links: int(st.Nlink) - 1}
	if sst, err := statAt(a.tmpFD, idName(id)); err == nil && sst.Ino == st.Ino {
		in.Staged = true
		in.Links--
	}
	return in
}

type listDir struct {
	rel string
	id  fileid.ID
}

// list streams the whole tree (but .georep) as ListChunks, then ListEnd.
// Directories georep does not know are entered too, at any depth: such a
// directory is listed under a stand-in ID (plan.UnknownDir) that names it
// as the parent of what it holds, so the crawl can adopt it and its content
// by path. Directory records found out of date are repaired on the way.
func (a *Agent) list(reqID uint64) error {
	a.repairStagedDirRecords()
	// Staged directories (left between two places by a crash) are walked
	// too, so what they hold is seen and not sent again.
	start := []listDir{{rel: ".", id: a.rootID}}
	a.idx.mu.Lock()
	for id, rec := range a.idx.dirs {
		if rec.parent == stagedParent {
			start = append(start, listDir{rel: stagePath(id), id: id})
		}
	}
	a.idx.mu.Unlock()
	var (
		mu      sync.Mutex
		cond    = sync.NewCond(&mu)
		queue   = start
		pending = len(start)
		count   int64
		werr    error
	)
	send := func(batch []*tree.Entry) {
		if len(batch) == 0 {
			return
		}
		// Compressed: IDs are hex and share their filesystem prefix, and
		// parents repeat, so a listing shrinks about fourfold.
		a.rep.Reply(reqID, &protocol.Compressed{Inner: &protocol.ListChunk{Entries: batch}})
	}
	workers := 2 * runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var batch []*tree.Entry
			defer func() { send(batch) }()
			for {
				mu.Lock()
				for len(queue) == 0 && pending > 0 && werr == nil {
					cond.Wait()
				}
				if werr != nil || (len(queue) == 0 && pending == 0) {
					mu.Unlock()
					return
				}
				job := queue[len(queue)-1]
				queue = queue[:len(queue)-1]
				mu.Unlock()
				entries, subs, err := a.listOne(job)
				mu.Lock()
				if err != nil && werr == nil {
					werr = err
				}
				queue = append(queue, subs...)
				pending += len(subs) - 1
				count += int64(len(entries))
				mu.Unlock()
				cond.Broadcast()
				batch = append(batch, entries...)
				if len(batch) >= 2048 {
					send(batch)
					batch = nil
				}
			}
		}()
	}
	wg.Wait()
	if werr != nil {
		return werr
	}
	var st unix.Stat_t
	unix.Fstat(a.rootFD, &st)
	root := a.entryOf(a.rootFD, "", "", &st)
	root.ID = a.rootID
	names, _ := readNames(a.tmpFD, ".")
	var limbo []fileid.ID
	for _, n := range names {
		if id := fileid.ID(n); id.Valid() {
			if a.dropRedundantStaged(id) {
				continue
			}
			limbo = append(limbo, id)
		}
	}
	// Files georep holds with no link in the tree (left by a crash or kept
	// for a primary file whose new place is not known yet) are reported as
	// limbo too, so the crawl can drop the ones the primary no longer has.
	a.idx.mu.Lock()
	var files []fileid.ID
	for id := range a.idx.files {
		files = append(files, id)
	}
	a.idx.mu.Unlock()
	for _, id := range files {
		if st, err := a.indexStat(id); err == nil && st.Nlink == 1 {
			limbo = append(limbo, id)
		}
	}
	a.rep.Reply(reqID, &protocol.ListEnd{Count: count, Root: root, Limbo: limbo, Committed: a.committedAt()})
	return nil
}

// committedAt is when this secondary last recorded an stime (its clock,
// Unix ns; 0 when never): the stime file is written after everything the
// session applied, so an entry whose ctime is later was changed since by
// someone else (or by an attempt that did not complete).
func (a *Agent) committedAt() int64 {
	st, err := statAt(a.rootFD, stimeFile)
	if err != nil {
		return 0
	}
	return st.Mtim.Sec*1e9 + st.Mtim.Nsec
}

// repairStagedDirRecords brings the records of the directories in the
// staging area in line with it. stage() renames a directory there, then
// rewrites its record: a run killed in between leaves the record naming the
// old place, and a removal trusting it dropped the record and left the
// directory (and what it holds) staged for ever. A directory there named by
// an ID is that ID's, unless the ID's record names another inode.
func (a *Agent) repairStagedDirRecords() {
	names, _ := readNames(a.tmpFD, ".")
	for _, n := range names {
		id := fileid.ID(n)
		if !id.Valid() {
			continue
		}
		st, err := statAt(a.tmpFD, n)
		if err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		a.idx.mu.Lock()
		rec, known := a.idx.dirs[id]
		owner := a.idx.byIno[st.Ino]
		a.idx.mu.Unlock()
		switch {
		case known && rec.ino != st.Ino, !known && owner != "":
			continue // the ID or the inode belongs elsewhere
		case known && rec.parent == stagedParent:
			continue // in order
		}
		a.log.Debug("repairing the record of a staged directory", "id", id.Short())
		a.setDirRecord(id, &dirRec{ino: st.Ino, parent: stagedParent, name: n, handle: handleOf(a.tmpFD, n)})
	}
}

// dropRedundantStaged removes the staged link of a non-directory that also
// has a link in the tree (its inode has the index link, the staged one and
// more): a run cut short between staging it and moving it left it there,
// and the primary now wants it only where the secondary already has it, so
// no operation would ever take it out. It reports whether it did.
func (a *Agent) dropRedundantStaged(id fileid.ID) bool {
	if a.readOnly {
		return false
	}
	sst, err := statAt(a.tmpFD, idName(id))
	if err != nil || sst.Mode&unix.S_IFMT == unix.S_IFDIR || sst.Nlink <= 2 {
		return false
	}
	ist, err := a.indexStat(id)
	if err != nil || ist.Ino != sst.Ino {
		return false
	}
	if unix.Unlinkat(a.tmpFD, idName(id), 0) != nil {
		return false
	}
	a.log.Debug("removed a staged link the tree no longer needs", "id", id.Short())
	return true
}

func (a *Agent) listOne(job listDir) ([]*tree.Entry, []listDir, error) {
	fd, err := a.openRel(job.rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("list %q: %w", job.rel, err)
	}
	f := os.NewFile(uintptr(fd), job.rel)
	defer f.Close()
	var out []*tree.Entry
	var subs []listDir
	for {
		names, rerr := f.Readdirnames(1024)
		for _, n := range names {
			if job.id == a.rootID && n == metaDir {
				continue
			}
			st, err := statAt(fd, n)
			if err != nil {
				continue
			}
			e := a.entryOf(fd, job.id, n, &st)
			out = append(out, e)
			if e.Kind != tree.KindDir {
				continue
			}
			if e.ID != "" && a.staleDir(e.ID, fd, n) {
				// Its inode number was reused: the record is not its.
				a.log.Debug("dropping a stale directory record", "id", e.ID.Short(), "name", n)
				if !a.readOnly {
					a.dropDirRecord(e.ID)
				}
				e.ID = ""
			}
			switch {
			case e.ID == "":
				// Unknown: entered too, under a stand-in ID the crawl
				// replaces when it adopts the directory by path.
				e.ID = plan.UnknownDir(st.Ino)
			case !plan.IsUnknownDir(job.id):
				a.fixDirRecord(e.ID, job.id, fd, n, st.Ino)
			}
			rel := n
			if job.rel != "." {
				rel = job.rel + "/" + n
			}
			subs = append(subs, listDir{rel: rel, id: e.ID})
		}
		if rerr != nil || len(names) == 0 {
			break
		}
	}
	return out, subs, nil
}

// fixDirRecord brings a directory record in line with where the directory
// was found.
func (a *Agent) fixDirRecord(id, parent fileid.ID, dirfd int, name string, ino uint64) {
	a.idx.mu.Lock()
	rec, ok := a.idx.dirs[id]
	same := ok && rec.parent == parent && rec.name == name && rec.ino == ino && rec.handle != ""
	a.idx.mu.Unlock()
	if same {
		return
	}
	a.log.Debug("repairing a directory record", "id", id.Short(), "name", name)
	a.setDirRecord(id, &dirRec{ino: ino, parent: parent, name: name, handle: handleOf(dirfd, name)})
}

// staleDir reports whether the directory name in dirfd, found under the
// record of id by its inode number, is another directory: the record's
// file handle (inode and generation) names another one.
func (a *Agent) staleDir(id fileid.ID, dirfd int, name string) bool {
	rec, ok := a.idx.dir(id)
	if !ok || rec.handle == "" {
		return false
	}
	h := handleOf(dirfd, name)
	return h != "" && h != rec.handle
}

// setDirRecord writes a directory record (symlink + rename, so it is atomic).
// A read-only session changes only its in-memory view.
func (a *Agent) setDirRecord(id fileid.ID, rec *dirRec) error {
	if !a.readOnly {
		dfd, err := a.dirShardFD(id)
		if err != nil {
			return fmt.Errorf("index: %w", err)
		}
		name := idName(id)
		tmp := name + ".tmp"
		unix.Unlinkat(dfd, tmp, 0)
		if err := unix.Symlinkat(encodeDirRec(rec), dfd, tmp); err != nil {
			return fmt.Errorf("index record for %s: %w", id.Short(), err)
		}
		if err := unix.Renameat(dfd, tmp, dfd, name); err != nil {
			return fmt.Errorf("index record for %s: %w", id.Short(), err)
		}
	}
	a.idx.mu.Lock()
	if old, ok := a.idx.dirs[id]; ok && old.ino != rec.ino {
		delete(a.idx.byIno, old.ino)
	}
	r := *rec
	a.idx.dirs[id] = &r
	a.idx.byIno[rec.ino] = id
	a.idx.mu.Unlock()
	return nil
}

func (a *Agent) dropDirRecord(id fileid.ID) {
	if !a.readOnly {
		if dfd, err := a.dirShardFD(id); err == nil {
			unix.Unlinkat(dfd, idName(id), 0)
		}
	}
	a.idx.mu.Lock()
	if old, ok := a.idx.dirs[id]; ok {
		delete(a.idx.byIno, old.ino)
		delete(a.idx.dirs, id)
	}
	a.idx.mu.Unlock()
	a.forgetFD(id)
}

// reindexDirs walks the tree and the staging area for known directories and
// rewrites records that point elsewhere; records of directories that are
// nowhere are dropped.
func (a *Agent) reindexDirs() error {
	a.forgetAllFDs()
	seen := map[fileid.ID]bool{}
	var walk func(rel string, id fileid.ID) error
	walk = func(rel string, id fileid.ID) error {
		fd, err := a.openRel(rel, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return nil
		}
		f := os.NewFile(uintptr(fd), rel)
		defer f.Close()
		names, _ := f.Readdirnames(-1)
		for _, n := range names {
			if id == a.rootID && n == metaDir {
				continue
			}
			st, err := statAt(fd, n)
			if err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
				continue
			}
			cid := a.idx.lookup(&st)
			if cid == "" || seen[cid] {
				continue
			}
			seen[cid] = true
			parent := id
			if id == stagedParent {
				parent = stagedParent
			}
			a.fixDirRecord(cid, parent, fd, n, st.Ino)
			if err := walk(rel+"/"+n, cid); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(".", a.rootID); err != nil {
		return err
	}
	// Staged directories.
	names, _ := readNames(a.tmpFD, ".")
	for _, n := range names {
		st, err := statAt(a.tmpFD, n)
		if err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		cid := a.idx.lookup(&st)
		if cid == "" || seen[cid] {
			continue
		}
		seen[cid] = true
		a.fixDirRecord(cid, stagedParent, a.tmpFD, string(cid), st.Ino)
		walk(tmpDir+"/"+n, cid)
	}
	a.idx.mu.Lock()
	var gone []fileid.ID
	for id := range a.idx.dirs {
		if !seen[id] {
			gone = append(gone, id)
		}
	}
	a.idx.mu.Unlock()
	for _, id := range gone {
		a.dropDirRecord(id)
	}
	return nil
}
