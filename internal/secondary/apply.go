package secondary

import (
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/plan"
	"github.com/georep/georep/internal/protocol"
	"github.com/georep/georep/internal/tree"
	"golang.org/x/sys/unix"
)

// apply runs entry operations in order. Each is idempotent: replaying a
// batch after a crash finds its effects already there and does nothing.
// A failed op is reported and the rest go on.
func (a *Agent) apply(m *protocol.Apply) protocol.Message {
	out := &protocol.ApplyOK{}
	for i, op := range m.Ops {
		if err := a.applyOp(op); err != nil {
			out.Errors = append(out.Errors, protocol.OpError{Index: i, ID: op.ID, Path: a.describe(op), Errno: errno(err),
				Msg: fmt.Sprintf("%s %s: %v", op.Kind, a.describe(op), err)})
		}
	}
	return out
}

func (a *Agent) describe(op plan.Op) string {
	s := op.To
	if op.Kind == plan.Stage || op.Kind == plan.Unlink {
		s = op.From
	}
	if s.Parent == "" {
		return op.ID.Short()
	}
	if p, err := a.idx.dirPath(s.Parent); err == nil {
		if p == "." {
			return strconv.Quote(s.Name)
		}
		return strconv.Quote(p + "/" + s.Name)
	}
	return fmt.Sprintf("%s/%q", s.Parent.Short(), s.Name)
}

func (a *Agent) applyOp(op plan.Op) error {
	switch op.Kind {
	case plan.Stage:
		return a.stage(op.ID, op.From)
	case plan.Move:
		return a.move(op.ID, op.To)
	case plan.Link:
		return a.link(op.ID, op.To)
	case plan.Mkdir:
		return a.mkdir(op.ID, op.To, op.Entry)
	case plan.Symlink, plan.Mknod:
		return a.mkspecial(op.ID, op.To, op.Entry)
	case plan.Adopt:
		return a.adopt(op.ID, op.To, op.From, op.Entry)
	case plan.Unlink:
		return a.unlink(op.ID, op.From)
	case plan.RemoveTree:
		return a.removeTree(op.ID)
	case plan.Drop:
		return a.drop(op.ID)
	case plan.PurgeStrays:
		return a.purgeStrays()
	}
	return fmt.Errorf("unknown op %d", op.Kind)
}

var strayCounter atomic.Int64

func strayName() string {
	return "stray." + strconv.FormatInt(time.Now().UnixNano(), 36) + "." + strconv.FormatInt(strayCounter.Add(1), 36)
}

// stage moves the occupant of s (id, or an unknown entry when id is "")
// into the staging area.
func (a *Agent) stage(id fileid.ID, s tree.Slot) error {
	pfd, err := a.slotFD(s)
	if err != nil {
		return err
	}
	st, err := statAt(pfd, s.Name)
	if errors.Is(err, unix.ENOENT) {
		return nil // already gone (a replay)
	}
	if err != nil {
		return err
	}
	have := a.idx.lookup(&st)
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if have != id {
		if id == "" && !isDir && have != "" && st.Nlink > 2 {
			// An unknown link of an inode adopted since it was listed (cp -a
			// kept a hardlink the primary does not have): this link goes,
			// the inode stays with its other links.
			return unix.Renameat(pfd, s.Name, a.tmpFD, strayName())
		}
		return nil // the slot holds something else now: this op was applied before
	}
	if id == "" {
		return unix.Renameat(pfd, s.Name, a.tmpFD, strayName())
	}
	name := idName(id)
	if !isDir {
		if sst, err := statAt(a.tmpFD, name); err == nil {
			if sst.Ino == st.Ino {
				return unix.Unlinkat(pfd, s.Name, 0) // one staged link is enough
			}
			unix.Unlinkat(a.tmpFD, name, 0)
		}
		return unix.Renameat(pfd, s.Name, a.tmpFD, name)
	}
	handle := handleOf(pfd, s.Name)
	if err := unix.Renameat2(pfd, s.Name, a.tmpFD, name, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) {
			// A stale staged directory of the same ID: it cannot be this one.
			if err := removeAllAt(a.tmpFD, name); err != nil {
				return err
			}
			err = unix.Renameat2(pfd, s.Name, a.tmpFD, name, unix.RENAME_NOREPLACE)
		}
		if err != nil {
			return err
		}
	}
	return a.setDirRecord(id, &dirRec{ino: st.Ino, parent: stagedParent, name: name, handle: handle})
}

// vacate makes the slot free; it is a safety net for a slot the plan
// thought free: whatever is there is staged, never destroyed.
func (a *Agent) vacate(pfd int, s tree.Slot, want fileid.ID) (done bool, err error) {
	st, err := statAt(pfd, s.Name)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	have := a.idx.lookup(&st)
	if have == want && want != "" {
		return true, nil
	}
	a.log.Warn("slot occupied; moving the occupant aside", "slot", a.describe(plan.Op{To: s}))
	return false, a.stage(have, s)
}

// move puts id at s, from the staging area or (directories) its place.
func (a *Agent) move(id fileid.ID, s tree.Slot) error {
	tfd, err := a.slotFD(s)
	if err != nil {
		return err
	}
	if rec, ok := a.idx.dir(id); ok {
		if rec.parent == s.Parent && rec.name == s.Name {
			if st, err := statAt(tfd, s.Name); err == nil && st.Ino == rec.ino {
				return nil
			}
		}
		if err := a.checkNoCycle(id, s.Parent); err != nil {
			return err
		}
		if done, err := a.vacate(tfd, s, id); done || err != nil {
			return err
		}
		var sfd int
		var sname string
		if rec.parent == stagedParent {
			sfd, sname = a.tmpFD, idName(id)
		} else {
			sfd, err = a.dirFD(rec.parent)
			if err != nil {
				return err
			}
			sname = rec.name
		}
		st, err := statAt(sfd, sname)
		if err != nil || st.Ino != rec.ino {
			if err := a.reindexDirs(); err != nil {
				return err
			}
			return fmt.Errorf("directory %s is not where the index says", id.Short())
		}
		if err := unix.Renameat2(sfd, sname, tfd, s.Name, unix.RENAME_NOREPLACE); err != nil {
			return err
		}
		return a.setDirRecord(id, &dirRec{ino: rec.ino, parent: s.Parent, name: s.Name, handle: rec.handle})
	}
	if _, ok := a.idx.file(id); !ok {
		return fmt.Errorf("file %s is not on the secondary", id.Short())
	}
	if done, err := a.vacate(tfd, s, id); done || err != nil {
		return err
	}
	name := idName(id)
	if _, err := statAt(a.tmpFD, name); err != nil {
		return a.link(id, s) // not staged (a replay): link from the index
	}
	return unix.Renameat2(a.tmpFD, name, tfd, s.Name, unix.RENAME_NOREPLACE)
}

// checkNoCycle refuses to move directory id beneath itself.
func (a *Agent) checkNoCycle(id, newParent fileid.ID) error {
	cur := newParent
	for i := 0; i < 4096; i++ {
		if cur == id {
			return fmt.Errorf("moving directory %s into its own subtree: %w", id.Short(), unix.EINVAL)
		}
		if cur == a.rootID || cur == stagedParent {
			return nil
		}
		rec, ok := a.idx.dir(cur)
		if !ok {
			return nil
		}
		cur = rec.parent
	}
	return nil
}

func (a *Agent) link(id fileid.ID, s tree.Slot) error {
	tfd, err := a.slotFD(s)
	if err != nil {
		return err
	}
	if done, err := a.vacate(tfd, s, id); done || err != nil {
		return err
	}
	sfd, err := a.shardFD(id)
	if err != nil {
		return err
	}
	if err := unix.Linkat(sfd, idName(id), tfd, s.Name, 0); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("file %s is not on the secondary: %w", id.Short(), err)
		}
		return err
	}
	return nil
}

func (a *Agent) mkdir(id fileid.ID, s tree.Slot, e *tree.Entry) error {
	if _, ok := a.idx.dir(id); ok {
		return a.move(id, s)
	}
	tfd, err := a.slotFD(s)
	if err != nil {
		return err
	}
	mode := uint32(0o700)
	if e != nil {
		mode = e.Meta.Mode & 07777
	}
	err = unix.Mkdirat(tfd, s.Name, 0o700)
	if errors.Is(err, unix.EEXIST) {
		st, serr := statAt(tfd, s.Name)
		if serr == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR && a.idx.lookup(&st) == "" {
			err = nil // left by a crash before its record was written: claim it
		} else if done, verr := a.vacate(tfd, s, id); verr != nil || done {
			return verr
		} else {
			err = unix.Mkdirat(tfd, s.Name, 0o700)
		}
	}
	if err != nil {
		return err
	}
	st, err := statAt(tfd, s.Name)
	if err != nil {
		return err
	}
	if err := a.setDirRecord(id, &dirRec{ino: st.Ino, parent: s.Parent, name: s.Name, handle: handleOf(tfd, s.Name)}); err != nil {
		return err
	}
	if e != nil {
		dfd, err := openBeneath(tfd, s.Name, unix.O_RDONLY|unix.O_DIRECTORY)
		if err == nil {
			a.setOwnerMode(dfd, tree.KindDir, e, mode)
			unix.Close(dfd)
		}
	}
	return nil
}

// mkspecial creates a symlink, FIFO, device or socket: made in the staging
// area, entered in the index, then linked at s — so a crash leaves either
// nothing or a complete entry.
func (a *Agent) mkspecial(id fileid.ID, s tree.Slot, e *tree.Entry) error {
	if e == nil {
		return errors.New("missing entry description")
	}
	if _, ok := a.idx.file(id); ok {
		return a.link(id, s)
	}
	if _, err := a.slotFD(s); err != nil {
		return err
	}
	tmp := idName(id) + ".new"
	unix.Unlinkat(a.tmpFD, tmp, 0)
	var err error
	fake := false
	switch e.Kind {
	case tree.KindSymlink:
		err = unix.Symlinkat(e.Target, a.tmpFD, tmp)
	case tree.KindFIFO, tree.KindSocket, tree.KindChar, tree.KindBlock:
		// Fake-super keeps every special file as an empty regular file
		// with user.georep.stat (FIFOs cannot hold user xattrs).
		if a.fakeSuper {
			err, fake = a.createFake(tmp), true
		} else {
			err = unix.Mknodat(a.tmpFD, tmp, e.Kind.IFMT()|(e.Meta.Mode&07777), int(e.Rdev))
			if errors.Is(err, unix.EPERM) {
				err, fake = a.createFake(tmp), true
			}
		}
	default:
		return fmt.Errorf("cannot create a %s as a special file", e.Kind)
	}
	if err != nil {
		return err
	}
	fd, err := openBeneath(a.tmpFD, tmp, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return err
	}
	if fake {
		a.setFakeStat(fd, e, e.Kind)
	} else {
		a.setOwnerMode(fd, e.Kind, e, e.Meta.Mode)
	}
	unix.Close(fd)
	if err := a.installIndex(id, tmp); err != nil {
		return err
	}
	return a.link(id, s)
}

func (a *Agent) createFake(name string) error {
	fd, err := unix.Openat(a.tmpFD, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// installIndex renames a finished file in the staging area into the index.
func (a *Agent) installIndex(id fileid.ID, tmp string) error {
	dfd, err := a.shardFD(id)
	if err != nil {
		return err
	}
	st, err := statAt(a.tmpFD, tmp)
	if err != nil {
		return err
	}
	if err := unix.Renameat(a.tmpFD, tmp, dfd, idName(id)); err != nil {
		return err
	}
	a.idx.mu.Lock()
	if old, ok := a.idx.files[id]; ok && old != st.Ino {
		delete(a.idx.byIno, old)
	}
	a.idx.files[id] = st.Ino
	a.idx.byIno[st.Ino] = id
	a.idx.mu.Unlock()
	return nil
}

// adoptCopy adopts the link at s of an inode that is another ID already:
// its content is copied on the secondary (copy_file_range, no network
// bytes) into a new inode, which takes the link's place and becomes id.
func (a *Agent) adoptCopy(id fileid.ID, pfd int, s tree.Slot, st *unix.Stat_t) error {
	src, err := unix.Openat(pfd, s.Name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(src)
	tmp := idName(id) + ".adopt.new"
	unix.Unlinkat(a.tmpFD, tmp, 0)
	dst, err := unix.Openat(a.tmpFD, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	err = copyAll(dst, src)
	if err == nil {
		unix.Fchown(dst, int(st.Uid), int(st.Gid)) // not root: fake-super metadata follows
		err = unix.Fchmod(dst, st.Mode&07777)
	}
	if err == nil {
		err = unix.UtimesNanoAt(a.tmpFD, tmp, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
	}
	unix.Close(dst)
	if err == nil {
		err = unix.Linkat(a.tmpFD, tmp, a.tmpFD, tmp+".idx", 0)
	}
	if err == nil {
		err = unix.Renameat(a.tmpFD, tmp, pfd, s.Name)
	}
	if err != nil {
		unix.Unlinkat(a.tmpFD, tmp, 0)
		unix.Unlinkat(a.tmpFD, tmp+".idx", 0)
		return fmt.Errorf("copy a shared link to adopt it: %w", err)
	}
	return a.installIndex(id, tmp+".idx")
}

// copyAll copies src into dst within the filesystem.
func copyAll(dst, src int) error {
	for {
		n, err := unix.CopyFileRange(src, nil, dst, nil, 1<<30, 0)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}

// adopt claims an unknown entry at s as id.
func (a *Agent) adopt(id fileid.ID, s, rekey tree.Slot, e *tree.Entry) error {
	pfd, err := a.slotFD(s)
	if err != nil {
		return err
	}
	st, err := statAt(pfd, s.Name)
	if err != nil {
		return err
	}
	if e != nil && tree.KindOf(st.Mode) != e.Kind {
		return fmt.Errorf("cannot adopt a %s as a %s", tree.KindOf(st.Mode), e.Kind)
	}
	if have := a.idx.lookup(&st); have != "" {
		if have == id {
			return nil
		}
		if rekey != s && st.Mode&unix.S_IFMT == unix.S_IFREG {
			if _, isFile := a.idx.file(have); isFile {
				// A hardlink on the secondary of a file the primary has as
				// two: this link becomes a copy of its own.
				return a.adoptCopy(id, pfd, s, &st)
			}
		}
		if rekey != s || have == a.rootID {
			return fmt.Errorf("cannot adopt: the entry is %s already", have.Short())
		}
		// Known under an ID the primary no longer has: it takes the new one.
		if err := a.forgetIdentity(have, st.Mode&unix.S_IFMT == unix.S_IFDIR); err != nil {
			return err
		}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return a.setDirRecord(id, &dirRec{ino: st.Ino, parent: s.Parent, name: s.Name, handle: handleOf(pfd, s.Name)})
	}
	sfd, err := a.shardFD(id)
	if err != nil {
		return err
	}
	if err := unix.Linkat(pfd, s.Name, sfd, idName(id), 0); err != nil {
		if !errors.Is(err, unix.EEXIST) {
			return err
		}
		// The index holds another inode for this ID (a crash between
		// replacing a file's content and re-linking the index): the copy in
		// the tree is the newer one; it takes the index entry.
		tmp := idName(id) + ".adopt.new"
		unix.Unlinkat(a.tmpFD, tmp, 0)
		if err := unix.Linkat(pfd, s.Name, a.tmpFD, tmp, 0); err != nil {
			return err
		}
		if err := a.installIndex(id, tmp); err != nil {
			return err
		}
		return nil
	}
	a.idx.mu.Lock()
	a.idx.files[id] = st.Ino
	a.idx.byIno[st.Ino] = id
	a.idx.mu.Unlock()
	return nil
}

// forgetIdentity drops the index entry of old, an ID the primary no longer
// has, before its entry is adopted under a new one. For a directory, the
// records of the directories inside it are re-pointed by the adoption
// (setDirRecord) and their own adoptions; until then they name old, which
// dirFD resolves through the tree again (reindexDirs) when needed.
func (a *Agent) forgetIdentity(old fileid.ID, isDir bool) error {
	if isDir {
		a.dropDirRecord(old)
		a.dirGen.Add(1)
		return nil
	}
	sfd, err := a.shardFD(old)
	if err != nil {
		return fmt.Errorf("forget %s: %w", old.Short(), err)
	}
	if err := unix.Unlinkat(sfd, idName(old), 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("forget %s: %w", old.Short(), err)
	}
	a.idx.mu.Lock()
	if ino, ok := a.idx.files[old]; ok {
		if a.idx.byIno[ino] == old {
			delete(a.idx.byIno, ino)
		}
		delete(a.idx.files, old)
	}
	a.idx.mu.Unlock()
	return nil
}

func (a *Agent) unlink(id fileid.ID, s tree.Slot) error {
	pfd, err := a.slotFD(s)
	if err != nil {
		return err
	}
	st, err := statAt(pfd, s.Name)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	if a.idx.lookup(&st) != id {
		return nil // the name holds another file now
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("%w: expected a file", unix.EISDIR)
	}
	return unix.Unlinkat(pfd, s.Name, 0)
}

// removeTree removes a directory (staged or in place) with what is left in
// it; the records of known directories inside are dropped too.
func (a *Agent) removeTree(id fileid.ID) error {
	rec, ok := a.idx.dir(id)
	if !ok {
		return nil
	}
	var pfd int
	var name string
	if rec.parent == stagedParent {
		pfd, name = a.tmpFD, idName(id)
	} else {
		var err error
		pfd, err = a.dirFD(rec.parent)
		if err != nil {
			return err
		}
		name = rec.name
	}
	st, err := statAt(pfd, name)
	if err == nil && st.Ino == rec.ino {
		a.dropRecordsBelow(pfd, name)
		if err := removeAllAt(pfd, name); err != nil {
			return err
		}
	}
	a.dropDirRecord(id)
	return nil
}

func (a *Agent) dropRecordsBelow(pfd int, name string) {
	fd, err := openBeneath(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	names, _ := readNames(fd, ".")
	for _, n := range names {
		st, err := statAt(fd, n)
		if err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		if cid := a.idx.lookup(&st); cid != "" {
			a.dropRecordsBelow(fd, n)
			a.dropDirRecord(cid)
		}
	}
}

// drop forgets a non-directory that has no link left in the tree.
func (a *Agent) drop(id fileid.ID) error {
	sfd, err := a.shardFD(id)
	if err != nil {
		return err
	}
	st, err := statAt(sfd, idName(id))
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	links := int(st.Nlink) - 1
	if sst, err := statAt(a.tmpFD, idName(id)); err == nil && sst.Ino == st.Ino {
		links--
		if links == 0 {
			unix.Unlinkat(a.tmpFD, idName(id), 0)
		}
	}
	if links > 0 {
		return nil
	}
	if err := unix.Unlinkat(sfd, idName(id), 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	a.idx.mu.Lock()
	if ino, ok := a.idx.files[id]; ok {
		delete(a.idx.byIno, ino)
		delete(a.idx.files, id)
	}
	a.idx.mu.Unlock()
	return nil
}

func (a *Agent) purgeStrays() error {
	names, err := readNames(a.tmpFD, ".")
	if err != nil {
		return err
	}
	for _, n := range names {
		if len(n) > 6 && n[:6] == "stray." {
			if err := removeAllAt(a.tmpFD, n); err != nil {
				return err
			}
		}
	}
	return nil
}

func planOpAt(s tree.Slot) plan.Op { return plan.Op{To: s} }
