package compression

import (
	"io"
	"math"
	"runtime"
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
	// OnChange, when set before use, is called (with the controller's
	// lock held) when a decision changes, with what it was based on.
	OnChange func(Choice, Inputs)

	setting     Setting
	compressors int
	meter       *Meter
	now         func() time.Time

	mu     sync.Mutex
	link   Link
	cur    Level
	reason Reason
	// Per level, each compression's speed (one sender's, timed) and ratio
	// on the messages it compressed; sample: Fastest on samples.
	levels [MaxLevel + 1]decaying
	sample decaying
	// eff is the share of compressors x one sender's speed that the
	// senders achieved together when the link waited on them (the machine
	// is shared, senders also read files): 0 = not measured.
	eff          float64
	wire         float64 // link rate estimate, wire bytes/s
	wireMeasured bool    // wire was measured while the sender waited
	busy         float64 // share of time waiting on the link (-1 unknown)
	last         meterSnap
	lastRaw      int64
	started      bool
	firstAt      time.Time // of the first message
	firstBytes   int64     // the meter's count then
	changedAt    time.Time // of the last change of level
	// What was sent, per level (Off: as is), for the summary.
	raw, wireBytes [MaxLevel + 1]int64
	why            [MaxLevel + 1]Reason
}

// decaying is a byte-weighted moving measurement: older bytes weigh
// exp(-newer bytes / decayWindow).
type decaying struct {
	raw, wire      float64 // for the ratio
	timedRaw, secs float64 // for the speed
}

const decayWindow = 32 << 20

func (d *decaying) add(raw, wire int, dur time.Duration) {
	f := math.Exp(-float64(raw) / decayWindow)
	d.raw, d.wire = d.raw*f+float64(raw), d.wire*f+float64(wire)
	if dur > 0 && raw >= 16<<10 {
		d.timedRaw, d.secs = d.timedRaw*f+float64(raw), d.secs*f+dur.Seconds()
	}
}

// estimate is one sender's speed and the ratio (zero when unknown).
func (d *decaying) estimate() Estimate {
	var e Estimate
	if d.secs > 0 {
		e.Rate = d.timedRaw / d.secs
	}
	if d.raw > 0 {
		e.Ratio = d.wire / d.raw
	}
	return e
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
	// updateEvery is the period of the link measurement and of decisions;
	// a longer gap between messages (nothing to send) measures nothing.
	updateEvery = 250 * time.Millisecond
	staleAfter  = 4 * updateEvery
	// bufferAllowance: the link's share of waiting counts only once this
	// much went out (pipe, ssh and TCP buffers take the first megabytes
	// without making anyone wait, whatever the link).
	bufferAllowance = 8 << 20
	// bufferTime: or once the first message is this old (a link the
	// senders cannot fill in that time does not hold them back).
	bufferTime = time.Second
	// saturated: a sender that waited on the link this share of the time
	// or more measures the link's rate.
	saturated = 0.5
	// holdTime: a level stays at least this long (the link's buffers
	// take a while to show what a change did).
	holdTime = 750 * time.Millisecond
	alpha    = 0.3 // weight of a new measurement in the moving averages
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
	ch := Decide(Inputs{Setting: c.setting, Link: c.link, WireBusy: -1})
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
		c.sample.add(in, out, d)
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
	raw := c.rawTotal()
	if !c.started {
		c.started, c.last, c.lastRaw, c.firstAt, c.firstBytes = true, snap, raw, now, snap.bytes
		return
	}
	dt := snap.at.Sub(c.last.at)
	if dt < updateEvery {
		return
	}
	db, dbusy, draw := snap.bytes-c.last.bytes, snap.busy-c.last.busy, raw-c.lastRaw
	c.last, c.lastRaw = snap, raw
	if db > 0 && dt <= staleAfter {
		frac := min(1, float64(dbusy)/float64(dt))
		if frac >= saturated && dbusy > 0 {
			// The buffers were full whenever the sender wrote: the link
			// drained them all along, at its rate.
			c.wire = ewma(c.wire, float64(db)/dt.Seconds())
			c.wireMeasured = true
		} else if el := now.Sub(c.firstAt); el >= bufferTime && !c.wireMeasured {
			// What the link carried on average since the first message
			// is a lower bound of its rate (a short window is not: the
			// buffers take bursts faster than the link).
			c.wire = max(c.wire, float64(snap.bytes-c.firstBytes)/el.Seconds())
		}
		if frac >= saturated || snap.bytes >= bufferAllowance || now.Sub(c.firstAt) >= bufferTime {
			c.busy = ewmaFrom(c.busy, frac)
		}
		// The link waited on the senders: what they achieved at this
		// level is the compressors' real rate.
		if one := c.levels[c.cur].estimate(); frac < saturated && c.busy >= 0 && c.cur != Off && one.Rate > 0 && draw >= 1<<20 {
			c.eff = ewma(c.eff, min(1, float64(draw)/dt.Seconds()/(one.Rate*float64(c.compressors))))
		}
	}
	in := c.inputs()
	ch := Decide(in)
	if ch.Level != c.cur && now.Sub(c.changedAt) < holdTime {
		return // let the last change show its effect on the link first
	}
	if ch != (Choice{c.cur, c.reason}) && c.OnChange != nil {
		c.OnChange(ch, in)
	}
	if ch.Level != c.cur {
		c.changedAt = now
	}
	c.cur, c.reason = ch.Level, ch.Reason
}

// inputs are Decide's inputs from the measurements. Called with mu held.
func (c *Controller) inputs() Inputs {
	in := Inputs{Setting: c.setting, Link: c.link, WireRate: c.wire, WireMeasured: c.wireMeasured, WireBusy: c.busy, Current: c.cur}
	scale := float64(c.compressors)
	if c.eff > 0 {
		scale *= c.eff
	}
	for l := Fastest; l <= MaxLevel; l++ {
		e := c.levels[l].estimate()
		if l == Fastest && e.Rate <= 0 {
			e = c.sample.estimate()
		}
		if e.Rate > 0 && e.Ratio > 0 {
			e.Rate *= scale
			in.Levels[l] = e
		}
	}
	return in
}

func (c *Controller) rawTotal() int64 {
	var n int64
	for _, r := range c.raw {
		n += r
	}
	return n
}

// Observe records a message compressed as ch chose: raw bytes in, wire
// bytes out (stored ones included), in d.
func (c *Controller) Observe(ch Choice, raw, wire int, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := ch.Level; l > Off && l <= MaxLevel && raw > 0 {
		c.levels[l].add(raw, wire, d)
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
		// One state per CPU: EncodeAll runs on one state at a time.
		sampleEnc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithEncoderCRC(false))
		if err != nil {
			panic(err) // only bad options fail
		}
	})
	return sampleEnc
}

// Meter counts the bytes written to the stream to the secondary and the
// time spent in those writes (waiting on the link): while the writer
// waits most of the time the link's buffers stay full and bytes / wall
// time is the link's rate; otherwise it is a lower bound.
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
