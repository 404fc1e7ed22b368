package secondary

import (
	"context"

	"github.com/georep/georep/internal/protocol"
	"golang.org/x/sync/semaphore"
)

// The agent's limits: whatever the primary sends, the agent holds at most
// MaxBufferedBytes of received frames (with what decoding copies out of
// them, see frameCost) and MaxOpenStreams unfinished file streams. Past the byte
// budget the read loop stops reading until the work in hand releases some
// (backpressure: the primary's writes block); a stream past the stream
// limit is refused with an error, and so is a barrier while a stream is
// unfinished. Replies larger than a frame (protocol.MaxFrame) are answered
// with an error.
const (
	MaxBufferedBytes = 64 << 20
	MaxOpenStreams   = 64
	// MemoryLimit is the Go runtime's soft memory limit for an agent
	// process (cmd/georep sets it unless GOMEMLIMIT is set).
	MemoryLimit = 192 << 20
)

// frameCost is what a received frame counts against the byte budget: its
// bytes, and again what decoding copies out of them (bulk data is decoded
// in place; a compressed frame is inflated into a buffer of its own).
func frameCost(f protocol.Frame, m protocol.Message) int64 {
	n := int64(len(f.Body))
	switch z := m.(type) {
	case *protocol.PutFiles, *protocol.FileChunk:
	case *protocol.Compressed:
		n += 2 * int64(z.Raw)
	default:
		n *= 2
	}
	return min(n+256, MaxBufferedBytes)
}

// budget bounds the bytes of received frames the agent holds.
type budget struct{ sem *semaphore.Weighted }

func newBudget() budget { return budget{sem: semaphore.NewWeighted(MaxBufferedBytes)} }

// acquire waits until n bytes are free (or ctx is done).
func (b budget) acquire(ctx context.Context, n int64) error { return b.sem.Acquire(ctx, n) }

// tryAcquire takes n bytes if they are free now.
func (b budget) tryAcquire(n int64) bool { return b.sem.TryAcquire(n) }

// release gives n bytes back (0 is a no-op).
func (b budget) release(n int64) {
	if n > 0 {
		b.sem.Release(n)
	}
}
