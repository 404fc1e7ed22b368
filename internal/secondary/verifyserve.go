package secondary

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/georep/georep/internal/protocol"
	"github.com/georep/georep/internal/verify"
	"golang.org/x/sys/unix"
)

// extraHandlers answers message types registered outside the core set
// (protocol.Register). A handler gets the request id so that it can stream
// several replies; it returns the single reply, or nil when it replies by
// itself (possibly later, from its own goroutine registered in a.work, so
// that the next barrier waits for it).
var extraHandlers = map[protocol.Type]func(a *Agent, reqID uint64, m protocol.Message) protocol.Message{}

func init() {
	extraHandlers[protocol.TVerifyList] = func(a *Agent, reqID uint64, m protocol.Message) protocol.Message {
		req, ok := m.(*protocol.VerifyList)
		if !ok {
			return &protocol.Error{Msg: fmt.Sprintf("protocol: unexpected message %T", m)}
		}
		// The walk runs beside the read loop, so that Pings are answered
		// and the idle timer sees them however long the walk takes.
		a.work.Add(1)
		go func() {
			defer a.work.Done()
			a.serveVerify(reqID, req)
		}()
		return nil
	}
}

// Sizes of the verify stream.
const (
	verifyChunkItems = 1024
	verifyChunkBytes = 1 << 20
	// An item larger than this (xattrs, mostly) is sent as an error: a
	// frame must stay well below protocol.MaxFrame.
	verifyMaxItemBytes = 8 << 20
	verifyFlushEvery   = 100 * time.Millisecond
)

// serveVerify answers a VerifyList: VerifyChunks, then VerifyEnd (or an
// Error when the root cannot be read).
func (a *Agent) serveVerify(reqID uint64, req *protocol.VerifyList) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := time.Now()
	w := newVerifyWalk(ctx, a, req)
	var count int64
	sendErr := make(chan error, 1)
	go func() {
		var err error
		count, err = w.sendLoop(reqID)
		if err != nil {
			cancel()
		}
		sendErr <- err
	}()
	walkErr := w.run()
	close(w.out)
	if err := <-sendErr; err != nil {
		a.log.Warn("verify listing abandoned: the primary is gone", "err", err)
		return
	}
	if walkErr != nil {
		a.rep.Reply(reqID, &protocol.Error{Msg: walkErr.Error()})
	} else {
		a.rep.Reply(reqID, &protocol.VerifyEnd{Count: count, Hashed: w.hashed.Load()})
	}
	a.rep.Flush()
	a.log.Info("verify listing sent", "items", count, "hashed_bytes", w.hashed.Load(), "seconds", time.Since(started).Seconds(), "err", walkErr)
}

// verifyWalk lists the secondary tree for verify with verify.Walk, the
// walk behind verify.Local (lstat, symlinks never followed, a path that
// vanishes or cannot be read is an item with Err), confined like everything
// the agent does: the root is the agent's, each directory and file is
// opened with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) relative to its
// parent's descriptor, and xattrs of entries that cannot be opened
// (symlinks, FIFOs, devices) are read through /proc/self/fd/DIRFD/NAME,
// whose last component is not followed. Contents are digested here, on
// the secondary; user.georep.stat travels raw for the primary to apply.
type verifyWalk struct {
	a      *Agent
	req    *protocol.VerifyList
	ctx    context.Context
	out    chan protocol.VerifyItem
	hashed atomic.Int64
}

func newVerifyWalk(ctx context.Context, a *Agent, req *protocol.VerifyList) *verifyWalk {
	return &verifyWalk{a: a, req: req, ctx: ctx, out: make(chan protocol.VerifyItem, verifyChunkItems)}
}

// run walks the whole tree; an error means the root could not be read or
// the walk was cancelled.
func (w *verifyWalk) run() error {
	// A descriptor of our own: reading a directory moves its offset.
	fd, err := openBeneath(w.a.rootFD, ".", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("verify: open the secondary root: %w", err)
	}
	jobs := int(w.req.Jobs)
	if jobs <= 0 {
		jobs = 2*runtime.GOMAXPROCS(0) + 2
	}
	walk := verify.Walk{
		Open:      openBeneath,
		RootLabel: "the secondary root",
		Excludes:  verify.ExcludeSet(w.req.Excludes),
		HashJobs:  min(jobs, protocol.MaxVerifyJobs),
		Hashed:    &w.hashed,
	}
	return walk.Run(w.ctx, fd, func(e *verify.WalkEntry) error {
		it := verifyItem(&e.Item, e.Hashed)
		if e.HasAttrs {
			xs, stat, hasStat, errMsg := verify.ReadAttrs(e.Attrs, w.req.Xattrs, w.req.FakeSuper)
			if errMsg != "" {
				it.Err = errMsg
			} else {
				for _, x := range xs {
					it.Xattrs = append(it.Xattrs, protocol.Xattr{Name: x.Name, Value: x.Value})
				}
				it.HasStat, it.FakeStat = hasStat, stat
			}
		}
		return w.emit(it)
	})
}

// verifyItem is the wire form of a walked entry (xattrs left out).
func verifyItem(it *verify.Item, hashed bool) protocol.VerifyItem {
	return protocol.VerifyItem{Path: it.Path, Kind: it.Kind, Mode: it.Mode, UID: it.UID, GID: it.GID, Size: it.Size,
		Mtime: it.Mtime, Rdev: it.Rdev, Target: it.Target, HasHash: hashed, Hash: it.Hash, LinkGroup: it.LinkGroup, Err: it.Err}
}

// sendLoop cuts the items into chunks and sends them; a chunk goes out
// when full or when the walk has been slow for a while.
func (w *verifyWalk) sendLoop(reqID uint64) (int64, error) {
	var (
		batch []protocol.VerifyItem
		size  int
		count int64
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := w.a.rep.Reply(reqID, &protocol.VerifyChunk{Items: batch})
		batch, size = batch[:0], 0
		return err
	}
	t := time.NewTicker(verifyFlushEvery)
	defer t.Stop()
	for {
		select {
		case it, ok := <-w.out:
			if !ok {
				return count, flush()
			}
			batch = append(batch, it)
			size += it.EncodedSize()
			count++
			if len(batch) >= verifyChunkItems || size >= verifyChunkBytes {
				if err := flush(); err != nil {
					return count, err
				}
			}
		case <-t.C:
			if err := flush(); err != nil {
				return count, err
			}
		}
	}
}

func (w *verifyWalk) emit(it protocol.VerifyItem) error {
	if n := it.EncodedSize(); n > verifyMaxItemBytes {
		it = protocol.VerifyItem{Path: it.Path, Kind: it.Kind, Err: fmt.Sprintf("too large to describe (%d bytes of metadata)", n)}
	}
	select {
	case w.out <- it:
		return nil
	case <-w.ctx.Done():
		return w.ctx.Err()
	}
}
