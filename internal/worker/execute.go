package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"sync"
	"sync/atomic"
	"time"

	"github.com/georep/georep/internal/compression"
	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/plan"
	"github.com/georep/georep/internal/protocol"
	"github.com/georep/georep/internal/transfer/delta"
	"github.com/georep/georep/internal/transport"
	"github.com/georep/georep/internal/tree"
	"github.com/georep/georep/internal/xattr"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

const (
	opsPerMessage  = 4096
	frameData      = 1 << 20  // bytes of file data per frame
	inflightBytes  = 64 << 20 // unacknowledged file bytes
	deltaThreshold = 64 << 10 // smaller files are sent whole
	metaPerMessage = 2048

	// Small files travel in PutFiles batches: many files per frame and one
	// reply per batch, instead of a frame and a reply each.
	batchFileMax    = 1 << 20 // larger files are streamed on their own
	batchBytesMax   = 4 << 20 // content bytes per batch
	batchBytesFirst = 512 << 10
	batchFilesMax   = 2048 // files per batch
)

// Execute applies a job: entry ops in order, then data, then metadata. It
// returns errFailures (wrapped) when some items failed; they are in Stats.
//
// The three phases are pipelined: the agent applies messages in the order
// they arrive and entry ops and metadata are barriers there (they see the
// effects of everything before them), so the primary does not wait for
// one phase's answers before sending the next: data starts flowing while
// the agent still creates directories, and metadata follows the last file
// without a round trip. Every answer is awaited before Execute returns.
func (s *Session) Execute(ctx context.Context, job *Job) error {
	before := s.Stats().Failures
	for _, u := range job.Unreadable {
		s.fail(Failure{ID: u.ID, Path: u.Path, Op: "READ", Error: "cannot read the directory on the primary (its content on the secondary is kept): " + u.Err.Error(), Errno: errno(u.Err)})
	}
	t0 := time.Now()
	waitOps, err := s.applyOps(ctx, job)
	if err != nil {
		return err
	}
	t1 := time.Now()
	if err := s.checkContent(ctx, job); err != nil { // check.go
		waitOps()
		return err
	}
	waitData, err := s.transferData(ctx, job)
	if err != nil {
		waitOps()
		return err
	}
	t2 := time.Now()
	waitMeta, err := s.applyMeta(ctx, job)
	if err != nil {
		waitOps()
		waitData()
		return err
	}
	t3 := time.Now()
	for _, wait := range []func() error{waitOps, waitData, waitMeta} {
		if werr := wait(); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		return err
	}
	s.log.Info("job applied", "entries", t1.Sub(t0).Round(time.Millisecond), "data", t2.Sub(t1).Round(time.Millisecond),
		"meta", t3.Sub(t2).Round(time.Millisecond), "answers", time.Since(t3).Round(time.Millisecond))
	if n := s.Stats().Failures - before; n > 0 {
		return fmt.Errorf("%d failures: %w", n, errFailures)
	}
	return nil
}

// IsConnectionError reports whether err means the link to the secondary
// broke (worth a reconnect) rather than a local problem.
// An ssh failure that retrying cannot mend (a name that does not resolve,
// a remote command not found) is not one.
func IsConnectionError(err error) bool {
	var se *transport.SSHError
	if errors.As(err, &se) {
		return !se.Permanent()
	}
	return errors.Is(err, protocol.ErrClosed) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, io.EOF) ||
		errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET)
}

// IsFailures reports whether err only says some items failed (as opposed
// to the connection or the secondary as a whole failing).
func IsFailures(err error) bool { return errors.Is(err, errFailures) }

func (s *Session) pathOf(job *Job, id fileid.ID, slot tree.Slot) string {
	if p, ok := job.paths[id]; ok {
		return p
	}
	if slot.Parent != "" {
		if p, ok := job.paths[slot.Parent]; ok {
			if p == "" {
				return slot.Name
			}
			return p + "/" + slot.Name
		}
		if p, ok := s.primaryPath(slot.Parent); ok {
			return joinRel(p, slot.Name)
		}
		return slot.Parent.Short() + "/" + strconv.Quote(slot.Name)
	}
	if p, ok := s.primaryPath(id); ok {
		return p
	}
	return id.Short()
}

// primaryPath finds where an ID is on the primary now (by its handle), as
// a path relative to the source ("." for the root): for naming a failure
// whose path the job did not keep (a directory's metadata).
func (s *Session) primaryPath(id fileid.ID) (string, bool) {
	if id == s.rootID && id != "" {
		return ".", true
	}
	if s.opener == nil || !s.opener.Available() {
		return "", false
	}
	f, err := s.opener.Open(id, unix.O_PATH)
	if err != nil {
		return "", false
	}
	defer f.Close()
	abs, err := os.Readlink(procPath(int(f.Fd())))
	if err != nil {
		return "", false
	}
	rel, err := filepath.Rel(s.cfg.Source, abs)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", false
	}
	return rel, true
}

func joinRel(dir, name string) string {
	if dir == "" || dir == "." {
		return name
	}
	return dir + "/" + name
}

// done is the wait of a phase that sent nothing.
func done() error { return nil }

// applyOps sends the entry ops; wait returns once all are answered.
func (s *Session) applyOps(ctx context.Context, job *Job) (wait func() error, err error) {
	ops := job.Plan.Ops
	if len(ops) == 0 {
		return done, nil
	}
	wait, err = sendChunked(ctx, s, ops, opsPerMessage,
		func(c []plan.Op) protocol.Message { return &protocol.Compressed{Inner: &protocol.Apply{Ops: c}} },
		func(m protocol.Message) []protocol.OpError { return m.(*protocol.ApplyOK).Errors },
		func(op plan.Op, oe protocol.OpError) {
			slot := op.To
			if op.Kind == plan.Stage || op.Kind == plan.Unlink {
				slot = op.From
			}
			s.fail(Failure{ID: op.ID, Path: s.pathOf(job, op.ID, slot), Op: op.Kind.String(), Error: oe.Msg, Errno: oe.Errno})
		})
	if err != nil {
		return nil, err
	}
	s.count(func(st *Stats) {
		st.Entries += len(ops)
		for _, op := range ops {
			switch op.Kind {
			case plan.Move:
				st.Renames++
			case plan.Mkdir, plan.Symlink, plan.Mknod, plan.Link:
				st.Creates++
			case plan.Unlink, plan.RemoveTree:
				st.Deletes++
			}
		}
	})
	return wait, nil
}

// sendChunked sends items in pipelined messages of at most per items
// (wrap builds a message) and flushes them; wait waits for every answer,
// after handing each item the secondary reports as failed to onErr. A
// broken connection is the error.
func sendChunked[T any](ctx context.Context, s *Session, items []T, per int, wrap func([]T) protocol.Message,
	errsOf func(protocol.Message) []protocol.OpError, onErr func(T, protocol.OpError)) (wait func() error, err error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var connErr error
	for start := 0; start < len(items); start += per {
		chunk := items[start:min(start+per, len(items))]
		wg.Add(1)
		err := s.conn.Send(wrap(chunk), func(m protocol.Message, err error) bool {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				connErr = err
				mu.Unlock()
				return true
			}
			for _, oe := range errsOf(m) {
				if oe.Index >= 0 && oe.Index < len(chunk) {
					onErr(chunk[oe.Index], oe)
				}
			}
			return true
		})
		if err != nil {
			return nil, err // the callback saw the error
		}
	}
	if err := s.conn.Flush(); err != nil {
		return nil, err
	}
	return func() error {
		if err := waitCtx(ctx, &wg); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		return connErr
	}, nil
}

func waitCtx(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// byteWindow bounds unacknowledged file bytes.
type byteWindow struct {
	mu   sync.Mutex
	cond *sync.Cond
	used int64
	max  int64
}

func newByteWindow(max int64) *byteWindow {
	w := &byteWindow{max: max}
	w.cond = sync.NewCond(&w.mu)
	return w
}

func (w *byteWindow) acquire(n int64) {
	if n > w.max {
		n = w.max
	}
	w.mu.Lock()
	for w.used+n > w.max && w.used > 0 {
		w.cond.Wait()
	}
	w.used += n
	w.mu.Unlock()
}

func (w *byteWindow) release(n int64) {
	if n > w.max {
		n = w.max
	}
	w.mu.Lock()
	w.used -= n
	w.mu.Unlock()
	w.cond.Broadcast()
}

type dataTask struct {
	entry *tree.Entry
	slots []tree.Slot
	mode  protocol.FileMode
	old   *tree.Entry
}

// xfer is one data transfer: its window, counters and settings.
type xfer struct {
	s         *Session
	job       *Job
	window    *byteWindow
	pending   sync.WaitGroup
	filesDone atomic.Int64
	bytesDone atomic.Int64
	// settled is the size of the files whose outcome is known (answered,
	// or failed before sending): the progress toward TotalBytes that an
	// ETA can be taken from, whatever travelled (a delta, a batch).
	settled atomic.Int64
	root    bool // euid 0: trusted.* xattrs travel
}

// fileDone counts one file whose outcome is known.
func (x *xfer) fileDone(size int64) {
	x.filesDone.Add(1)
	x.settled.Add(size)
}

// batchDone counts the files of an answered batch.
func (x *xfer) batchDone(files []batchFile) {
	var n int64
	for _, f := range files {
		n += f.size
	}
	x.settled.Add(n)
	x.filesDone.Add(int64(len(files)))
}

// batch is one sender's PutFiles under construction.
type batch struct {
	b      protocol.FilesBuilder
	files  []batchFile
	chunks protocol.ChunkBuilder // large files' content
	// limit is the content bytes at which the batch goes out: it starts
	// at batchBytesFirst and doubles up to batchBytesMax, so that the
	// first bytes reach the link (and the secondary) early, while later
	// batches are large (fewer replies, more context to compress).
	limit int64
}

type batchFile struct {
	id   fileid.ID
	slot tree.Slot
	size int64
}

func (b *batch) full() bool {
	if b.limit == 0 {
		b.limit = batchBytesFirst
	}
	return b.b.Len() >= batchFilesMax || b.b.Bytes() >= b.limit
}

// transferData sends the files' content; wait returns once all of it is
// answered.
func (s *Session) transferData(ctx context.Context, job *Job) (wait func() error, err error) {
	var tasks []dataTask
	var total int64
	for _, nf := range job.Plan.NewFiles {
		tasks = append(tasks, dataTask{entry: nf.Entry, slots: nf.Slots, mode: protocol.FileNew})
		total += nf.Entry.Size
	}
	for _, d := range job.Data {
		tasks = append(tasks, dataTask{entry: d.Entry, slots: []tree.Slot{d.Hint}, mode: protocol.FileReplace, old: d.Old})
		total += d.Entry.Size
	}
	if len(tasks) == 0 {
		return done, nil
	}
	x := &xfer{s: s, job: job, window: newByteWindow(inflightBytes), root: os.Geteuid() == 0}
	s.awaitLinkProbe(ctx)
	startT := time.Now()
	stopProgress := make(chan struct{})
	if s.cfg.Progress != nil {
		go func() {
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stopProgress:
					return
				case <-t.C:
					s.cfg.Progress(Progress{Files: int(x.filesDone.Load()), TotalFiles: len(tasks), Bytes: x.bytesDone.Load(), TotalBytes: total, Settled: x.settled.Load(), Elapsed: time.Since(startT)})
				}
			}
		}()
	}
	stop := func() {
		close(stopProgress)
		if s.cfg.Progress != nil {
			s.cfg.Progress(Progress{Files: int(x.filesDone.Load()), TotalFiles: len(tasks), Bytes: x.bytesDone.Load(), TotalBytes: total, Settled: x.settled.Load(), Elapsed: time.Since(startT)})
		}
	}

	// Each sender takes the next task, reads small files straight into its
	// own batch and sends the batch when full; larger files are streamed
	// alone. Whoever sends a unit flushes it: no timer-driven small writes.
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for i := 0; i < s.cfg.SyncJobs; i++ {
		g.Go(func() error {
			b := &batch{}
			// Room for a full batch (its last file may pass the limit by up
			// to batchFileMax, plus the files' headers), so it never grows.
			b.b.Grow(batchBytesMax + batchFileMax + batchFilesMax*256)
			for gctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(tasks) {
					break
				}
				if err := x.sendFile(gctx, tasks[i], b); err != nil {
					return err
				}
			}
			if err := gctx.Err(); err != nil {
				return err
			}
			return x.sendBatch(b)
		})
	}
	if err := g.Wait(); err != nil {
		stop()
		return nil, err
	}
	if err := s.conn.Flush(); err != nil {
		stop()
		return nil, err
	}
	return func() error {
		defer stop()
		if err := waitCtx(ctx, &x.pending); err != nil {
			return err
		}
		return s.conn.Err()
	}, nil
}

// send sends a data message, compressed at the level the session's
// compression controller chooses for it (compressed here, by the sender,
// so that the senders compress in parallel and the controller times it).
func (x *xfer) send(m protocol.Message, fn protocol.ReplyFunc) error {
	c := x.s.comp
	raw := protocol.Body(m)
	ch := c.Choose(raw)
	if ch.Level == compression.Off {
		c.Sent(ch, len(raw))
		return x.s.conn.Send(m, fn)
	}
	t0 := time.Now()
	z := protocol.Compress(m, raw, zstd.EncoderLevel(ch.Level))
	c.Observe(ch, len(raw), z.Wire(), time.Since(t0))
	return x.s.conn.Send(z, fn)
}

// sendBatch sends the batch (if any), flushes, and empties it; the reply
// reports each file that failed.
func (x *xfer) sendBatch(b *batch) error {
	n := b.b.Len()
	if n == 0 {
		return nil
	}
	s := x.s
	files := b.files
	b.files = nil
	cost := b.b.Bytes() + int64(512*n)
	x.window.acquire(cost)
	x.pending.Add(1)
	err := x.send(b.b.Message(), func(m protocol.Message, err error) bool {
		defer x.pending.Done()
		defer x.window.release(cost)
		defer x.batchDone(files)
		if err != nil {
			// A broken connection is Execute's error (the sync reconnects
			// and crawls again), not a failure of each file in flight.
			if s.conn.Err() == nil {
				for _, f := range files {
					s.fail(Failure{ID: f.id, Path: s.pathOf(x.job, f.id, f.slot), Op: "DATA", Error: err.Error()})
				}
			}
			return true
		}
		ok, isOK := m.(*protocol.PutFilesOK)
		if !isOK {
			for _, f := range files {
				s.fail(Failure{ID: f.id, Path: s.pathOf(x.job, f.id, f.slot), Op: "DATA", Error: fmt.Sprintf("unexpected reply %T", m)})
			}
			return true
		}
		for _, oe := range ok.Errors {
			if oe.Index >= 0 && oe.Index < len(files) {
				f := files[oe.Index]
				s.fail(Failure{ID: f.id, Path: s.pathOf(x.job, f.id, f.slot), Op: "DATA", Error: oe.Msg, Errno: oe.Errno})
			}
		}
		return true
	})
	b.b.Reset() // Send encoded the message: the buffer is free again
	b.limit = min(2*max(b.limit, batchBytesFirst), batchBytesMax)
	if err != nil {
		return err // the callback saw the error
	}
	return s.conn.Flush()
}

// openPrimary opens a file of the source for reading: by handle when the
// kernel allows it (a rename cannot race it), else by path, checking that
// the path still names the same file.
func (s *Session) openPrimary(job *Job, id fileid.ID, flags int) (*os.File, error) {
	if s.opener.Available() {
		return s.opener.Open(id, flags)
	}
	p, ok := job.paths[id]
	if !ok {
		return nil, fmt.Errorf("no path known for %s", id.Short())
	}
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW), Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS}
	fd, err := unix.Openat2(s.srcFD, p, &how)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("%s: %w", p, fileid.ErrStale)
		}
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	got, err := fileid.Of(s.fsid, fd, "")
	if err != nil || got != id {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %w (renamed or replaced)", p, fileid.ErrStale)
	}
	return os.NewFile(uintptr(fd), p), nil
}

// sendFile reads one file and sends it: a small one into the sender's
// batch (sent when full), a large or sparse one streamed in frames, a
// changed large one as a delta.
func (x *xfer) sendFile(ctx context.Context, t dataTask, b *batch) error {
	s, job := x.s, x.job
	e := *t.entry
	f, err := s.openPrimary(job, e.ID, unix.O_RDONLY|unix.O_NOATIME)
	if errors.Is(err, unix.EPERM) {
		f, err = s.openPrimary(job, e.ID, unix.O_RDONLY)
	}
	if err != nil {
		x.fileDone(e.Size)
		if errors.Is(err, fileid.ErrStale) {
			return nil // deleted meanwhile: its removal is in a later batch
		}
		s.fail(Failure{ID: e.ID, Path: s.pathOf(job, e.ID, firstSlot(t.slots)), Op: "DATA", Error: err.Error(), Errno: errno(err)})
		return nil
	}
	defer f.Close()
	fd := int(f.Fd())
	// Describe the file as it is now, not as the crawl saw it.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err == nil {
		e.Size = st.Size
		e.Meta = tree.Meta{Mode: st.Mode & 07777, UID: st.Uid, GID: st.Gid, Atime: st.Atim.Nano(), Mtime: st.Mtim.Nano()}
		if s.cfg.TrackSuspects && racy(st.Ctim, time.Now()) {
			s.suspect.add(e.ID) // see racy.go
		}
	}
	var xattrs []protocol.Xattr
	if !s.cfg.NoXattrs {
		xattrs = readXattrsFD(fd, x.root, s.cfg.NoACLs)
	}
	if t.mode == protocol.FileReplace && e.Size >= deltaThreshold && t.old != nil && t.old.Size >= deltaThreshold {
		return x.sendDelta(ctx, f, e, t, b)
	}
	sparse := st.Blocks*512 < st.Size
	if e.Size <= batchFileMax && !sparse {
		err := b.b.Add(t.mode, &e, t.slots, xattrs, int(e.Size), func(buf []byte) (int, error) {
			n, err := io.ReadFull(f, buf)
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				err = nil // shrank meanwhile; the next change brings the rest
			}
			return n, err
		})
		if err != nil {
			x.fileDone(e.Size)
			s.fail(Failure{ID: e.ID, Path: s.pathOf(job, e.ID, firstSlot(t.slots)), Op: "DATA", Error: err.Error(), Errno: errno(err)})
			return nil
		}
		var after unix.Stat_t
		if unix.Fstat(fd, &after) == nil && changedWhileRead(&st, &after) {
			// Read again by the next pass (racy.go); this one fails.
			s.fail(Failure{ID: e.ID, Path: s.pathOf(job, e.ID, firstSlot(t.slots)), Op: "DATA", Error: "changed while it was read"})
		}
		b.files = append(b.files, batchFile{id: e.ID, slot: firstSlot(t.slots), size: e.Size})
		x.bytesDone.Add(e.Size)
		s.count(func(st *Stats) { st.DataFiles++; st.DataBytes += e.Size })
		if b.full() {
			return x.sendBatch(b)
		}
		return nil
	}
	return x.sendStream(f, &st, e, t, xattrs, b)
}

// sendStream sends a large or sparse file in frames of one stream.
func (x *xfer) sendStream(f *os.File, st *unix.Stat_t, e tree.Entry, t dataTask, xattrs []protocol.Xattr, b *batch) error {
	s, job := x.s, x.job
	path := s.pathOf(job, e.ID, firstSlot(t.slots))
	stream := s.nextStream()
	cost := e.Size + 512
	x.window.acquire(cost)
	x.pending.Add(1)
	replied := func(m protocol.Message, err error) bool {
		defer x.pending.Done()
		defer x.window.release(cost)
		x.fileDone(e.Size)
		if err != nil {
			s.fail(Failure{ID: e.ID, Path: path, Op: "DATA", Error: err.Error()})
			return true
		}
		if ok, isOK := m.(*protocol.FileOK); isOK && ok.Err != nil {
			s.fail(Failure{ID: e.ID, Path: path, Op: "DATA", Error: ok.Err.Msg, Errno: ok.Err.Errno})
		}
		return true
	}
	// The first frame describes the file; the content follows in chunks
	// read straight into the sender's chunk buffer.
	first := &protocol.PutFile{Stream: stream, Mode: t.mode, Entry: &e, Slots: t.slots, Xattrs: xattrs}
	if t.mode == protocol.FileNew && xattrs == nil {
		first.Xattrs = []protocol.Xattr{}
	}
	if err := x.send(first, nil); err != nil {
		x.pending.Done()
		x.window.release(cost)
		return err
	}
	sent := int64(0)
	err := readRegions(f, e.Size, st.Blocks*512 < st.Size, func(off int64, n int) (int, error) {
		c, err := b.chunks.Chunk(stream, off, false, n, func(p []byte) (int, error) { return f.ReadAt(p, off) })
		if len(c.Data) > 0 {
			if serr := x.send(c, nil); serr != nil {
				return 0, serr
			}
			sent += int64(len(c.Data))
			x.bytesDone.Add(int64(len(c.Data)))
		}
		return len(c.Data), err
	})
	if err != nil && !errors.Is(err, protocol.ErrClosed) {
		// A read error on the primary: end the stream so the secondary
		// discards it (the size check fails), and report the file.
		s.fail(Failure{ID: e.ID, Path: path, Op: "DATA", Error: err.Error(), Errno: errno(err)})
		end := &protocol.FileChunk{Stream: stream, Offset: e.Size + 1, Last: true, Data: []byte{0}}
		_ = s.conn.Send(end, func(protocol.Message, error) bool {
			x.pending.Done()
			x.window.release(cost)
			x.fileDone(e.Size)
			return true
		})
		return s.conn.Flush()
	}
	if err != nil {
		x.pending.Done()
		x.window.release(cost)
		return err
	}
	if err := x.send(&protocol.FileChunk{Stream: stream, Offset: e.Size, Last: true}, replied); err != nil {
		return err // replied saw the error
	}
	s.count(func(st *Stats) { st.DataFiles++; st.DataBytes += sent })
	return s.conn.Flush()
}

func firstSlot(ss []tree.Slot) tree.Slot {
	if len(ss) == 0 {
		return tree.Slot{}
	}
	return ss[0]
}

// readRegions reads a file in frame-sized pieces through read (which
// returns how much it read); for a sparse file it skips holes
// (SEEK_DATA/SEEK_HOLE), so holes stay holes on the secondary. A file that
// shrank meanwhile ends early: the next change fixes it.
func readRegions(f *os.File, size int64, sparse bool, read func(off int64, n int) (int, error)) error {
	fd := int(f.Fd())
	off := int64(0)
	for off < size {
		end := size
		if sparse {
			d, err := unix.Seek(fd, off, unix.SEEK_DATA)
			if err != nil {
				if errors.Is(err, unix.ENXIO) {
					return nil // only a hole is left
				}
				sparse = false
			} else {
				off = d
				h, err := unix.Seek(fd, off, unix.SEEK_HOLE)
				if err == nil {
					end = min(h, size)
				}
			}
		}
		for off < end {
			got, err := read(off, int(min(int64(frameData), end-off)))
			off += int64(got)
			if err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
			if got == 0 {
				return nil
			}
		}
	}
	return nil
}

func (x *xfer) sendDelta(ctx context.Context, f *os.File, e tree.Entry, t dataTask, b *batch) error {
	s, job := x.s, x.job
	path := s.pathOf(job, e.ID, firstSlot(t.slots))
	m, err := s.conn.Call(ctx, &protocol.Sig{ID: e.ID, Hint: firstSlot(t.slots)})
	if err != nil {
		return err
	}
	so := m.(*protocol.SigOK)
	if so.Missing {
		// Send it whole (in a batch when small enough): read afresh.
		t.entry = &e
		t.old = nil
		t.mode = protocol.FileReplace
		f.Close()
		return x.sendFile(ctx, t, b)
	}
	var sig delta.Signature
	if err := sig.UnmarshalBinary(so.Signature); err != nil {
		s.fail(Failure{ID: e.ID, Path: path, Op: "DATA", Error: "bad signature from the secondary: " + err.Error()})
		x.fileDone(e.Size)
		return nil
	}
	stream := s.nextStream()
	cost := int64(4 << 20)
	x.window.acquire(cost)
	x.pending.Add(1)
	sw := &deltaSender{x: x, stream: stream, entry: &e, hint: firstSlot(t.slots)}
	enc := delta.NewEncoder(sw)
	sum, err := delta.ComputeDelta(&sig, f, func(op delta.Op) error {
		if op.Kind == delta.OpLiteral {
			x.bytesDone.Add(int64(len(op.Data)))
		}
		return enc.WriteOp(op)
	})
	if err == nil {
		err = enc.Close(sum)
	}
	if err == nil {
		err = sw.flush(false)
	}
	done := func(m protocol.Message, rerr error) bool {
		defer x.pending.Done()
		defer x.window.release(cost)
		x.fileDone(e.Size)
		if rerr != nil {
			s.fail(Failure{ID: e.ID, Path: path, Op: "DELTA", Error: rerr.Error()})
		} else if ok, isOK := m.(*protocol.FileOK); isOK && ok.Err != nil {
			s.fail(Failure{ID: e.ID, Path: path, Op: "DELTA", Error: ok.Err.Msg, Errno: ok.Err.Errno})
		}
		return true
	}
	if err != nil {
		if errors.Is(err, protocol.ErrClosed) {
			x.pending.Done()
			x.window.release(cost)
			return err
		}
		s.fail(Failure{ID: e.ID, Path: path, Op: "DELTA", Error: err.Error(), Errno: errno(err)})
	}
	// The last frame (possibly carrying the encoder's tail).
	last := &protocol.Delta{Stream: stream, Chunk: sw.buf, Last: true}
	if !sw.started {
		last.Entry, last.Hint = &e, sw.hint
	}
	if err := x.send(last, done); err != nil {
		return err // done saw the error
	}
	s.count(func(st *Stats) { st.DataFiles++; st.DeltaFiles++ })
	return s.conn.Flush()
}

// deltaSender frames an encoded delta stream.
type deltaSender struct {
	x       *xfer
	stream  uint64
	entry   *tree.Entry
	hint    tree.Slot
	buf     []byte
	started bool
}

func (d *deltaSender) Write(p []byte) (int, error) {
	d.buf = append(d.buf, p...)
	if len(d.buf) >= frameData {
		if err := d.flush(false); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (d *deltaSender) flush(last bool) error {
	if len(d.buf) < frameData && !last {
		return nil
	}
	m := &protocol.Delta{Stream: d.stream, Chunk: d.buf}
	if !d.started {
		m.Entry, m.Hint = d.entry, d.hint
		d.started = true
	}
	d.buf = nil
	return d.x.send(m, nil)
}

func procPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// readXattrs reads the xattrs georep carries (see package xattr), without
// ACLs when noACLs.
func readXattrs(p string, noACLs bool) []protocol.Xattr {
	root := os.Geteuid() == 0
	var out []protocol.Xattr
	for _, x := range xattr.Read(p, func(n string) bool { return xattr.Synced(n, root) && !(noACLs && xattr.IsACL(n)) }) {
		out = append(out, protocol.Xattr{Name: x.Name, Value: x.Value})
	}
	return out
}

// readXattrsFD reads the xattrs georep carries (see package xattr) of an
// open file, through its descriptor (no path lookup).
func readXattrsFD(fd int, root, noACLs bool) []protocol.Xattr {
	var small [1024]byte
	buf := small[:]
	sz, err := unix.Flistxattr(fd, buf)
	if errors.Is(err, unix.ERANGE) {
		if sz, err = unix.Flistxattr(fd, nil); err == nil {
			buf = make([]byte, sz+256)
			sz, err = unix.Flistxattr(fd, buf)
		}
	}
	if err != nil || sz <= 0 {
		return nil
	}
	var out []protocol.Xattr
	for names := buf[:sz]; len(names) > 0; {
		i := bytes.IndexByte(names, 0)
		if i < 0 {
			i = len(names)
		}
		name := string(names[:i])
		names = names[min(i+1, len(names)):]
		if name == "" || !xattr.Synced(name, root) || noACLs && xattr.IsACL(name) {
			continue
		}
		vsz, err := unix.Fgetxattr(fd, name, nil)
		if err != nil {
			continue
		}
		v := make([]byte, vsz)
		if vsz, err = unix.Fgetxattr(fd, name, v); err != nil {
			continue
		}
		out = append(out, protocol.Xattr{Name: name, Value: v[:vsz]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func errno(err error) uint32 {
	var e unix.Errno
	if errors.As(err, &e) {
		return uint32(e)
	}
	return 0
}

// applyMeta sends the metadata; wait returns once all is answered.
func (s *Session) applyMeta(ctx context.Context, job *Job) (wait func() error, err error) {
	if len(job.Meta) == 0 {
		return done, nil
	}
	// A regular file's mtime travels with its content (set when the data
	// is installed); here it is set only when the content the secondary
	// holds is the one planned, so a quick check (size, mtime) never
	// mistakes stale content for current.
	withData := map[fileid.ID]bool{}
	for _, nf := range job.Plan.NewFiles {
		withData[nf.Entry.ID] = true
	}
	for _, d := range job.Data {
		withData[d.Entry.ID] = true
	}
	items := make([]protocol.MetaItem, 0, len(job.Meta))
	for _, mi := range job.Meta {
		e := *mi.Entry
		it := protocol.MetaItem{Entry: &e, Hint: mi.Hint}
		planned := e
		// Re-read the file's current metadata by handle; a vanished file
		// is skipped (its removal comes in a later batch).
		fresh, xattrs, err := s.statPrimary(job, &e, mi.Full && !s.cfg.NoXattrs)
		if err != nil {
			if errors.Is(err, fileid.ErrStale) {
				continue
			}
			s.fail(Failure{ID: e.ID, Path: s.pathOf(job, e.ID, mi.Hint), Op: "META", Error: err.Error(), Errno: errno(err)})
			continue
		}
		if fresh != nil {
			e.Meta = fresh.Meta
			if e.Kind == tree.KindRegular && (withData[e.ID] || fresh.Size != planned.Size || fresh.Meta.Mtime != planned.Meta.Mtime) {
				it.SkipTimes = true
			}
		}
		if mi.Full && !s.cfg.NoXattrs && e.Kind != tree.KindSymlink {
			it.SetXattrs = true
			it.Xattrs = xattrs
		}
		items = append(items, it)
	}
	wait, err = sendChunked(ctx, s, items, metaPerMessage,
		func(c []protocol.MetaItem) protocol.Message {
			return &protocol.Compressed{Inner: &protocol.Meta{Items: c}}
		},
		func(m protocol.Message) []protocol.OpError { return m.(*protocol.MetaOK).Errors },
		func(it protocol.MetaItem, oe protocol.OpError) {
			s.fail(Failure{ID: it.Entry.ID, Path: s.pathOf(job, it.Entry.ID, it.Hint), Op: "META", Error: oe.Msg, Errno: oe.Errno})
		})
	if err != nil {
		return nil, err
	}
	s.count(func(st *Stats) { st.Metadata += len(items) })
	return wait, nil
}

// statPrimary returns the current metadata (and xattrs) of a primary file.
func (s *Session) statPrimary(job *Job, e *tree.Entry, withXattrs bool) (*tree.Entry, []protocol.Xattr, error) {
	var fd int
	if e.ID == s.rootID {
		fd = s.srcFD
	} else {
		f, err := s.openPrimary(job, e.ID, unix.O_PATH|unix.O_NOFOLLOW)
		if err != nil {
			return nil, nil, err
		}
		defer f.Close()
		fd = int(f.Fd())
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, nil, err
	}
	out := &tree.Entry{Size: st.Size, Meta: tree.Meta{Mode: st.Mode & 07777, UID: st.Uid, GID: st.Gid, Atime: st.Atim.Nano(), Mtime: st.Mtim.Nano()}}
	var xs []protocol.Xattr
	if withXattrs && tree.KindOf(st.Mode) != tree.KindSymlink {
		xs = readXattrs(procPath(fd), s.cfg.NoACLs)
	}
	return out, xs, nil
}
