package protocol

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed reports a connection that was closed or broke.
var ErrClosed = errors.New("connection to the secondary is closed")

// ReplyFunc receives a reply (or the connection's error). Returning false
// keeps the request open for more replies (streams such as List).
type ReplyFunc func(m Message, err error) (done bool)

// Conn is the client end: it sends pipelined requests and routes replies.
type Conn struct {
	rwc io.ReadWriteCloser

	wmu sync.Mutex
	w   *bufio.Writer

	mu      sync.Mutex
	pending map[uint64]ReplyFunc
	err     error
	done    chan struct{}

	next     atomic.Uint64
	lastRead atomic.Int64 // unix ns of the last frame received
	sent     atomic.Int64 // bytes written
	recv     atomic.Int64 // bytes read
}

// NewConn starts a client on rwc.
func NewConn(rwc io.ReadWriteCloser) *Conn {
	c := &Conn{rwc: rwc, w: bufio.NewWriterSize(countWriter{rwc, nil}, 256<<10), pending: map[uint64]ReplyFunc{}, done: make(chan struct{})}
	c.w = bufio.NewWriterSize(countWriter{rwc, &c.sent}, 256<<10)
	c.lastRead.Store(time.Now().UnixNano())
	go c.readLoop()
	return c
}

type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (cw countWriter) Write(p []byte) (int, error) {
	n, err := cw.w.Write(p)
	if cw.n != nil {
		cw.n.Add(int64(n))
	}
	return n, err
}

type countReader struct {
	r io.Reader
	n *atomic.Int64
}

func (cr countReader) Read(p []byte) (int, error) {
	n, err := cr.r.Read(p)
	cr.n.Add(int64(n))
	return n, err
}

// BytesSent and BytesReceived count the bytes on the stream.
func (c *Conn) BytesSent() int64 { return c.sent.Load() }

// BytesReceived counts the bytes read from the stream.
func (c *Conn) BytesReceived() int64 { return c.recv.Load() }

func (c *Conn) readLoop() {
	r := bufio.NewReaderSize(countReader{c.rwc, &c.recv}, 256<<10)
	for {
		f, err := ReadFrame(r)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("%w: the secondary hung up (%v)", ErrClosed, err)
			} else {
				err = fmt.Errorf("%w: %v", ErrClosed, err)
			}
			c.fail(err)
			return
		}
		c.lastRead.Store(time.Now().UnixNano())
		m, err := Decode(f)
		c.mu.Lock()
		fn := c.pending[f.ReqID]
		c.mu.Unlock()
		if fn == nil {
			if err == nil && f.Type == TPong {
				continue
			}
			c.fail(fmt.Errorf("%w: reply to unknown request %d (type %d)", ErrClosed, f.ReqID, f.Type))
			return
		}
		if z, ok := m.(*Compressed); ok && err == nil {
			m = z.Inner // a reply may come compressed too (listings)
		}
		var rerr error
		if err != nil {
			rerr = err
		} else if e, ok := m.(*Error); ok {
			rerr = fmt.Errorf("secondary: %w", e)
		}
		if fn(m, rerr) {
			c.mu.Lock()
			delete(c.pending, f.ReqID)
			c.mu.Unlock()
		}
	}
}

func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	pend := c.pending
	c.pending = map[uint64]ReplyFunc{}
	close(c.done)
	c.mu.Unlock()
	c.rwc.Close()
	for _, fn := range pend {
		fn(nil, err)
	}
}

// Err returns the error that closed the connection, if any.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Done is closed when the connection ends.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Send queues a request; fn gets its reply(ies). The request is buffered:
// call Flush (or Call) to push it out. When fn is not nil it is called
// exactly once with an error if the request cannot complete — also when
// Send itself fails — so callers clean up in fn only.
func (c *Conn) Send(m Message, fn ReplyFunc) error {
	id := c.next.Add(1)
	if fn != nil {
		c.mu.Lock()
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			fn(nil, err)
			return err
		}
		c.pending[id] = fn
		c.mu.Unlock()
	}
	body := encodeBody(m)
	c.wmu.Lock()
	err := WriteFrame(c.w, m.Type(), id, body)
	c.wmu.Unlock()
	if err != nil {
		err = fmt.Errorf("%w: %v", ErrClosed, err)
		c.fail(err)
		return err
	}
	return nil
}

// Flush pushes buffered requests to the secondary.
func (c *Conn) Flush() error {
	c.wmu.Lock()
	err := c.w.Flush()
	c.wmu.Unlock()
	if err != nil {
		err = fmt.Errorf("%w: %v", ErrClosed, err)
		c.fail(err)
	}
	return err
}

// Call sends one request and waits for its single reply.
func (c *Conn) Call(ctx context.Context, m Message) (Message, error) {
	return c.CallThen(ctx, m, nil)
}

// CallThen is Call, with then (when not nil) run after m is queued and
// before the flush: the requests then queues travel right behind m, in the
// same round trip, and are answered after it. An error from then is
// returned without waiting for m's reply.
func (c *Conn) CallThen(ctx context.Context, m Message, then func() error) (Message, error) {
	type res struct {
		m   Message
		err error
	}
	ch := make(chan res, 1)
	if err := c.Send(m, func(r Message, err error) bool { ch <- res{r, err}; return true }); err != nil {
		return nil, err
	}
	if then != nil {
		if err := then(); err != nil {
			return nil, err
		}
	}
	if err := c.Flush(); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r.m, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Keepalive pings every interval and closes the connection when nothing
// was received for timeout (pings unanswered, or outstanding requests with
// no reply): a link cut without a reset is noticed within timeout plus one
// interval, even while a writer is stuck on the dead link (pings go out
// from a goroutine of their own, one at a time, so the check never blocks).
// It pings even while replies stream in, because the agent's idle timer
// sees only what the primary sends: a primary that only receives (a long
// verify listing) must still be heard. It returns when the connection ends
// or ctx is done.
func (c *Conn) Keepalive(ctx context.Context, interval, timeout time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var pinging atomic.Bool
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.done:
			return
		case <-t.C:
			idle := time.Since(time.Unix(0, c.lastRead.Load()))
			if idle > timeout {
				c.fail(fmt.Errorf("%w: no answer from the secondary for %s", ErrClosed, idle.Round(time.Second)))
				return
			}
			if pinging.CompareAndSwap(false, true) {
				go func() {
					defer pinging.Store(false)
					if c.Send(&Ping{}, func(Message, error) bool { return true }) == nil {
						c.Flush()
					}
				}()
			}
		}
	}
}

// Close ends the connection.
func (c *Conn) Close() error {
	c.fail(ErrClosed)
	return nil
}

// Replier sends replies from the server side; safe for concurrent use.
type Replier struct {
	mu   sync.Mutex
	w    *bufio.Writer
	err  error
	sent atomic.Int64
}

// NewReplier writes replies to w.
func NewReplier(w io.Writer) *Replier {
	return &Replier{w: bufio.NewWriterSize(w, 256<<10)}
}

// Reply writes one reply frame (buffered; Flush pushes it out). A reply too
// large for a frame is answered with an Error naming its size instead (and
// ErrFrameTooLarge is returned): the request fails, the session goes on.
func (r *Replier) Reply(reqID uint64, m Message) error {
	body := Encode(m)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	err := WriteFrame(r.w, m.Type(), reqID, body)
	if errors.Is(err, ErrFrameTooLarge) {
		msg := &Error{Msg: fmt.Sprintf("%T reply of %d bytes is larger than a frame (%d): ask for less at a time", m, len(body), MaxFrame)}
		if werr := WriteFrame(r.w, TError, reqID, Encode(msg)); werr != nil {
			r.err = werr
			return werr
		}
		return err
	}
	r.err = err
	return r.err
}

// Flush pushes buffered replies.
func (r *Replier) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.err = r.w.Flush()
	return r.err
}
