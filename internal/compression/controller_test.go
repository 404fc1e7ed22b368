package compression

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// sourceText returns about n bytes of Go source from GOROOT (compressible
// as real trees are), cycling through files.
func sourceText(t testing.TB, n int) []byte {
	t.Helper()
	var b []byte
	root := filepath.Join(runtime.GOROOT(), "src", "net", "http")
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Skip("no GOROOT sources:", err)
	}
	for len(b) < n {
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".go") {
				if d, err := os.ReadFile(filepath.Join(root, e.Name())); err == nil {
					b = append(b, d...)
				}
			}
			if len(b) >= n {
				break
			}
		}
	}
	return b[:n]
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{1})
	r.Read(b)
	return b
}

// link simulates a sender and a link on a fake clock: each message is
// compressed (timed as if at cpu bytes/s per compressor, with
// compressors in parallel) and written into a link of wire bytes/s whose
// buffers hold buffer bytes; the writer waits when they are full.
type link struct {
	c            *Controller
	m            *Meter
	clock        time.Time
	cpu, wire    float64 // bytes/s
	buffer, held float64
	sizes        map[*byte]int
}

func newLink(s Setting, kind Link, compressors int, cpu, wire float64) *link {
	l := &link{m: &Meter{}, clock: time.Unix(1e9, 0), cpu: cpu, wire: wire, buffer: 4 << 20}
	l.c = NewController(s, kind, compressors, l.m)
	l.c.now = func() time.Time { return l.clock }
	return l
}

// send sends one message through the controller and the simulated link.
func (l *link) send(body []byte) Choice {
	ch := l.c.Choose(body)
	out := len(body)
	var cpu time.Duration
	if ch.Level != Off {
		out = l.fastestSize(body) * int(priors[ch.Level].Ratio*100) / 100 // stands for the level's output
		cpu = time.Duration(float64(len(body)) / (l.cpu * priors[ch.Level].Rate) * float64(time.Second))
		l.c.Observe(ch, len(body), out, cpu)
		cpu /= time.Duration(l.c.compressors)
	} else {
		l.c.Sent(ch, len(body))
	}
	// The link drains while the message is compressed; the write waits
	// for room beyond the buffer.
	l.drain(cpu)
	wait := time.Duration(0)
	if over := l.held + float64(out) - l.buffer; over > 0 {
		wait = time.Duration(over / l.wire * float64(time.Second))
		l.drain(wait)
	}
	l.held += float64(out)
	l.m.Record(out, wait)
	return ch
}

// fastestSize is body's size compressed at the fastest level (computed
// once per body: the tests send the same bodies again and again).
func (l *link) fastestSize(body []byte) int {
	if l.sizes == nil {
		l.sizes = map[*byte]int{}
	}
	n, ok := l.sizes[&body[0]]
	if !ok {
		n = len(sampleEncoder().EncodeAll(body, nil))
		l.sizes[&body[0]] = n
	}
	return n
}

func (l *link) drain(d time.Duration) {
	l.clock = l.clock.Add(d)
	l.held = max(0, l.held-l.wire*d.Seconds())
}

func TestControllerWANCompresses(t *testing.T) {
	body := sourceText(t, 4<<20)
	l := newLink(Setting{Mode: Auto}, Remote, 2, 200e6, 12.5e6)
	var last Choice
	for range 60 {
		last = l.send(body)
	}
	if last.Level < Default || last.Reason != ReasonWireBound && last.Reason != ReasonCPUBound {
		t.Errorf("100 Mbit/s link, compressible data: chose %v (%v), want default or heavier", last.Level, last.Reason)
	}
	sum := l.c.Summary()
	if sum.Choice.Level == Off || sum.Ratio < 3 {
		t.Errorf("summary %v, ratio %.2f: want compressed, ratio >= 3", sum, sum.Ratio)
	}
}

// TestControllerFastLinkGoesLight: into a link that never makes the
// sender wait (10 GbE, one slow compressor) the level steps down to the
// fastest, and stays there: the link's rate is never seen, so raw (four
// times the bytes) is not risked.
func TestControllerFastLinkGoesLight(t *testing.T) {
	body := sourceText(t, 4<<20)
	for _, s := range []Setting{{Mode: Auto}, {Mode: Always}} {
		l := newLink(s, Remote, 1, 100e6, 1.25e9)
		var last Choice
		for range 100 {
			last = l.send(body)
		}
		if last.Level != Fastest || last.Reason != ReasonCPUBound {
			t.Errorf("%v, fast link: chose %v (%v), want fastest (compressor-bound)", s, last.Level, last.Reason)
		}
	}
}

// TestControllerRawOnMeasuredFastLink: a link measured fast while random
// data (sent raw) kept the sender waiting carries compressible data raw
// too when no level's compressor keeps up with it.
func TestControllerRawOnMeasuredFastLink(t *testing.T) {
	rnd, text := randomBytes(4<<20), sourceText(t, 4<<20)
	l := newLink(Setting{Mode: Auto}, Remote, 1, 100e6, 400e6)
	l.buffer = 1 << 20
	for range 40 {
		l.send(rnd)
	}
	var last Choice
	for range 40 {
		last = l.send(text)
	}
	if last.Level != Off || last.Reason != ReasonFastLink {
		t.Errorf("400 MB/s link measured, 100 MB/s compressor: chose %v (%v), want none (fast link)", last.Level, last.Reason)
	}
}

func TestControllerIncompressible(t *testing.T) {
	body := randomBytes(4 << 20)
	l := newLink(Setting{Mode: Auto}, Remote, 2, 200e6, 12.5e6)
	for range 10 {
		if ch := l.send(body); ch.Level != Off || ch.Reason != ReasonIncompressible {
			t.Fatalf("random data: chose %v (%v), want stored as incompressible", ch.Level, ch.Reason)
		}
	}
	if sum := l.c.Summary(); sum.Choice != (Choice{Off, ReasonIncompressible}) || sum.Ratio != 1 {
		t.Errorf("summary %v: want none (incompressible data), ratio 1", sum)
	}
	// Compressible data after it is compressed again (the decision is per
	// message).
	text := sourceText(t, 1<<20)
	if ch := l.send(text); ch.Level == Off {
		t.Errorf("text after random data: %v (%v), want compressed", ch.Level, ch.Reason)
	}
	// A fixed level stores random data too.
	l = newLink(Setting{Mode: Fixed, Level: Best}, Remote, 2, 200e6, 12.5e6)
	if ch := l.send(body); ch.Level != Off {
		t.Errorf("random data at a fixed level: %v, want stored", ch.Level)
	}
}

func TestControllerLocalAndLoopback(t *testing.T) {
	text := sourceText(t, 1<<20)
	for _, c := range []struct {
		s    Setting
		link Link
		want Choice
	}{
		{Setting{Mode: Auto}, Local, Choice{Off, ReasonLocal}},
		{Setting{Mode: Always}, Local, Choice{Off, ReasonLocal}},
		{Setting{Mode: Fixed, Level: Better}, Local, Choice{Off, ReasonLocal}},
		{Setting{Mode: Auto}, Loopback, Choice{Off, ReasonLoopback}},
		{Setting{Mode: Never}, Remote, Choice{Off, ReasonNever}},
		{Setting{Mode: Fixed, Level: Better}, Loopback, Choice{Better, ReasonFixed}},
		{Setting{Mode: Auto}, Remote, Choice{Default, ReasonStart}},
	} {
		l := newLink(c.s, c.link, 2, 200e6, 1e9)
		if got := l.send(text); got != c.want {
			t.Errorf("%v over %v: %v (%v), want %v (%v)", c.s, c.link, got.Level, got.Reason, c.want.Level, c.want.Reason)
		}
	}
	// A link found to be loopback after the start stops compressing.
	l := newLink(Setting{Mode: Auto}, Remote, 2, 200e6, 1e9)
	l.send(text)
	l.c.SetLink(Loopback)
	if got := l.send(text); got != (Choice{Off, ReasonLoopback}) {
		t.Errorf("after SetLink(Loopback): %v (%v)", got.Level, got.Reason)
	}
}

func TestSummaryString(t *testing.T) {
	for _, c := range []struct {
		s    Summary
		want string
	}{
		{Summary{Choice: Choice{Better, ReasonWireBound}, Raw: 400, Wire: 100, Ratio: 4}, "zstd:3 (link-bound), 4.00x"},
		{Summary{Choice: Choice{Off, ReasonLoopback}, Raw: 400, Wire: 400, Ratio: 1}, "none (loopback)"},
		{Summary{Choice: Choice{Off, ReasonIncompressible}, Raw: 400, Wire: 380, Ratio: 1.05}, "none (incompressible data), 1.05x"},
	} {
		if got := c.s.String(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.s, got, c.want)
		}
	}
}

func TestMetered(t *testing.T) {
	var m Meter
	var buf bytes.Buffer
	w := Metered(nopCloser{&buf}, &m)
	w.Write([]byte("hello"))
	if s := m.snap(time.Now()); s.bytes != 5 || buf.String() != "hello" {
		t.Errorf("metered %d bytes, wrote %q", s.bytes, buf.String())
	}
}

type nopCloser struct{ *bytes.Buffer }

func (nopCloser) Close() error { return nil }

// BenchmarkLevels measures each level on the Go distribution's src/ in
// 4 MiB batches, as the senders compress it (the priors in decide.go).
func BenchmarkLevels(b *testing.B) {
	var batches [][]byte
	var cur []byte
	filepath.WalkDir(filepath.Join(runtime.GOROOT(), "src"), func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if data, err := os.ReadFile(p); err == nil && len(data) < 1<<20 {
			cur = append(cur, data...)
		}
		if len(cur) >= 4<<20 {
			batches, cur = append(batches, cur), nil
		}
		return nil
	})
	if len(batches) == 0 {
		b.Skip("no GOROOT sources")
	}
	total := 0
	for _, x := range batches {
		total += len(x)
	}
	for l := Fastest; l <= MaxLevel; l++ {
		b.Run(l.String(), func(b *testing.B) {
			enc := levelEncoder(l)
			out := 0
			b.SetBytes(int64(total))
			for b.Loop() {
				out = 0
				var dst []byte
				for _, x := range batches {
					dst = enc.EncodeAll(x, dst[:0])
					out += len(dst)
				}
			}
			b.ReportMetric(float64(out)/float64(total), "ratio")
		})
	}
}

func levelEncoder(l Level) interface {
	EncodeAll(src, dst []byte) []byte
} {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevel(l)), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false))
	if err != nil {
		panic(err)
	}
	return enc
}
