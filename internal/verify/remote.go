package verify

import (
	"context"
	"errors"
	"fmt"

	"github.com/georep/georep/internal/protocol"
	"github.com/georep/georep/internal/tree"
)

// RemoteSession is a connection to a secondary agent on which the handshake
// is done (a *worker.Session is one).
type RemoteSession interface {
	Conn() *protocol.Conn
	Close() error
}

// RemoteConfig says how to reach a replica through its secondary agent.
type RemoteConfig struct {
	// Name is the replica as the user wrote it ([user@]host:/path), for
	// messages.
	Name string
	// Connect reaches the agent and does the handshake; Items closes what
	// it returns. worker.Connect fits (it sends the primary root's ID, which
	// the agent needs to keep its index).
	Connect func(ctx context.Context) (RemoteSession, error)
	// FakeSuper honours user.georep.stat whatever the Options say, like
	// LocalFakeSuper.
	FakeSuper bool
	// Jobs is the number of files the agent hashes in parallel; 0 lets it
	// choose (it bounds the number anyway).
	Jobs int
	// Done, when set, is called once a listing completed, with its figures.
	Done func(RemoteStats)
}

// RemoteStats are the figures of one remote listing.
type RemoteStats struct {
	Items       int64 // entries the agent described
	HashedBytes int64 // content digested on the secondary (not sent)
	WireBytes   int64 // bytes received from the agent for the listing
}

// Remote returns a Source for a replica on another host: its agent walks
// the tree beneath its root (confined, .georep excluded), digests file
// content there — so no content crosses the network — and streams the
// entries in chunks. The Items it yields are those Local would yield on the
// secondary host: same fields, same link-group rule, same error and
// "vanished" items, and user.georep.stat applied by the same code when
// fake-super is asked for.
func Remote(cfg RemoteConfig) Source { return &remote{cfg: cfg} }

type remote struct{ cfg RemoteConfig }

type remoteEvent struct {
	items []protocol.VerifyItem
	end   *protocol.VerifyEnd
	err   error
}

func (r *remote) Items(ctx context.Context, opts Options, fn func(Item) error) error {
	if r.cfg.Connect == nil {
		return errors.New("verify: remote replica without a way to connect")
	}
	sess, err := r.cfg.Connect(ctx)
	if err != nil {
		return err
	}
	defer sess.Close()
	conn := sess.Conn()
	recv0 := conn.BytesReceived()
	fake := r.cfg.FakeSuper || opts.FakeSuper
	req := &protocol.VerifyList{Xattrs: !opts.NoXattrs, FakeSuper: fake, Excludes: opts.Excludes,
		Jobs: uint32(min(max(r.cfg.Jobs, 0), protocol.MaxVerifyJobs))}

	// The reply callback runs on the connection's reader: it hands chunks
	// over through a small queue, so the stream's own flow control bounds
	// what is in flight, and gives up once Items has returned.
	events := make(chan remoteEvent, 4)
	stop := make(chan struct{})
	defer close(stop)
	deliver := func(ev remoteEvent) bool {
		select {
		case events <- ev:
			return true
		case <-stop:
			return false
		}
	}
	err = conn.Send(req, func(m protocol.Message, err error) bool {
		if err != nil {
			deliver(remoteEvent{err: err})
			return true
		}
		switch m := m.(type) {
		case *protocol.VerifyChunk:
			return !deliver(remoteEvent{items: m.Items})
		case *protocol.VerifyEnd:
			deliver(remoteEvent{end: m})
		default:
			deliver(remoteEvent{err: fmt.Errorf("unexpected reply %T to a verify listing", m)})
		}
		return true
	})
	if err == nil {
		err = conn.Flush()
	}
	if err != nil {
		return r.wrap(err)
	}
	var got int64
	for {
		var ev remoteEvent
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev = <-events:
		}
		if ev.err != nil {
			return r.wrap(ev.err)
		}
		if ev.end != nil {
			if ev.end.Count != got {
				return r.wrap(fmt.Errorf("the agent announced %d entries but %d arrived", ev.end.Count, got))
			}
			if r.cfg.Done != nil {
				r.cfg.Done(RemoteStats{Items: got, HashedBytes: ev.end.Hashed, WireBytes: conn.BytesReceived() - recv0})
			}
			return nil
		}
		for i := range ev.items {
			got++
			if err := fn(remoteItem(&ev.items[i], fake)); err != nil {
				return err
			}
		}
	}
}

func (r *remote) wrap(err error) error {
	if r.cfg.Name == "" {
		return err
	}
	return fmt.Errorf("replica %s: %w", r.cfg.Name, err)
}

// remoteItem turns what the agent sent into an Item, applying
// user.georep.stat as Local does.
func remoteItem(v *protocol.VerifyItem, fakeSuper bool) Item {
	it := Item{
		Path:      v.Path,
		Kind:      v.Kind,
		Mode:      v.Mode,
		UID:       v.UID,
		GID:       v.GID,
		Size:      v.Size,
		Mtime:     v.Mtime,
		Rdev:      v.Rdev,
		Target:    v.Target,
		LinkGroup: v.LinkGroup,
		Err:       v.Err,
	}
	if it.Err != "" {
		return it
	}
	if v.HasHash {
		it.Hash = v.Hash
	}
	if len(v.Xattrs) > 0 {
		it.Xattrs = make(map[string][]byte, len(v.Xattrs))
		for _, x := range v.Xattrs {
			it.Xattrs[x.Name] = x.Value
		}
	}
	if fakeSuper && it.Kind == tree.KindSymlink {
		it.OwnerUnknown = true
	}
	if fakeSuper && v.HasStat {
		if err := applyFakeStat(&it, string(v.FakeStat)); err != nil {
			it.Err = err.Error()
		}
	}
	return it
}
