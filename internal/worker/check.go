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

// checkPerMessage is how many files one Hash request asks about.
const checkPerMessage = 256

// checkContent compares the files of job.Check (same size and mtime on
// both sides, yet not trusted: --checksum, or read too soon after a change
// by an earlier sync) by content hash with the secondary's copies; those
// that differ join job.Data and go as deltas. It runs after the entry
// operations were sent (the agent answers in order, so adopted files are
// indexed by then).
func (s *Session) checkContent(ctx context.Context, job *Job) error {
	for i := 0; i < len(job.Check); i += checkPerMessage {
		items := job.Check[i:min(i+checkPerMessage, len(job.Check))]
		ids := make([]fileid.ID, len(items))
		for j, it := range items {
			ids[j] = it.Entry.ID
		}
		type answer struct {
			m   protocol.Message
			err error
		}
		remote := make(chan answer, 1)
		go func() {
			m, err := s.conn.Call(ctx, &protocol.Compressed{Inner: &protocol.Hash{IDs: ids}})
			remote <- answer{m, err}
		}()
		local := make([][32]byte, len(items))
		lerr := make([]error, len(items))
		var wg sync.WaitGroup
		next := make(chan int)
		for range min(len(items), runtime.GOMAXPROCS(0)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range next {
					local[j], lerr[j] = s.hashPrimary(job, ids[j])
				}
			}()
		}
		for j := range items {
			next <- j
		}
		close(next)
		wg.Wait()
		a := <-remote
		if a.err != nil {
			return fmt.Errorf("hash the secondary's copies: %w", a.err)
		}
		ok, isOK := a.m.(*protocol.HashOK)
		if !isOK || len(ok.Sums) != len(items) {
			return fmt.Errorf("hash the secondary's copies: unexpected reply %T", a.m)
		}
		for j, it := range items {
			switch {
			case errors.Is(lerr[j], fileid.ErrStale):
				// Deleted meanwhile: its removal is in a later batch.
			case lerr[j] != nil:
				s.fail(Failure{ID: it.Entry.ID, Path: s.pathOf(job, it.Entry.ID, it.Hint), Op: "CHECK", Error: lerr[j].Error(), Errno: errno(lerr[j])})
			case local[j] != ok.Sums[j]:
				job.Data = append(job.Data, it)
			}
		}
	}
	return nil
}

// hashPrimary is the SHA-256 of a primary file's content (the digest the
// agent's Hash answers with).
func (s *Session) hashPrimary(job *Job, id fileid.ID) ([32]byte, error) {
	var sum [32]byte
	f, err := s.openPrimary(job, id, unix.O_RDONLY|unix.O_NOATIME)
	if errors.Is(err, unix.EPERM) {
		f, err = s.openPrimary(job, id, unix.O_RDONLY)
	}
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}
