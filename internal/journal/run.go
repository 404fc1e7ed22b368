package journal

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/bits"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/georep/georep/internal/changelog"
	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/tree"
	"golang.org/x/sys/unix"
)

const (
	readBufSize = 256 << 10 // one read(2) of the fanotify fd
	smallRead   = 16 << 10  // reads up to this size are copied out, freeing the big buffer
	// The reader hands reads to the processor through a channel of
	// queueDepth reads holding at most maxInFlight bytes: when the
	// processor stalls (a slow fsync), about a million events wait in
	// memory rather than in the kernel queue, where they would overflow.
	queueDepth  = 1 << 16
	maxInFlight = 64 << 20
	freeBuffers = 64 // big read buffers kept for reuse
	// readCoalesce: after a read that was not large, the reader waits
	// this long before the next one, so that events are read by the
	// hundred rather than one or two per wakeup, and the kernel merges
	// more of them (CREATE|MODIFY|CLOSE_WRITE of one file become one). On
	// a create-heavy workload this cuts the journal's cost to the
	// filesystem's users several times over (see BenchmarkCreateOverhead);
	// it adds at most this much latency, and the kernel queue cannot fill
	// meanwhile (16384 events in 1 ms is beyond any filesystem).
	readCoalesce = time.Millisecond
	// maxWindowRecords closes a window early so that a changelog stays a
	// reasonable size (about 30-60 MiB).
	maxWindowRecords = 1 << 18
	// maxFailedRecords: while changelog writes fail, a window is kept and
	// retried; beyond this many records it is replaced by a gap.
	maxFailedRecords = 4 * maxWindowRecords
)

// batch is the result of one read(2).
type batch struct {
	buf    []byte
	big    bool  // buf is a pooled readBufSize buffer
	readAt int64 // when the read returned (ns)
	// emptyBefore: a read started at this time found the queue empty, so
	// every event queued before it is in an earlier batch.
	emptyBefore int64
}

// window is the records of one root not yet written.
type window struct {
	recs             []changelog.Record
	seenD, seenM     map[string]struct{} // identity keys with a D / M record in this window
	start            int64               // header Start: when the first record's event was read
	opened           int64               // when the first record was processed (rollover clock)
	last             int64               // when the last record was processed (quiet clock)
	firstEmptyBefore int64               // emptyBefore of the batch of the first record
	retryAt          int64               // after a failed write: not before this
}

func (w *window) init() {
	w.seenD = map[string]struct{}{}
	w.seenM = map[string]struct{}{}
}

func (w *window) reset() {
	clear(w.recs)
	w.recs = w.recs[:0]
	if len(w.seenD) > 4096 {
		w.seenD = map[string]struct{}{}
	} else {
		clear(w.seenD)
	}
	if len(w.seenM) > 4096 {
		w.seenM = map[string]struct{}{}
	} else {
		clear(w.seenM)
	}
	w.start, w.opened, w.last, w.firstEmptyBefore, w.retryAt = 0, 0, 0, 0, 0
}

// processor is the state owned by the processing goroutine.
type processor struct {
	j       *Journal
	cache   map[string]*dirEntry
	scratch []byte
	linkBuf []byte
	ev      event

	processed       uint64     // batches processed
	lastEmptyBefore int64      // emptyBefore of the last processed batch
	cur             *batch     // batch being processed
	now             int64      // when processing of cur began
	flushes         []flushReq // Flush requests waiting for the events before them
}

// stateEvery: an idle root's journal.state is rewritten when its vouched
// time has moved on this much, so that readers in other processes see the
// watermark advance on an idle tree.
const stateEvery = time.Second

func (j *Journal) run(ctx context.Context, handoff <-chan struct{}) (handing bool, err error) {
	ch := make(chan batch, queueDepth)
	free := make(chan []byte, freeBuffers)
	readErr := make(chan error, 1)
	go func() { readErr <- j.reader(ch, free) }()
	stopped := make(chan struct{})
	var handed atomic.Bool
	go func() {
		select {
		case <-ctx.Done():
		case <-handoff:
			handed.Store(true)
		case <-stopped:
			return
		}
		{
			// Wake the reader; it drains what is queued and closes ch.
			j.stopping.Store(true)
			var one [8]byte
			binary.NativeEndian.PutUint64(one[:], 1) // an eventfd increment
			if _, err := unix.Write(j.stopFD, one[:]); err != nil {
				j.log.Error("journal: cannot wake the event reader", "err", err)
			}
		}
	}()
	defer close(stopped)
	defer close(j.exited)

	p := &processor{
		j:               j,
		cache:           map[string]*dirEntry{},
		scratch:         make([]byte, 0, 3*maxKeyLen),
		linkBuf:         make([]byte, unix.PathMax+1),
		lastEmptyBefore: j.markTime,
	}
	now := time.Now().UnixNano()
	for _, r := range j.roots {
		r.win.opened, r.win.last = now, now // the start gap is flushed after QuietInterval
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	tick := time.NewTicker(j.cfg.RolloverInterval)
	defer tick.Stop()
	p.armTimer(timer)
	for {
		select {
		case b, ok := <-ch:
			if !ok {
				err := <-readErr
				return handed.Load() && err == nil, p.stop(err, handed.Load())
			}
			p.process(&b)
			if b.big {
				select {
				case free <- b.buf[:cap(b.buf)]:
				default:
				}
			}
			if j.inFlight.Add(-int64(cap(b.buf))) <= maxInFlight {
				select {
				case j.space <- struct{}{}:
				default:
				}
			}
			now := time.Now().UnixNano()
			if p.due(now) {
				p.flushDue(now)
			}
			if len(p.flushes) > 0 {
				p.serveFlushes()
			}
			p.armTimer(timer)
		case <-timer.C:
			p.flushDue(time.Now().UnixNano())
			p.armTimer(timer)
		case req := <-j.flushReq:
			req.at = time.Now().UnixNano()
			p.flushes = append(p.flushes, req)
			p.serveFlushes()
			p.armTimer(timer)
		case <-p.flushPoll():
			p.serveFlushes()
			p.armTimer(timer)
		case <-j.wake:
			// A rollover interval changed or a RollOver was asked for.
			p.flushDue(time.Now().UnixNano())
			p.armTimer(timer)
		case <-tick.C:
			v := p.vouch()
			p.updateWatermark(v)
			p.vouchIdle(v)
		}
	}
}

// reader moves events from the kernel queue to ch as fast as it can. It
// returns after stop was asked (stopFD) and the queue was found empty, or on
// a read error; it closes ch in both cases.
//
// It waits with poll(2), not the runtime's netpoller: an fd registered with
// epoll has a waiter on the fanotify wait queue at all times, so every event
// the kernel queues runs the epoll callback and wakes the netpoller thread,
// which on a create-heavy workload costs the filesystem's users more than
// everything else the journal does (BenchmarkCreateOverhead). poll(2) is on
// the wait queue only while the queue is empty.
func (j *Journal) reader(ch chan<- batch, free chan []byte) error {
	defer close(ch)
	lastEmpty := j.markTime
	getBuf := func() []byte {
		select {
		case b := <-free:
			return b
		default:
			return make([]byte, readBufSize)
		}
	}
	buf := getBuf()
	send := func(n int) {
		b := batch{readAt: time.Now().UnixNano(), emptyBefore: lastEmpty}
		if n <= smallRead {
			b.buf = append([]byte(nil), buf[:n]...)
		} else {
			b.buf, b.big = buf[:n], true
			buf = getBuf()
		}
		j.st.reads.Add(1)
		j.st.bytes.Add(uint64(n))
		j.inFlight.Add(int64(cap(b.buf)))
		// The count goes up before inflight goes down (see vouch).
		j.batchesRead.Add(1)
		j.inflight.Store(false)
		ch <- b
		if l := int64(len(ch)); l > j.st.maxBacklog.Load() {
			j.st.maxBacklog.Store(l)
		}
	}
	pfds := []unix.PollFd{{Fd: int32(j.fd), Events: unix.POLLIN}, {Fd: int32(j.stopFD), Events: unix.POLLIN}}
	for {
		stopping := j.stopping.Load()
		if h := j.beforeRead; h != nil && !stopping {
			h()
		}
		for j.inFlight.Load() > maxInFlight {
			// The processor is behind by maxInFlight bytes: let the
			// kernel queue take the rest. A stale signal only costs
			// one more check.
			j.st.readerWaits.Add(1)
			<-j.space
		}
		t := time.Now().UnixNano()
		j.inflight.Store(true)
		n, err := unix.Read(j.fd, buf)
		switch {
		case err == unix.EINTR:
			j.inflight.Store(false)
			continue
		case err == unix.EAGAIN:
			lastEmpty = t
			j.inflight.Store(false)
			if stopping {
				// Everything queued before t is read: the final drain is done.
				j.drainedAt.Store(t)
				return nil
			}
			if _, perr := unix.Poll(pfds, -1); perr != nil && perr != unix.EINTR {
				j.log.Error("journal: poll", "err", perr)
				time.Sleep(10 * time.Millisecond) // do not spin on a persistent error
			}
			continue
		case err != nil:
			j.inflight.Store(false)
			return fmt.Errorf("journal: read events: %w", err)
		case n <= 0:
			j.inflight.Store(false)
			continue
		}
		send(n)
		if n < readBufSize/2 && !stopping {
			time.Sleep(readCoalesce)
		}
	}
}

// vouch returns a time before which every event has been processed (its
// records are in windows or written): now, if the kernel queue is empty and
// the reader holds nothing; else the emptyBefore of the last batch processed.
//
// Why the check is sound: an event queued before t and not yet processed is
// either still queued (FIONREAD > 0), or taken by a read that is still in
// flight (inflight), or in a batch counted in batchesRead but not processed.
// The reader raises batchesRead before lowering inflight, and vouch reads
// them in the opposite order, so a read completing in between is caught.
// (FIONREAD is TIOCINQ on Linux; fanotify answers it with the bytes queued.)
func (p *processor) vouch() int64 {
	j := p.j
	t := time.Now().UnixNano()
	if d := j.drainedAt.Load(); d != 0 && j.batchesRead.Load() == p.processed {
		return d // stopped: the queue was found empty at d and everything is processed
	}
	n, err := unix.IoctlGetInt(j.fd, unix.TIOCINQ)
	if err == nil && n == 0 && !j.inflight.Load() && j.batchesRead.Load() == p.processed {
		return t
	}
	return p.lastEmptyBefore
}

// updateWatermark publishes the global watermark given v = vouch().
func (p *processor) updateWatermark(v int64) {
	wm := v
	for _, r := range p.j.roots {
		if len(r.win.recs) > 0 {
			wm = min(wm, r.win.firstEmptyBefore)
		}
	}
	if wm > p.j.st.watermark.Load() {
		p.j.st.watermark.Store(wm)
	}
}

// vouchIdle moves the vouched time of every root with an empty window to v
// (all its processed records are durable) and rewrites its journal.state
// when that moved by stateEvery.
func (p *processor) vouchIdle(v int64) {
	for _, r := range p.j.roots {
		if len(r.win.recs) > 0 || v <= r.vouched {
			continue
		}
		r.vouched = v
		r.publish()
		if r.vouched-r.saved >= int64(stateEvery) {
			p.saveState(r, false)
		}
	}
}

// saveState rewrites root r's journal.state.
func (p *processor) saveState(r *rootState, clean bool) error {
	err := writeState(r.dir, state{LastSeq: r.nextSeq - 1, End: r.vouched, Clean: clean, Since: r.since, Updated: time.Now().UnixNano()})
	if err != nil {
		p.j.st.writeErrors.Add(1)
		p.j.log.Error("journal: cannot save state", "dir", r.dir, "err", err)
		return err
	}
	r.saved = r.vouched
	return nil
}

// process handles every event of a batch.
func (p *processor) process(b *batch) {
	j := p.j
	p.cur = b
	p.now = time.Now().UnixNano()
	buf := b.buf
	var n uint64
	for len(buf) > 0 {
		l, err := parseEvent(buf, &p.ev, p.scratch[:0])
		if err != nil {
			j.log.Error("journal: unparsable events; skipping the rest of the read", "err", err, "bytes", len(buf))
			// Events may be lost: the worker must crawl.
			p.gap(b.emptyBefore, b.readAt, ReasonUnparsable)
			break
		}
		buf = buf[l:]
		n++
		p.handle(&p.ev)
	}
	j.st.events.Add(n)
	p.processed++
	p.lastEmptyBefore = b.emptyBefore
	p.cur = nil
}

// handle turns one event into records.
func (p *processor) handle(ev *event) {
	j := p.j
	m := ev.mask
	if m&unix.FAN_Q_OVERFLOW != 0 {
		j.st.overflows.Add(1)
		// Lost events may include directory renames: the cache is suspect.
		p.clearCache()
		j.log.Warn("journal: kernel queue overflow; recording a gap for a crawl")
		p.gap(p.cur.emptyBefore, p.cur.readAt, ReasonOverflow)
		return
	}
	isDir := m&unix.FAN_ONDIR != 0
	if m&unix.FAN_RENAME != 0 {
		p.rename(ev, isDir)
		return
	}
	if ev.dir == nil {
		// Only the object: DELETE_SELF/MOVE_SELF of a non-directory,
		// whose entry events carry what matters.
		if m&(unix.FAN_MODIFY|unix.FAN_CLOSE_WRITE|unix.FAN_ATTRIB) != 0 && ev.obj != nil {
			p.orphan(ev)
		}
		return
	}
	if string(ev.name) == "." || (len(ev.name) == 0 && ev.obj == nil) {
		// An event on the directory itself (ATTRIB, DELETE_SELF,
		// MOVE_SELF); the root is the one directory whose events
		// matter here without a parent in the root.
		if m&unix.FAN_ATTRIB != 0 {
			d := p.lookupDir(ev.dir)
			if d.roots == 0 {
				p.dropped(d)
			} else {
				p.meta(d.roots, ev.dir, d.id, "", nil)
			}
		}
		if m&unix.FAN_DELETE_SELF != 0 {
			delete(p.cache, string(ev.dir))
		}
		return
	}
	d := p.lookupDir(ev.dir)
	if d.roots == 0 || d.excludedName(ev.name) {
		p.dropped(d)
		if isDir && ev.obj != nil {
			if m&unix.FAN_CREATE != 0 {
				p.learnDir(ev.obj, d, ev.name) // saves a resolve if it gets events
			} else if m&unix.FAN_DELETE != 0 {
				delete(p.cache, string(ev.obj))
			}
		}
		return
	}
	var child fileid.ID
	if ev.obj != nil {
		child = fileid.ID(hexKey(ev.obj))
	}
	name := string(ev.name)
	if m&unix.FAN_CREATE != 0 && child != "" {
		op := changelog.OpCreate
		if isDir {
			op = changelog.OpMkdir
			// Even when merged with its rmdir (CREATE|DELETE): the events
			// inside it were queued after this merged event.
			p.learnDir(ev.obj, d, ev.name)
		}
		p.add(d.roots, changelog.Record{Type: changelog.Entry, Op: op, ID: child, Parent: d.id, Name: name})
	}
	if m&(unix.FAN_MODIFY|unix.FAN_CLOSE_WRITE) != 0 && !isDir && child != "" {
		p.data(d.roots, ev.obj, child, d.id, name)
	}
	if m&unix.FAN_ATTRIB != 0 && child != "" {
		p.meta(d.roots, ev.obj, child, d.id, ev.name)
	}
	if m&unix.FAN_DELETE != 0 && child != "" {
		op := changelog.OpUnlink
		if isDir {
			op = changelog.OpRmdir
			if m&unix.FAN_CREATE == 0 {
				delete(p.cache, string(ev.obj))
			}
		}
		p.add(d.roots, changelog.Record{Type: changelog.Entry, Op: op, ID: child, Parent: d.id, Name: name})
	}
}

// rename handles FAN_RENAME: a RENAME in the roots holding both sides, a
// CREATE/MKDIR in those holding only the new side, an UNLINK/RMDIR in those
// holding only the old one.
func (p *processor) rename(ev *event, isDir bool) {
	j := p.j
	if ev.dir == nil || ev.dir2 == nil || ev.obj == nil {
		j.log.Warn("journal: FAN_RENAME without both directories and the object; ignored")
		return
	}
	od, nd := p.lookupDir(ev.dir), p.lookupDir(ev.dir2)
	oldRoots, newRoots := od.roots, nd.roots
	if od.excludedName(ev.name) {
		oldRoots = 0
	}
	if nd.excludedName(ev.name2) {
		newRoots = 0
	}
	if isDir {
		// The paths of the whole subtree changed: drop the cache. The two
		// parents are not in that subtree and keep their entries; the
		// moved directory is learned at its new place.
		if _, ok := j.rootKeys[string(ev.obj)]; ok {
			j.log.Error("journal: a root directory was renamed; its events are no longer seen until the journal restarts", "id", fileid.ID(hexKey(ev.obj)).Short())
		}
		p.clearCache()
		p.cache[string(ev.dir)] = od
		p.cache[string(ev.dir2)] = nd
		p.learnDir(ev.obj, nd, ev.name2)
	}
	if oldRoots|newRoots == 0 {
		if od.stale && nd.stale {
			j.st.stale.Add(1)
		} else {
			j.st.dropped.Add(1)
		}
		return
	}
	child := fileid.ID(hexKey(ev.obj))
	oldName, newName := string(ev.name), string(ev.name2)
	if both := oldRoots & newRoots; both != 0 {
		p.add(both, changelog.Record{Type: changelog.Entry, Op: changelog.OpRename, ID: child,
			Parent: od.id, Name: oldName, NewParent: nd.id, NewName: newName})
	}
	if in := newRoots &^ oldRoots; in != 0 {
		op := changelog.OpCreate
		if isDir {
			op = changelog.OpMkdir
		}
		p.add(in, changelog.Record{Type: changelog.Entry, Op: op, ID: child, Parent: nd.id, Name: newName})
	}
	if out := oldRoots &^ newRoots; out != 0 {
		op := changelog.OpUnlink
		if isDir {
			op = changelog.OpRmdir
		}
		p.add(out, changelog.Record{Type: changelog.Entry, Op: op, ID: child, Parent: od.id, Name: oldName})
	}
}

// orphan handles a data or metadata event that came without a directory:
// the object's own path decides (best effort; no slot hint).
func (p *processor) orphan(ev *event) {
	roots, _, _, err := p.resolve(ev.obj)
	if err != nil || roots == 0 {
		p.j.st.dropped.Add(1)
		return
	}
	id := fileid.ID(hexKey(ev.obj))
	if ev.mask&(unix.FAN_MODIFY|unix.FAN_CLOSE_WRITE) != 0 && ev.mask&unix.FAN_ONDIR == 0 {
		p.data(roots, ev.obj, id, "", "")
	}
	if ev.mask&unix.FAN_ATTRIB != 0 {
		p.meta(roots, ev.obj, id, "", nil)
	}
}

func (p *processor) dropped(d *dirEntry) {
	if d.stale {
		p.j.st.stale.Add(1)
	} else {
		p.j.st.dropped.Add(1)
	}
}

func (p *processor) clearCache() {
	if len(p.cache) > 0 {
		clear(p.cache)
		p.j.st.cacheClears.Add(1)
	}
}

// data adds a D record to the windows of roots that have none for key yet.
func (p *processor) data(roots uint64, key []byte, id, parent fileid.ID, name string) {
	for m := roots; m != 0; m &= m - 1 {
		i := bits.TrailingZeros64(m)
		w := &p.j.roots[i].win
		if _, seen := w.seenD[string(key)]; seen {
			continue
		}
		w.seenD[string(key)] = struct{}{}
		p.addTo(i, changelog.Record{Type: changelog.Data, ID: id, Parent: parent, Name: name})
	}
}

// meta adds an M record to the windows of roots that have none for key yet.
func (p *processor) meta(roots uint64, key []byte, id, parent fileid.ID, name []byte) {
	var nm string
	for m := roots; m != 0; m &= m - 1 {
		i := bits.TrailingZeros64(m)
		w := &p.j.roots[i].win
		if _, seen := w.seenM[string(key)]; seen {
			continue
		}
		w.seenM[string(key)] = struct{}{}
		if nm == "" && name != nil {
			nm = string(name)
		}
		r := changelog.Record{Type: changelog.Meta, ID: id}
		if parent != "" {
			r.Parent, r.Name = parent, nm
		}
		p.addTo(i, r)
	}
}

// gap adds a G record to every root.
func (p *processor) gap(from, to int64, reason string) {
	from = min(from, to)
	p.add(p.j.allRoots, changelog.Record{Type: changelog.Gap, From: from, To: to, Reason: reason})
	for _, r := range p.j.roots {
		r.since = max(r.since, to)
	}
}

func (p *processor) add(roots uint64, r changelog.Record) {
	for m := roots; m != 0; m &= m - 1 {
		p.addTo(bits.TrailingZeros64(m), r)
	}
}

func (p *processor) addTo(i int, r changelog.Record) {
	j := p.j
	if !sane(&r) {
		// Cannot happen with kernel-supplied names and handles; never let
		// one record fail a whole changelog (WriteFile refuses a file
		// with an invalid record).
		j.log.Error("journal: dropping an invalid record", "record", r.String(), "err", r.Validate())
		return
	}
	// Windows are timed by processing time, so that a backlog (after a
	// slow fsync, say) lands in one window instead of a cascade of tiny ones.
	w := &j.roots[i].win
	if len(w.recs) == 0 {
		w.start = p.cur.readAt
		w.opened = p.now
		w.firstEmptyBefore = p.cur.emptyBefore
	}
	w.last = p.now
	w.recs = append(w.recs, r)
	if h := j.onRecord; h != nil {
		h(i, &w.recs[len(w.recs)-1])
	}
}

// sane makes sure r passes changelog's Record.Validate, cheaply: IDs built
// by hexKey are always well-formed, so only names need checking. A D or M
// record with an unusable slot hint loses the hint, not the record.
func sane(r *changelog.Record) bool {
	switch r.Type {
	case changelog.Entry:
		if r.ID == "" || r.Parent == "" || !tree.ValidName(r.Name) {
			return false
		}
		if r.Op == changelog.OpRename {
			return r.NewParent != "" && tree.ValidName(r.NewName)
		}
	case changelog.Data, changelog.Meta:
		if r.ID == "" {
			return false
		}
		if r.Parent == "" || !tree.ValidName(r.Name) {
			r.Parent, r.Name = "", ""
		}
	case changelog.Gap:
		return r.From <= r.To
	}
	return true
}

// deadline is when root r's window must be written (0: nothing to write).
func (j *Journal) deadline(r *rootState) int64 {
	w := &r.win
	if len(w.recs) == 0 {
		return 0
	}
	if len(w.recs) >= maxWindowRecords {
		return max(w.retryAt, 1)
	}
	return windowDeadline(w.opened, w.last, w.retryAt, j.rolloverOf(r), int64(j.cfg.QuietInterval), r.eager.Load())
}

func (p *processor) due(now int64) bool {
	for _, r := range p.j.roots {
		if d := p.j.deadline(r); d != 0 && d <= now {
			return true
		}
	}
	return false
}

func (p *processor) armTimer(t *time.Timer) {
	var next int64
	for _, r := range p.j.roots {
		if d := p.j.deadline(r); d != 0 && (next == 0 || d < next) {
			next = d
		}
	}
	if next == 0 {
		t.Stop()
		return
	}
	t.Reset(time.Duration(max(next-time.Now().UnixNano(), 0)))
}

// flushDue writes the windows whose deadline has come.
func (p *processor) flushDue(now int64) {
	v := int64(-1)
	wrote := false
	for _, r := range p.j.roots {
		if d := p.j.deadline(r); d != 0 && d <= now {
			if v < 0 {
				v = p.vouch()
			}
			if p.flush(r, now, v, false) == nil {
				wrote = true
			}
		}
	}
	if v >= 0 {
		p.updateWatermark(v)
	}
	if wrote {
		p.signal()
	}
}

func (p *processor) signal() {
	select {
	case p.j.notify <- struct{}{}:
	default:
	}
}

// flush writes root r's window as the next changelog and persists the state;
// v is vouch() taken before: every processed record of r is in this window
// or earlier ones, so after the write r is vouched up to v.
func (p *processor) flush(r *rootState, now, v int64, clean bool) error {
	j := p.j
	w := &r.win
	seq := r.nextSeq
	eager := r.eager.Load() // served by this changelog
	path := filepath.Join(r.dir, changelog.FileName(seq))
	end := max(now, w.start)
	err := changelog.WriteFile(path, changelog.Header{Seq: seq, Start: w.start, Source: changelog.SourceJournal}, w.recs, end)
	if err != nil {
		j.st.writeErrors.Add(1)
		w.retryAt = now + int64(j.cfg.RolloverInterval)
		j.log.Error("journal: cannot write changelog; will retry", "path", path, "records", len(w.recs), "err", err)
		if len(w.recs) > maxFailedRecords {
			// Writes keep failing (disk full?): bound the memory by
			// trading the records for a gap that a crawl will cover.
			from := min(w.firstEmptyBefore, now)
			w.reset()
			w.start, w.opened, w.last, w.firstEmptyBefore = from, now, now, from
			w.retryAt = now + int64(j.cfg.RolloverInterval)
			w.recs = append(w.recs, changelog.Record{Type: changelog.Gap, From: from, To: now, Reason: ReasonWriteFailed})
		}
		return err
	}
	r.nextSeq++
	r.eager.CompareAndSwap(eager, -1) // a RollOver asked for meanwhile holds
	j.st.records.Add(uint64(len(w.recs)))
	j.st.changelogs.Add(1)
	j.st.lastRollover.Store(time.Now().UnixNano())
	w.reset()
	r.vouched = max(r.vouched, v)
	r.publish()
	// The changelog is durable; a failed state write only widens the
	// restart gap (saveState logs it).
	_ = p.saveState(r, clean)
	return nil
}

// stop writes the final windows and a clean state once the reader drained
// the queue (readErr nil) or failed.
func (p *processor) stop(readErr error, handoff bool) error {
	j := p.j
	now := time.Now().UnixNano()
	v := p.vouch()
	var firstErr error
	wrote := false
	for _, r := range j.roots {
		clean := readErr == nil
		if len(r.win.recs) > 0 {
			if err := p.flush(r, now, v, clean); err != nil {
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			wrote = true
			continue
		}
		r.vouched = max(r.vouched, v)
		r.publish()
		if err := p.saveState(r, clean); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	p.updateWatermark(v)
	if wrote {
		p.signal()
	}
	if readErr != nil {
		return readErr
	}
	if firstErr != nil {
		return fmt.Errorf("journal: final changelog: %w", firstErr)
	}
	j.log.Info("journal: stopped", "events", j.st.events.Load(), "changelogs", j.st.changelogs.Load(), "handoff", handoff)
	return nil
}
