package compression

import (
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Controller chooses the level of each data message of one connection and
// keeps the measurements Decide needs: the link's rate (from a Meter on
// the stream), each level's speed and ratio (from the messages it
// compressed), and a sample of each large message. Safe for concurrent
// use by the senders.
type Controller struct {
	setting     Setting
	compressors int
	meter       *Meter
	now         func() time.Time

	mu      sync.Mutex
	link    Link
	cur     Level
	reason  Reason
	levels  [MaxLevel + 1]Estimate // measured on real messages
	sample  Estimate               // Fastest, measured on samples
	wire    float64                // link rate estimate, wire bytes/s
	busy    float64                // share of time waiting on the link (-1 unknown)
	last    meterSnap              // at the last update
	started bool
	// What was sent, per level (Off: stored), for the summary.
	raw, wireBytes [MaxLevel + 1]int64
	why            [MaxLevel + 1]Reason
}

// Tuning of the measurements.
const (
	// SampleMin: messages at least this large are sampled before they are
	// compressed; sampleSize bytes taken from sampleParts places.
	SampleMin   = 64 << 10
	sampleSize  = 64 << 10
	sampleParts = 4
	// MinCompress: smaller messages are never compressed.
	MinCompress = 512
	// updateEvery is the period of the link measurement and of decisions.
	updateEvery = 250 * time.Millisecond
	// bufferAllowance: the link's share of waiting counts only once this
	// much went out (pipe, ssh and TCP buffers take the first megabytes
	// without making anyone wait, whatever the link).
	bufferAllowance = 8 << 20
	// saturated: a sender that waited on the link this share of the time
	// or more measures the link's rate.
	saturated = 0.5
	alpha     = 0.3 // weight of a new measurement in the moving averages
)

// NewController makes the controller of one connection. meter is on the
// stream to the secondary (nil for a local secondary); compressors is how
// many senders compress at once.
func NewController(s Setting, link Link, compressors int, meter *Meter) *Controller {
	c := &Controller{setting: s, link: link, compressors: max(1, compressors), meter: meter, now: time.Now, busy: -1}
	c.cur, c.reason = c.static()
	return c
}

// static is the choice that needs no measurement, or the starting point.
func (c *Controller) static() (Level, Reason) {
	ch := Decide(Inputs{Setting: c.setting, Link: c.link, Compressors: c.compressors, WireBusy: -1})
	return ch.Level, ch.Reason
}

// measuring reports whether the choice depends on measurements at all.
func (c *Controller) measuring() bool {
	return c.setting.Mode != Never && c.link != Local && !(c.setting.Mode == Auto && c.link == Loopback)
}

// SetLink tells the controller what the link turned out to be (a loopback
// address answering within a millisecond or so is Loopback).
func (c *Controller) SetLink(l Link) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.link == l {
		return
	}
	c.link = l
	c.cur, c.reason = c.static()
}

// Choose returns the level for a message whose encoded body is raw (Off:
// send it as is), and why. It samples a large body first; one that does
// not shrink is sent as is whatever the level in use. Report what was
// sent with Observe or Sent, passing the choice back.
func (c *Controller) Choose(raw []byte) Choice {
	c.mu.Lock()
	if !c.measuring() || len(raw) < MinCompress {
		defer c.mu.Unlock()
		return Choice{Off, c.reason}
	}
	c.mu.Unlock()
	var sr float64
	if len(raw) >= SampleMin {
		t0 := c.now()
		in, out := sampleRatio(raw)
		d := c.now().Sub(t0)
		sr = float64(out) / float64(in)
		c.mu.Lock()
		if d > 0 {
			c.sample.Rate = ewma(c.sample.Rate, float64(in)/d.Seconds())
		}
		c.sample.Ratio = ewma(c.sample.Ratio, sr)
		c.mu.Unlock()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.update()
	if sr > IncompressibleRatio {
		return Choice{Off, ReasonIncompressible}
	}
	return Choice{c.cur, c.reason}
}

// update refreshes the link's measurement and the decision, at most every
// updateEvery. Called with mu held.
func (c *Controller) update() {
	now := c.now()
	snap := c.meter.snap(now)
	if !c.started {
		c.started, c.last = true, snap
		return
	}
	dt := snap.at.Sub(c.last.at)
	if dt < updateEvery {
		return
	}
	db, dbusy := snap.bytes-c.last.bytes, snap.busy-c.last.busy
	c.last = snap
	if db > 0 && dt > 0 {
		frac := min(1, float64(dbusy)/float64(dt))
		if frac >= saturated && dbusy > 0 {
			c.wire = ewma(c.wire, float64(db)/time.Duration(dbusy).Seconds())
		} else {
			c.wire = max(c.wire, float64(db)/dt.Seconds())
		}
		if frac >= saturated || snap.bytes >= bufferAllowance {
			c.busy = ewmaFrom(c.busy, frac)
		}
	}
	in := Inputs{Setting: c.setting, Link: c.link, WireRate: c.wire, WireBusy: c.busy, Compressors: c.compressors,
		Levels: c.levels, Current: c.cur}
	if in.Levels[Fastest].Rate <= 0 && c.sample.Rate > 0 {
		in.Levels[Fastest] = c.sample
	}
	ch := Decide(in)
	c.cur, c.reason = ch.Level, ch.Reason
}

// Observe records a message compressed as ch chose: raw bytes in, wire
// bytes out (stored ones included), in d.
func (c *Controller) Observe(ch Choice, raw, wire int, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := ch.Level
	if l > Off && l <= MaxLevel && raw > 0 {
		e := &c.levels[l]
		if d > 0 && raw >= 16<<10 {
			e.Rate = ewma(e.Rate, float64(raw)/d.Seconds())
		}
		e.Ratio = ewma(e.Ratio, float64(wire)/float64(raw))
	}
	c.count(ch, raw, wire)
}

// Sent records a message sent uncompressed as ch (Off) chose.
func (c *Controller) Sent(ch Choice, raw int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count(Choice{Off, ch.Reason}, raw, raw)
}

func (c *Controller) count(ch Choice, raw, wire int) {
	l := ch.Level
	if l < Off || l > MaxLevel {
		l = Off
	}
	c.raw[l] += int64(raw)
	c.wireBytes[l] += int64(wire)
	c.why[l] = ch.Reason
}

// Summary is what a controller chose, for the sync summary and status.
type Summary struct {
	// Choice is the level that carried most of the data, and why.
	Choice Choice
	// Raw and Wire are the data messages' bytes before and after
	// compression; Ratio is Raw/Wire (1 when nothing was compressed).
	Raw, Wire int64
	Ratio     float64
}

// String is e.g. "zstd:3 (link-bound), 3.95x" or "none (loopback)".
func (s Summary) String() string {
	out := s.Choice.Level.String() + " (" + s.Choice.Reason.String() + ")"
	if s.Raw > 0 && s.Choice.Level != Off || s.Ratio > 1.005 {
		out += ", " + strconv.FormatFloat(s.Ratio, 'f', 2, 64) + "x"
	}
	return out
}

// Summary returns what was chosen so far.
func (c *Controller) Summary() Summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s Summary
	top := Off
	for l := Off; l <= MaxLevel; l++ {
		s.Raw += c.raw[l]
		s.Wire += c.wireBytes[l]
		if c.raw[l] > c.raw[top] {
			top = l
		}
	}
	s.Choice = Choice{top, c.why[top]}
	if s.Raw == 0 {
		s.Choice = Choice{c.cur, c.reason}
	}
	s.Ratio = 1
	if s.Wire > 0 {
		s.Ratio = float64(s.Raw) / float64(s.Wire)
	}
	return s
}

func ewma(old, v float64) float64 {
	if old <= 0 {
		return v
	}
	return old + alpha*(v-old)
}

func ewmaFrom(old, v float64) float64 {
	if old < 0 {
		return v
	}
	return old + alpha*(v-old)
}

// sampleRatio compresses a sample of b (sampleParts pieces spread over
// it) at the fastest level; it returns the sample's size and its
// compressed size.
func sampleRatio(b []byte) (in, out int) {
	part := sampleSize / sampleParts
	buf := make([]byte, 0, sampleSize)
	step := (len(b) - part) / (sampleParts - 1)
	for i := range sampleParts {
		at := i * step
		buf = append(buf, b[at:at+part]...)
	}
	z := sampleEncoder().EncodeAll(buf, make([]byte, 0, len(buf)+len(buf)/8))
	return len(buf), len(z)
}

var (
	sampleOnce sync.Once
	sampleEnc  *zstd.Encoder
)

func sampleEncoder() *zstd.Encoder {
	sampleOnce.Do(func() {
		var err error
		sampleEnc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false))
		if err != nil {
			panic(err) // only bad options fail
		}
	})
	return sampleEnc
}

// Meter counts the bytes written to the stream to the secondary and the
// time spent in those writes (waiting on the link): the link's rate is
// bytes / time while the writer waits, and at least bytes / wall time.
type Meter struct {
	bytes atomic.Int64
	busy  atomic.Int64 // ns inside Write
}

type meterSnap struct {
	at          time.Time
	bytes, busy int64
}

func (m *Meter) snap(now time.Time) meterSnap {
	if m == nil {
		return meterSnap{at: now}
	}
	return meterSnap{at: now, bytes: m.bytes.Load(), busy: m.busy.Load()}
}

// Record adds a write of n bytes that took d (for Meter's writer, and for
// tests).
func (m *Meter) Record(n int, d time.Duration) {
	m.bytes.Add(int64(n))
	m.busy.Add(int64(d))
}

// Metered wraps a stream so that its writes are recorded in m.
func Metered(rwc io.ReadWriteCloser, m *Meter) io.ReadWriteCloser {
	return &meteredStream{ReadWriteCloser: rwc, m: m}
}

type meteredStream struct {
	io.ReadWriteCloser
	m *Meter
}

func (s *meteredStream) Write(p []byte) (int, error) {
	t0 := time.Now()
	n, err := s.ReadWriteCloser.Write(p)
	s.m.Record(n, time.Since(t0))
	return n, err
}
