package secondary

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/protocol"
	"github.com/georep/georep/internal/transfer/delta"
	"github.com/georep/georep/internal/tree"
	"github.com/georep/georep/internal/verify"
	"github.com/georep/georep/internal/xattr"
	"golang.org/x/sys/unix"
)

// fileStream is a file arriving over several frames.
type fileStream struct {
	ch      chan frame
	lastReq uint64 // request id of the last frame, set before ch is closed
}

type frame struct {
	put   *protocol.PutFile
	delta *protocol.Delta
}

// putFile handles one PutFile frame. A file in one frame is written on the
// worker pool; a longer one gets a goroutine fed with its frames in order.
func (a *Agent) putFile(reqID uint64, m *protocol.PutFile) {
	if m.Entry != nil && m.Last {
		a.async(func() {
			next := func() (frame, bool) { return frame{}, false }
			a.rep.Reply(reqID, a.receiveFile(m, next))
		})
		return
	}
	a.streamFrame(reqID, m.Stream, m.Entry != nil, m.Last, frame{put: m}, func(first frame, next func() (frame, bool)) protocol.Message {
		return a.receiveFile(first.put, next)
	})
}

func (a *Agent) deltaFrame(reqID uint64, m *protocol.Delta) {
	a.streamFrame(reqID, m.Stream, m.Entry != nil, m.Last, frame{delta: m}, func(first frame, next func() (frame, bool)) protocol.Message {
		return a.receiveDelta(first.delta, next)
	})
}

// streamFrame routes a frame to its stream, starting the stream's goroutine
// on the first frame. The reply goes out after the last frame.
func (a *Agent) streamFrame(reqID, stream uint64, first, last bool, f frame, run func(first frame, next func() (frame, bool)) protocol.Message) {
	a.streamMu.Lock()
	st, ok := a.streams[stream]
	if first {
		if ok {
			a.streamMu.Unlock()
			a.rep.Reply(reqID, &protocol.Error{Msg: fmt.Sprintf("protocol: stream %d started twice", stream)})
			return
		}
		st = &fileStream{ch: make(chan frame, 64)}
		if !last {
			a.streams[stream] = st
		}
		a.streamMu.Unlock()
		a.work.Add(1)
		go func() {
			defer a.work.Done()
			next := func() (frame, bool) {
				fr, ok := <-st.ch
				return fr, ok
			}
			reply := run(f, next)
			for range st.ch { // drain what a failure left unread
			}
			a.rep.Reply(st.lastReq, reply)
		}()
		if last {
			st.lastReq = reqID
			close(st.ch)
		}
		return
	}
	if !ok {
		a.streamMu.Unlock()
		a.rep.Reply(reqID, &protocol.Error{Msg: fmt.Sprintf("protocol: frame for unknown stream %d", stream)})
		return
	}
	if last {
		delete(a.streams, stream)
	}
	a.streamMu.Unlock()
	st.ch <- f
	if last {
		st.lastReq = reqID
		close(st.ch)
	}
}

func fileErr(t protocol.Type, stream uint64, id fileid.ID, path string, err error) *protocol.FileOK {
	return &protocol.FileOK{T: t, Stream: stream, Err: &protocol.OpError{ID: id, Path: path, Errno: errno(err), Msg: err.Error()}}
}

func tmpName(id fileid.ID, stream uint64) string {
	return idName(id) + ".new." + strconv.FormatUint(stream, 10)
}

// receiveFile writes a whole file into the staging area, applies its
// metadata, and installs it: new files into the index and their slots,
// new content of a known file over the old one.
func (a *Agent) receiveFile(m *protocol.PutFile, next func() (frame, bool)) protocol.Message {
	e := m.Entry
	if e == nil || !e.ID.Valid() || e.Kind != tree.KindRegular {
		return fileErr(protocol.TPutFileOK, m.Stream, "", "", errors.New("protocol: first file frame lacks a valid regular-file entry"))
	}
	tmp := tmpName(e.ID, m.Stream)
	fd, err := unix.Openat(a.tmpFD, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fileErr(protocol.TPutFileOK, m.Stream, e.ID, "", fmt.Errorf("create: %w", err))
	}
	f := os.NewFile(uintptr(fd), tmp)
	var werr error
	var written int64
	cur := m
	for {
		if werr == nil && len(cur.Data) > 0 {
			if cur.Offset < 0 || cur.Offset > e.Size {
				werr = fmt.Errorf("protocol: data at offset %d beyond size %d", cur.Offset, e.Size)
			} else if _, err := f.WriteAt(cur.Data, cur.Offset); err != nil {
				werr = fmt.Errorf("write: %w", err)
			}
			written += int64(len(cur.Data))
		}
		if cur.Last {
			break
		}
		fr, ok := next()
		if !ok || fr.put == nil {
			werr = errors.New("protocol: file stream ended early")
			break
		}
		cur = fr.put
	}
	if werr == nil {
		if err := f.Truncate(e.Size); err != nil {
			werr = fmt.Errorf("truncate: %w", err)
		}
	}
	if werr == nil {
		werr = a.finishFile(fd, e, m.Xattrs, true)
	}
	f.Close()
	if werr == nil {
		if m.Mode == protocol.FileNew {
			werr = a.installNew(e.ID, tmp, m.Slots)
		} else {
			var hint tree.Slot
			if len(m.Slots) > 0 {
				hint = m.Slots[0]
			}
			werr = a.replaceContent(e.ID, tmp, hint)
		}
	}
	if werr != nil {
		unix.Unlinkat(a.tmpFD, tmp, 0)
		return fileErr(protocol.TPutFileOK, m.Stream, e.ID, a.slotPath(m.Slots), werr)
	}
	return &protocol.FileOK{T: protocol.TPutFileOK, Stream: m.Stream, Bytes: written}
}

func (a *Agent) slotPath(slots []tree.Slot) string {
	if len(slots) == 0 {
		return ""
	}
	return a.describe(planOpAt(slots[0]))
}

// finishFile applies xattrs, owner, mode and times to a file just written.
func (a *Agent) finishFile(fd int, e *tree.Entry, xattrs []protocol.Xattr, setX bool) error {
	if setX {
		if err := a.syncXattrs(fd, xattrs); err != nil {
			return err
		}
	}
	a.setOwnerMode(fd, tree.KindRegular, e, e.Meta.Mode)
	return setTimes(fd, e)
}

func setTimes(fd int, e *tree.Entry) error {
	ts := []unix.Timespec{unix.NsecToTimespec(e.Meta.Atime), unix.NsecToTimespec(e.Meta.Mtime)}
	if err := unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// installNew puts a finished new file into the index, then at its slots.
func (a *Agent) installNew(id fileid.ID, tmp string, slots []tree.Slot) error {
	if _, ok := a.idx.file(id); ok {
		// A replay: the file exists; the new content replaces it.
		var hint tree.Slot
		if len(slots) > 0 {
			hint = slots[0]
		}
		if err := a.replaceContent(id, tmp, hint); err != nil {
			return err
		}
	} else if err := a.installIndex(id, tmp); err != nil {
		return err
	}
	for _, s := range slots {
		if err := a.link(id, s); err != nil {
			return err
		}
	}
	return nil
}

// replaceContent installs new content (a finished file in the staging area)
// for a known file. A file with one name is replaced atomically by rename;
// one with several names (hardlinks) is rewritten in place so all names
// keep sharing it.
func (a *Agent) replaceContent(id fileid.ID, tmp string, hint tree.Slot) error {
	ist, err := statAt(a.rootFD, fileIndexPath(id))
	if errors.Is(err, unix.ENOENT) {
		return a.installIndex(id, tmp)
	}
	if err != nil {
		return err
	}
	links := int(ist.Nlink) - 1
	if sst, err := statAt(a.tmpFD, idName(id)); err == nil && sst.Ino == ist.Ino {
		links = -1 // staged: keep it simple, rewrite in place
	}
	if links == 0 {
		return a.installIndex(id, tmp)
	}
	if links == 1 && hint.Parent != "" && a.checkName(hint) == nil {
		if pfd, err := a.dirFD(hint.Parent); err == nil {
			if hst, err := statAt(pfd, hint.Name); err == nil && hst.Ino == ist.Ino {
				idxTmp := tmp + ".idx"
				if err := unix.Linkat(a.tmpFD, tmp, a.tmpFD, idxTmp, 0); err != nil {
					return err
				}
				if err := unix.Renameat(a.tmpFD, tmp, pfd, hint.Name); err != nil {
					unix.Unlinkat(a.tmpFD, idxTmp, 0)
					return err
				}
				return a.installIndex(id, idxTmp)
			}
		}
	}
	// In place.
	src, err := openBeneath(a.tmpFD, tmp, unix.O_RDONLY)
	if err != nil {
		return err
	}
	// The *os.File owns the descriptor (its finalizer closes it): close it
	// only through the File, never with unix.Close as well.
	sf := os.NewFile(uintptr(src), tmp)
	defer sf.Close()
	dst, err := openBeneath(a.rootFD, fileIndexPath(id), unix.O_WRONLY|unix.O_TRUNC|unix.O_NOFOLLOW)
	if err != nil {
		return err
	}
	df := os.NewFile(uintptr(dst), "dst")
	defer df.Close()
	if _, err := io.Copy(df, sf); err != nil {
		return fmt.Errorf("rewrite in place: %w", err)
	}
	var st unix.Stat_t
	unix.Fstat(src, &st)
	ts := []unix.Timespec{unix.NsecToTimespec(st.Atim.Nano()), unix.NsecToTimespec(st.Mtim.Nano())}
	unix.UtimesNanoAt(dst, "", ts, unix.AT_EMPTY_PATH)
	unix.Fchmod(dst, st.Mode&07777)
	unix.Unlinkat(a.tmpFD, tmp, 0)
	return nil
}

func (a *Agent) signature(m *protocol.Sig) protocol.Message {
	fd, err := openBeneath(a.rootFD, fileIndexPath(m.ID), unix.O_RDONLY|unix.O_NOFOLLOW)
	if err != nil {
		return &protocol.SigOK{Missing: true}
	}
	f := os.NewFile(uintptr(fd), "sig")
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return &protocol.SigOK{Missing: true}
	}
	sig, err := delta.ComputeSignature(f, st.Size)
	if err != nil {
		return &protocol.SigOK{Missing: true}
	}
	b, err := sig.MarshalBinary()
	if err != nil {
		return &protocol.SigOK{Missing: true}
	}
	a.sigs.Store(m.ID, sig)
	return &protocol.SigOK{Size: st.Size, Mtime: st.Mtim.Nano(), Signature: b}
}

// receiveDelta rebuilds a file from the old copy and a delta stream.
func (a *Agent) receiveDelta(m *protocol.Delta, next func() (frame, bool)) protocol.Message {
	e := m.Entry
	if e == nil || !e.ID.Valid() {
		return fileErr(protocol.TDeltaOK, m.Stream, "", "", errors.New("protocol: first delta frame lacks an entry"))
	}
	v, ok := a.sigs.LoadAndDelete(e.ID)
	drain := func() {
		for cur := m; !cur.Last; {
			fr, ok := next()
			if !ok || fr.delta == nil {
				return
			}
			cur = fr.delta
		}
	}
	if !ok {
		drain()
		return fileErr(protocol.TDeltaOK, m.Stream, e.ID, "", errors.New("delta without a signature"))
	}
	sig := v.(*delta.Signature)
	old, err := openBeneath(a.rootFD, fileIndexPath(e.ID), unix.O_RDONLY|unix.O_NOFOLLOW)
	if err != nil {
		drain()
		return fileErr(protocol.TDeltaOK, m.Stream, e.ID, "", fmt.Errorf("open old copy: %w", err))
	}
	oldF := os.NewFile(uintptr(old), "old")
	defer oldF.Close()
	tmp := tmpName(e.ID, m.Stream)
	fd, err := unix.Openat(a.tmpFD, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		drain()
		return fileErr(protocol.TDeltaOK, m.Stream, e.ID, "", fmt.Errorf("create: %w", err))
	}
	out := os.NewFile(uintptr(fd), tmp)
	pr, pw := io.Pipe()
	go func() {
		cur := m
		for {
			if len(cur.Chunk) > 0 {
				if _, err := pw.Write(cur.Chunk); err != nil {
					drainRest(cur, next)
					return
				}
			}
			if cur.Last {
				pw.Close()
				return
			}
			fr, ok := next()
			if !ok || fr.delta == nil {
				pw.CloseWithError(errors.New("protocol: delta stream ended early"))
				return
			}
			cur = fr.delta
		}
	}()
	dec := delta.NewDecoder(pr)
	sum, perr := delta.Patch(oldF, sig, dec.Next, out)
	pr.CloseWithError(io.ErrClosedPipe)
	var written int64
	if perr == nil && sum != dec.Sum() {
		perr = errors.New("delta reconstruction does not match the primary's checksum")
	}
	if perr == nil {
		if st, err := out.Stat(); err == nil {
			written = st.Size()
		}
		perr = a.finishFile(fd, e, nil, false)
	}
	out.Close()
	if perr == nil {
		perr = a.replaceContent(e.ID, tmp, m.Hint)
	}
	if perr != nil {
		unix.Unlinkat(a.tmpFD, tmp, 0)
		return fileErr(protocol.TDeltaOK, m.Stream, e.ID, "", perr)
	}
	return &protocol.FileOK{T: protocol.TDeltaOK, Stream: m.Stream, Bytes: written}
}

func drainRest(cur *protocol.Delta, next func() (frame, bool)) {
	for !cur.Last {
		fr, ok := next()
		if !ok || fr.delta == nil {
			return
		}
		cur = fr.delta
	}
}

// meta applies metadata items.
func (a *Agent) meta(m *protocol.Meta) protocol.Message {
	out := &protocol.MetaOK{}
	for i, it := range m.Items {
		if err := a.metaOne(it); err != nil {
			out.Errors = append(out.Errors, protocol.OpError{Index: i, ID: it.Entry.ID, Errno: errno(err), Msg: err.Error()})
		}
	}
	return out
}

func (a *Agent) metaOne(it protocol.MetaItem) error {
	e := it.Entry
	var fd int
	var err error
	closeFD := true
	switch {
	case e.ID == a.rootID:
		fd, closeFD = a.rootFD, false
	case e.Kind == tree.KindDir:
		fd, err = a.dirFD(e.ID)
		closeFD = false
	default:
		fd, err = openBeneath(a.rootFD, fileIndexPath(e.ID), unix.O_PATH|unix.O_NOFOLLOW)
	}
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, errUnknownDir) {
			return nil // gone on the secondary too (removed later in the batch)
		}
		return fmt.Errorf("metadata of %s: %w", e.ID.Short(), err)
	}
	if closeFD {
		defer unix.Close(fd)
	}
	if it.SetXattrs && e.Kind != tree.KindSymlink {
		if err := a.syncXattrs(fd, it.Xattrs); err != nil {
			return err
		}
	}
	if !it.SkipOwner {
		a.setOwnerMode(fd, e.Kind, e, e.Meta.Mode)
	} else if e.Kind != tree.KindSymlink {
		chmodFD(fd, e.Meta.Mode)
	}
	if !it.SkipTimes {
		return setTimes(fd, e)
	}
	return nil
}

func procPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

func chmodFD(fd int, mode uint32) error { return unix.Chmod(procPath(fd), mode&07777) }

// setOwnerMode applies owner, group and mode. Without the right to chown
// (fake-super), the real values go to user.georep.stat and the file gets
// a mode its owner can work with.
func (a *Agent) setOwnerMode(fd int, kind tree.Kind, e *tree.Entry, mode uint32) {
	if a.fakeSuper {
		a.setFakeStat(fd, e, kind)
		if kind == tree.KindSymlink {
			return
		}
		extra := uint32(0o600)
		if kind == tree.KindDir {
			extra = 0o700
		}
		chmodFD(fd, (mode&0o777)|extra)
		return
	}
	unix.Fchownat(fd, "", int(e.Meta.UID), int(e.Meta.GID), unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW)
	if kind != tree.KindSymlink {
		chmodFD(fd, mode)
	}
}

const fakeStatXattr = "user.georep.stat"

func (a *Agent) setFakeStat(fd int, e *tree.Entry, kind tree.Kind) {
	if kind == tree.KindSymlink {
		return // user xattrs are not allowed on symlinks
	}
	v := verify.EncodeFakeStat(kind, e.Meta.Mode, e.Rdev, e.Meta.UID, e.Meta.GID)
	unix.Setxattr(procPath(fd), fakeStatXattr, []byte(v), 0)
}

// applyFakeStat overrides a listed entry with what user.georep.stat holds.
func (a *Agent) applyFakeStat(dirfd int, name string, e *tree.Entry) {
	if e.Kind != tree.KindRegular && e.Kind != tree.KindDir {
		return
	}
	buf := make([]byte, 128)
	n, err := unix.Lgetxattr(procPath(dirfd)+"/"+name, fakeStatXattr, buf)
	if err != nil {
		return
	}
	kind, mode, rdev, uid, gid, err := verify.DecodeFakeStat(string(buf[:n]))
	if err != nil {
		return
	}
	e.Kind, e.Meta.Mode, e.Rdev, e.Meta.UID, e.Meta.GID = kind, mode, rdev, uid, gid
	if kind != tree.KindRegular {
		e.Size = 0
	}
}

// syncedXattr reports whether georep carries an xattr name; trusted.*
// only when the agent is root (not fake-super).
func (a *Agent) syncedXattr(name string) bool { return xattr.Synced(name, !a.fakeSuper) }

// syncXattrs makes the synced xattrs of fd exactly xs.
func (a *Agent) syncXattrs(fd int, xs []protocol.Xattr) error {
	p := procPath(fd)
	want := map[string][]byte{}
	for _, x := range xs {
		if a.syncedXattr(x.Name) {
			want[x.Name] = x.Value
		}
	}
	have := map[string][]byte{}
	for _, x := range xattr.Read(p, a.syncedXattr) {
		have[x.Name] = x.Value
	}
	for name := range have {
		if _, ok := want[name]; !ok {
			unix.Removexattr(p, name)
		}
	}
	var firstErr error
	for name, v := range want {
		if old, ok := have[name]; ok && string(old) == string(v) {
			continue
		}
		if err := unix.Setxattr(p, name, v, 0); err != nil && firstErr == nil {
			if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPERM) {
				continue // the secondary's filesystem or rights cannot hold it
			}
			firstErr = fmt.Errorf("set xattr %s: %w", name, err)
		}
	}
	return firstErr
}

// limbo removes staged entries the primary no longer has and lists the rest.
func (a *Agent) limbo(m *protocol.Limbo) protocol.Message {
	for _, id := range m.Remove {
		if _, ok := a.idx.dir(id); ok {
			a.removeTree(id)
		} else {
			a.drop(id)
		}
	}
	names, _ := readNames(a.rootFD, tmpDir)
	out := &protocol.LimboOK{}
	for _, n := range names {
		if id := fileid.ID(n); id.Valid() {
			out.Staged = append(out.Staged, id)
		}
	}
	return out
}

// hash returns SHA-256 digests of files by ID (zero when missing).
func (a *Agent) hash(m *protocol.Hash) protocol.Message {
	out := &protocol.HashOK{Sums: make([][32]byte, len(m.IDs))}
	for i, id := range m.IDs {
		fd, err := openBeneath(a.rootFD, fileIndexPath(id), unix.O_RDONLY|unix.O_NOFOLLOW)
		if err != nil {
			continue
		}
		f := os.NewFile(uintptr(fd), "hash")
		h := sha256.New()
		if _, err := io.Copy(h, f); err == nil {
			copy(out.Sums[i][:], h.Sum(nil))
		}
		f.Close()
	}
	return out
}
