package worker

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/protocol"
	"golang.org/x/sys/unix"
)

// checkPerMessage is how many files one Check request asks about.
const checkPerMessage = 512

// checkContent compares the files of job.Check (same size and mtime on
// both sides, yet not trusted: --checksum, or read too soon after a change
// by an earlier sync) with the secondary's copies: content by hash, synced
// xattrs by digest. The secondary answers with the ones that differ: those
// join job.Data (sent as deltas) or get their metadata again in full. It
// runs after the entry operations were sent (the agent answers in order,
// so adopted files are indexed by then).
func (s *Session) checkContent(ctx context.Context, job *Job) error {
	metaAt := map[fileid.ID]int{}
	for i, mi := range job.Meta {
		metaAt[mi.Entry.ID] = i
	}
	for i := 0; i < len(job.Check); i += checkPerMessage {
		items := job.Check[i:min(i+checkPerMessage, len(job.Check))]
		req := &protocol.Check{Items: make([]protocol.CheckItem, len(items))}
		lerr := make([]error, len(items))
		var wg sync.WaitGroup
		next := make(chan int)
		for range min(len(items), runtime.GOMAXPROCS(0)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range next {
					req.Items[j], lerr[j] = s.checkItem(job, items[j].Entry.ID)
				}
			}()
		}
		for j := range items {
			next <- j
		}
		close(next)
		wg.Wait()
		m, err := s.conn.Call(ctx, &protocol.Compressed{Inner: req})
		if err != nil {
			return fmt.Errorf("check the secondary's copies: %w", err)
		}
		ok, isOK := m.(*protocol.CheckOK)
		if !isOK {
			return fmt.Errorf("check the secondary's copies: unexpected reply %T", m)
		}
		skip := map[int]bool{}
		for j, it := range items {
			switch {
			case errors.Is(lerr[j], fileid.ErrStale):
				skip[j] = true // deleted meanwhile: its removal is in a later batch
			case lerr[j] != nil:
				skip[j] = true
				s.fail(Failure{ID: it.Entry.ID, Path: s.pathOf(job, it.Entry.ID, it.Hint), Op: "CHECK", Error: lerr[j].Error(), Errno: errno(lerr[j])})
			}
		}
		for _, x := range ok.Content {
			if j := int(x); j < len(items) && !skip[j] {
				job.Data = append(job.Data, items[j])
			}
		}
		if s.cfg.NoXattrs {
			continue
		}
		for _, x := range ok.Xattrs {
			j := int(x)
			if j >= len(items) || skip[j] {
				continue
			}
			it := items[j]
			if k, ok := metaAt[it.Entry.ID]; ok {
				job.Meta[k].Full = true
				continue
			}
			metaAt[it.Entry.ID] = len(job.Meta)
			job.Meta = append(job.Meta, MetaItem{Entry: it.Entry, Hint: it.Hint, Full: true})
		}
	}
	return nil
}

// checkItem is what the secondary compares a primary file with: a prefix
// of its content's SHA-256 and the digest of its synced xattrs.
func (s *Session) checkItem(job *Job, id fileid.ID) (protocol.CheckItem, error) {
	it := protocol.CheckItem{ID: id}
	f, err := s.openPrimary(job, id, unix.O_RDONLY|unix.O_NOATIME)
	if errors.Is(err, unix.EPERM) {
		f, err = s.openPrimary(job, id, unix.O_RDONLY)
	}
	if err != nil {
		return it, err
	}
	defer f.Close()
	it.Xattrs = protocol.XattrDigest(readXattrs(procPath(int(f.Fd())), s.cfg.NoACLs))
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return it, err
	}
	copy(it.Content[:], h.Sum(nil))
	return it, nil
}
