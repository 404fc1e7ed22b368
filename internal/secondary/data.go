package secondary

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

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
	aborted bool   // the session ended first: no reply (set before ch is closed)
}

// openStreams counts the file streams waiting for more frames.
func (a *Agent) openStreams() int {
	a.streamMu.Lock()
	defer a.streamMu.Unlock()
	return len(a.streams)
}

// abortStreams ends the file streams still waiting for frames when the
// session ends: their writers see the stream end early and drop what they
// wrote. Only the read loop calls it (it alone sends on the channels).
func (a *Agent) abortStreams() {
	a.streamMu.Lock()
	defer a.streamMu.Unlock()
	for id, st := range a.streams {
		st.aborted = true
		close(st.ch)
		delete(a.streams, id)
	}
}

type frame struct {
	put   *protocol.PutFile
	delta *protocol.Delta
	buf   *[]byte // pooled frame buffer put.Data lives in (FileChunk), or nil
	cost  int64   // what it holds of the agent's byte budget
}

// putFile handles one PutFile frame. A file in one frame is written on the
// worker pool; a longer one gets a goroutine fed with its frames in order.
func (a *Agent) putFile(reqID uint64, m *protocol.PutFile, cost int64) {
	if m.Entry != nil && m.Last {
		a.async(func() {
			next := func() (frame, bool) { return frame{}, false }
			a.replyKick(reqID, a.receiveFile(m, next))
			a.mem.release(cost)
		})
		return
	}
	a.streamFrame(reqID, m.Stream, m.Entry != nil, m.Last, frame{put: m, cost: cost}, func(first frame, next func() (frame, bool)) protocol.Message {
		return a.receiveFile(first.put, next)
	})
}

// chunkFrame routes a FileChunk (a piece of a large file, after its
// PutFile) to its stream as a data frame; its buffer goes back to the pool
// once written.
func (a *Agent) chunkFrame(reqID uint64, m *protocol.FileChunk, buf *[]byte, cost int64) {
	put := &protocol.PutFile{Stream: m.Stream, Offset: m.Offset, Data: m.Data, Last: m.Last}
	a.streamFrame(reqID, m.Stream, false, m.Last, frame{put: put, buf: buf, cost: cost}, nil)
}

func (a *Agent) deltaFrame(reqID uint64, m *protocol.Delta, cost int64) {
	a.streamFrame(reqID, m.Stream, m.Entry != nil, m.Last, frame{delta: m, cost: cost}, func(first frame, next func() (frame, bool)) protocol.Message {
		return a.receiveDelta(first.delta, next)
	})
}

// streamFrame routes a frame to its stream, starting the stream's goroutine
// on the first frame. The reply goes out after the last frame. A frame
// holds its share of the byte budget until its stream asks for the next
// one (or ends); at most MaxOpenStreams streams are open at once.
func (a *Agent) streamFrame(reqID, stream uint64, first, last bool, f frame, run func(first frame, next func() (frame, bool)) protocol.Message) {
	a.streamMu.Lock()
	st, ok := a.streams[stream]
	if first {
		if ok || (!last && len(a.streams) >= MaxOpenStreams) {
			a.streamMu.Unlock()
			a.mem.release(f.cost)
			a.frames.Release(f.buf)
			msg := fmt.Sprintf("protocol: stream %d started twice", stream)
			if !ok {
				msg = fmt.Sprintf("protocol: stream %d refused: %d file streams are open already (the limit)", stream, MaxOpenStreams)
			}
			a.replyKick(reqID, &protocol.Error{Msg: msg})
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
			held := f.cost
			next := func() (frame, bool) {
				a.mem.release(held)
				fr, ok := <-st.ch
				held = fr.cost
				return fr, ok
			}
			reply := run(f, next)
			a.mem.release(held)
			for fr := range st.ch { // drain what a failure left unread
				a.frames.Release(fr.buf)
				a.mem.release(fr.cost)
			}
			if !st.aborted {
				a.replyKick(st.lastReq, reply)
			}
		}()
		if last {
			st.lastReq = reqID
			close(st.ch)
		}
		return
	}
	if !ok {
		a.streamMu.Unlock()
		a.mem.release(f.cost)
		a.frames.Release(f.buf)
		a.replyKick(reqID, &protocol.Error{Msg: fmt.Sprintf("protocol: frame for unknown stream %d", stream)})
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

// checkSlotNames refuses a new file whose slots cannot be names, before
// anything is written: a refused file leaves nothing in the index.
func (a *Agent) checkSlotNames(mode protocol.FileMode, slots []tree.Slot) error {
	if mode != protocol.FileNew {
		return nil // slots are only a hint
	}
	for _, s := range slots {
		if err := a.checkName(s); err != nil {
			return err
		}
	}
	return nil
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
	if err := a.checkSlotNames(m.Mode, m.Slots); err != nil {
		return fileErr(protocol.TPutFileOK, m.Stream, e.ID, "", err)
	}
	tmp := tmpName(e.ID, m.Stream)
	fd, err := unix.Openat(a.tmpFD, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fileErr(protocol.TPutFileOK, m.Stream, e.ID, "", fmt.Errorf("create: %w", err))
	}
	f := os.NewFile(uintptr(fd), tmp)
	var werr error
	var written int64
	cur := frame{put: m}
	for {
		if werr == nil && len(cur.put.Data) > 0 {
			if cur.put.Offset < 0 || cur.put.Offset > e.Size {
				werr = fmt.Errorf("protocol: data at offset %d beyond size %d", cur.put.Offset, e.Size)
			} else if _, err := f.WriteAt(cur.put.Data, cur.put.Offset); err != nil {
				werr = fmt.Errorf("write: %w", err)
			}
			written += int64(len(cur.put.Data))
		}
		cur.put.Data = nil // written: not kept while the stream runs (m is)
		a.frames.Release(cur.buf)
		if cur.put.Last {
			break
		}
		fr, ok := next()
		if !ok || fr.put == nil {
			a.frames.Release(fr.buf)
			werr = errors.New("protocol: file stream ended early")
			break
		}
		cur = fr
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
	a.wrote(written)
	return &protocol.FileOK{T: protocol.TPutFileOK, Stream: m.Stream, Bytes: written}
}

// receiveFiles installs a batch of whole files, each on its own; the reply
// lists the ones that failed.
func (a *Agent) receiveFiles(m *protocol.PutFiles) protocol.Message {
	out := &protocol.PutFilesOK{}
	for i := range m.Files {
		it := &m.Files[i]
		n, err := a.writeWhole(it)
		if err != nil {
			var id fileid.ID
			if it.Entry != nil {
				id = it.Entry.ID
			}
			out.Errors = append(out.Errors, protocol.OpError{Index: i, ID: id, Path: a.slotPath(it.Slots), Errno: errno(err), Msg: err.Error()})
			continue
		}
		out.Bytes += n
	}
	a.wrote(out.Bytes)
	return out
}

// writeWhole writes one file of a batch in the staging area, applies its
// metadata through the descriptor it has, and installs it as receiveFile
// does: new files into the index and then at their slots, new content of a
// known file over the old one.
func (a *Agent) writeWhole(it *protocol.FileItem) (int64, error) {
	e := it.Entry
	if e == nil || !e.ID.Valid() || e.Kind != tree.KindRegular {
		return 0, errors.New("protocol: batch file lacks a valid regular-file entry")
	}
	if e.Size < 0 || int64(len(it.Data)) > e.Size {
		return 0, fmt.Errorf("protocol: %d bytes of data for a file of %d", len(it.Data), e.Size)
	}
	if err := a.checkSlotNames(it.Mode, it.Slots); err != nil {
		return 0, err
	}
	if it.Mode == protocol.FileNew && !a.noTmpfile.Load() {
		if _, known := a.idx.file(e.ID); !known {
			if done, err := a.writeNewTmpfile(it); done {
				return int64(len(it.Data)), err
			}
		}
	}
	tmp := idName(e.ID) + ".new.b" + strconv.FormatUint(a.tmpSeq.Add(1), 10)
	fd, err := unix.Openat(a.tmpFD, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return 0, fmt.Errorf("create: %w", err)
	}
	st, werr := a.fillFile(fd, it)
	unix.Close(fd)
	if werr == nil {
		if it.Mode == protocol.FileNew {
			werr = a.installNewFast(e.ID, tmp, st.Ino, it.Slots)
		} else {
			var hint tree.Slot
			if len(it.Slots) > 0 {
				hint = it.Slots[0]
			}
			werr = a.replaceContent(e.ID, tmp, hint)
		}
	}
	if werr != nil {
		unix.Unlinkat(a.tmpFD, tmp, 0)
		return 0, werr
	}
	return int64(len(it.Data)), nil
}

// writeNewTmpfile writes a file new to the index as an unnamed file
// (O_TMPFILE) in its index shard and links it there when complete: the
// index name appears with its content and metadata, a crash leaves
// nothing behind, and no staging name is created and renamed away. done is
// false when the filesystem cannot (then nothing was done).
func (a *Agent) writeNewTmpfile(it *protocol.FileItem) (done bool, err error) {
	e := it.Entry
	sfd, err := a.shardFD(e.ID)
	if err != nil {
		return false, nil
	}
	// Created with its final permission bits (an unnamed file nobody else
	// can open), so that fchmod is usually not needed.
	fd, err := unix.Openat(sfd, ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, a.fileMode(e)&0o777)
	if err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) {
			a.noTmpfile.Store(true)
		}
		return false, nil
	}
	defer unix.Close(fd)
	st, err := a.fillFile(fd, it)
	if err != nil {
		return true, err
	}
	name := idName(e.ID)
	err = unix.Linkat(fd, "", sfd, name, unix.AT_EMPTY_PATH)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPERM) {
		// AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the /proc link does not.
		err = unix.Linkat(unix.AT_FDCWD, procPath(fd), sfd, name, unix.AT_SYMLINK_FOLLOW)
	}
	if errors.Is(err, unix.EEXIST) {
		// An index entry the in-memory index does not know: go through the
		// staging area, which replaces it.
		tmp := name + ".new.b" + strconv.FormatUint(a.tmpSeq.Add(1), 10)
		if err := unix.Linkat(unix.AT_FDCWD, procPath(fd), a.tmpFD, tmp, unix.AT_SYMLINK_FOLLOW); err != nil {
			return true, fmt.Errorf("link: %w", err)
		}
		if err := a.installNew(e.ID, tmp, it.Slots); err != nil {
			unix.Unlinkat(a.tmpFD, tmp, 0)
			return true, err
		}
		return true, nil
	}
	if err != nil {
		return true, fmt.Errorf("link into the index: %w", err)
	}
	a.idx.setFile(e.ID, st.Ino)
	return true, a.linkSlots(e.ID, sfd, it.Slots)
}

// fillFile writes a batch file's content and metadata through fd.
// It returns the file's stat (for its inode).
func (a *Agent) fillFile(fd int, it *protocol.FileItem) (unix.Stat_t, error) {
	var st unix.Stat_t
	e := it.Entry
	if err := writeAll(fd, it.Data); err != nil {
		return st, err
	}
	if int64(len(it.Data)) < e.Size {
		if err := unix.Ftruncate(fd, e.Size); err != nil {
			return st, fmt.Errorf("truncate: %w", err)
		}
	}
	if err := a.syncXattrsFD(fd, it.Xattrs); err != nil {
		return st, err
	}
	if err := unix.Fstat(fd, &st); err != nil {
		return st, err
	}
	a.setOwnerModeFD(fd, e, &st)
	return st, setTimes(fd, e)
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("write: %w", err)
		}
		b = b[n:]
	}
	return nil
}

// installNewFast is installNew for a file the index does not know yet:
// renamed into its index shard, then linked at its slots, through
// descriptors kept for the session. A replay (the ID is known) and an
// occupied slot take the general path.
func (a *Agent) installNewFast(id fileid.ID, tmp string, ino uint64, slots []tree.Slot) error {
	if _, ok := a.idx.file(id); ok {
		return a.installNew(id, tmp, slots)
	}
	sfd, err := a.shardFD(id)
	if err != nil {
		return a.installNew(id, tmp, slots)
	}
	name := idName(id)
	if err := unix.Renameat(a.tmpFD, tmp, sfd, name); err != nil {
		return err
	}
	a.idx.setFile(id, ino)
	return a.linkSlots(id, sfd, slots)
}

// setFile records that the index holds file id as inode ino.
func (ix *index) setFile(id fileid.ID, ino uint64) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if old, ok := ix.files[id]; ok && old != ino {
		delete(ix.byIno, old)
	}
	ix.files[id] = ino
	ix.byIno[ino] = id
}

// linkSlots links a file just entered in the index (sfd: its shard) at
// its slots.
func (a *Agent) linkSlots(id fileid.ID, sfd int, slots []tree.Slot) error {
	name := idName(id)
	for _, s := range slots {
		tfd, err := a.slotFD(s)
		if err != nil {
			return err
		}
		err = unix.Linkat(sfd, name, tfd, s.Name, 0)
		if errors.Is(err, unix.EEXIST) {
			err = a.link(id, s) // moves the occupant aside, or finds the file there
		}
		if err != nil {
			return err
		}
	}
	return nil
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
	ist, err := a.indexStat(id)
	if errors.Is(err, unix.ENOENT) {
		return a.installIndex(id, tmp)
	}
	if err != nil {
		return err
	}
	if ist.Mode&unix.S_IFMT != unix.S_IFREG {
		// New content for an ID the secondary holds as a device, FIFO,
		// symlink...: never written through, and not silently retyped.
		return fmt.Errorf("new content for %s: the secondary holds a %s under this ID: %w", id.Short(), tree.KindOf(ist.Mode), ErrNotRegular)
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
	// In place. Both ends are regular files (openContent), checked on
	// the descriptors written and read: the index entry's inode is the one
	// stat()ed above, or the rewrite is refused.
	sf, st, err := openContent(a.tmpFD, tmp, unix.O_RDONLY)
	if err != nil {
		return err
	}
	defer sf.Close()
	df, dstSt, err := a.openIndexContent(id, unix.O_WRONLY)
	if err != nil {
		return fmt.Errorf("rewrite in place: %w", err)
	}
	defer df.Close()
	if dstSt.Ino != ist.Ino {
		return fmt.Errorf("rewrite in place: the index entry of %s changed meanwhile", id.Short())
	}
	dst := int(df.Fd())
	// Reserve the space first: running out of it must fail before the old
	// content is touched, not leave a torn file under every name.
	if st.Size > 0 {
		if err := unix.Fallocate(dst, unix.FALLOC_FL_KEEP_SIZE, 0, st.Size); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("rewrite in place: reserve %d bytes: %w", st.Size, err)
		}
	}
	if _, err := io.Copy(df, sf); err != nil {
		return fmt.Errorf("rewrite in place: %w", err)
	}
	if err := df.Truncate(st.Size); err != nil {
		return fmt.Errorf("rewrite in place: %w", err)
	}
	ts := []unix.Timespec{unix.NsecToTimespec(st.Atim.Nano()), unix.NsecToTimespec(st.Mtim.Nano())}
	unix.UtimesNanoAt(dst, "", ts, unix.AT_EMPTY_PATH)
	unix.Fchmod(dst, st.Mode&07777)
	unix.Unlinkat(a.tmpFD, tmp, 0)
	return nil
}

func (a *Agent) signature(m *protocol.Sig) protocol.Message {
	f, st, err := a.openIndexContent(m.ID, unix.O_RDONLY)
	if err != nil {
		return &protocol.SigOK{Missing: true}
	}
	defer f.Close()
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
	oldF, _, err := a.openIndexContent(e.ID, unix.O_RDONLY)
	if err != nil {
		drain()
		return fileErr(protocol.TDeltaOK, m.Stream, e.ID, "", fmt.Errorf("open old copy: %w", err))
	}
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
				cur.Chunk = nil // consumed: not kept while the stream runs
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
	a.wrote(written)
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
		var sfd int
		if sfd, err = a.shardFD(e.ID); err == nil {
			fd, err = openBeneath(sfd, idName(e.ID), unix.O_PATH|unix.O_NOFOLLOW)
		}
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
	mode := e.Meta.Mode
	if e.ID == a.rootID {
		// The root stays the agent's, and nobody else may write in it
		// (.georep lives there): the primary root's owner is not copied
		// and group/other write, set-id and sticky bits are dropped.
		mode &= rootModeMask
		it.SkipOwner = true
	}
	if !it.SkipOwner {
		a.setOwnerMode(fd, e.Kind, e, mode)
	} else if e.Kind != tree.KindSymlink {
		chmodFD(fd, a.localMode(e.Kind, mode))
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
		chmodFD(fd, a.localMode(kind, mode))
		return
	}
	unix.Fchownat(fd, "", int(e.Meta.UID), int(e.Meta.GID), unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW)
	if kind != tree.KindSymlink {
		chmodFD(fd, mode)
	}
}

// setOwnerModeFD is setOwnerMode for a regular file open for writing,
// through the descriptor (no /proc path lookup), skipping what st (its
// current stat) shows done already.
func (a *Agent) setOwnerModeFD(fd int, e *tree.Entry, st *unix.Stat_t) {
	chowned := false
	if a.fakeSuper {
		v := verify.EncodeFakeStat(tree.KindRegular, e.Meta.Mode, e.Rdev, e.Meta.UID, e.Meta.GID)
		unix.Fsetxattr(fd, fakeStatXattr, []byte(v), 0)
	} else if st.Uid != e.Meta.UID || st.Gid != e.Meta.GID {
		unix.Fchown(fd, int(e.Meta.UID), int(e.Meta.GID))
		chowned = true // which may have cleared set-id bits
	}
	if want := a.fileMode(e); chowned || st.Mode&07777 != want {
		unix.Fchmod(fd, want)
	}
}

// rootModeMask is what the secondary root keeps of the primary root's mode.
const rootModeMask = 0o755

// localMode is the mode an entry of kind gets on this secondary: the
// primary's, or under fake-super one its owner (the agent) can use and
// without set-id bits (the real mode is in user.georep.stat), so that a
// non-root agent never leaves a set-id file or directory it owns.
func (a *Agent) localMode(kind tree.Kind, mode uint32) uint32 {
	if !a.fakeSuper {
		return mode & 07777
	}
	extra := uint32(0o600)
	if kind == tree.KindDir {
		extra = 0o700
	}
	return (mode & 0o777) | extra
}

// fileMode is the mode a regular file gets on this secondary: the
// primary's, or under fake-super one its owner (the agent) can use.
func (a *Agent) fileMode(e *tree.Entry) uint32 {
	if a.fakeSuper {
		return (e.Meta.Mode & 0o777) | 0o600
	}
	return e.Meta.Mode & 07777
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

// wantXattrs maps the primary's attributes to the names this secondary
// keeps them under (a fake-super one keeps security.* and trusted.* under
// user.georep., see xattr.StoredName).
func (a *Agent) wantXattrs(xs []protocol.Xattr) map[string][]byte {
	want := make(map[string][]byte, len(xs))
	for _, x := range xs {
		if xattr.Synced(x.Name, true) {
			want[xattr.StoredName(x.Name, a.fakeSuper)] = x.Value
		}
	}
	return want
}

// managedXattr reports whether the secondary's attribute (as stored) is
// one the agent keeps equal to the primary's.
func (a *Agent) managedXattr(name string) bool { return xattr.Managed(name, a.fakeSuper) }

// setXattrErr says whether a failed set is an error: a filesystem that
// holds no such attribute is left as it is; anything else (a refusal) is
// reported, never dropped.
func setXattrErr(name string, err error) error {
	if errors.Is(err, unix.EOPNOTSUPP) {
		return nil
	}
	return fmt.Errorf("set xattr %s: %w", name, err)
}

// syncXattrs makes the synced xattrs of fd exactly xs.
func (a *Agent) syncXattrs(fd int, xs []protocol.Xattr) error {
	p := procPath(fd)
	want := a.wantXattrs(xs)
	have := map[string][]byte{}
	for _, x := range xattr.Read(p, a.managedXattr) {
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
			firstErr = setXattrErr(name, err)
		}
	}
	return firstErr
}

// syncXattrsFD is syncXattrs through the descriptor of a file open for
// writing.
func (a *Agent) syncXattrsFD(fd int, xs []protocol.Xattr) error {
	var small [512]byte
	buf := small[:]
	sz, err := unix.Flistxattr(fd, buf)
	if errors.Is(err, unix.ERANGE) {
		if sz, err = unix.Flistxattr(fd, nil); err == nil {
			buf = make([]byte, sz+256)
			sz, err = unix.Flistxattr(fd, buf)
		}
	}
	if err != nil {
		sz = 0
	}
	want := a.wantXattrs(xs)
	if sz <= 0 && len(want) == 0 {
		return nil
	}
	have := map[string]bool{}
	for _, name := range strings.Split(string(buf[:max(sz, 0)]), "\x00") {
		if name == "" || !a.managedXattr(name) {
			continue
		}
		have[name] = true
		if _, ok := want[name]; !ok {
			unix.Fremovexattr(fd, name)
		}
	}
	var firstErr error
	for name, v := range want {
		if have[name] {
			cur := make([]byte, len(v)+1)
			if n, err := unix.Fgetxattr(fd, name, cur); err == nil && n == len(v) && string(cur[:n]) == string(v) {
				continue
			}
		}
		if err := unix.Fsetxattr(fd, name, v, 0); err != nil && firstErr == nil {
			firstErr = setXattrErr(name, err)
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
	names, _ := readNames(a.tmpFD, ".")
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
		f, _, err := a.openIndexContent(id, unix.O_RDONLY)
		if err != nil {
			continue // missing, or not a regular file: a zero digest
		}
		h := sha256.New()
		if _, err := io.Copy(h, f); err == nil {
			copy(out.Sums[i][:], h.Sum(nil))
		}
		f.Close()
	}
	return out
}
